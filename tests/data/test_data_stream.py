"""Token streams on disk: round trip, offsets, dtype, atomic writes, integrity checks."""

import hashlib
import json
import os

import numpy as np
import pytest

from tokenbound.data import is_stream, open_stream, write_stream
from tokenbound.errors import UserError

META = {"tokenizer": "test", "vocab_size": 300, "eot_id": 299, "start_id": 299}


def _docs():
    return [np.array([5, 6, 299]), np.array([299]), np.array([1, 2, 3, 4, 299])]


def test_round_trip_offsets_and_meta(tmp_path):
    s = write_stream(tmp_path / "s", _docs(), dict(META, doc_names=["a", "b", "c"]))
    # lengths 3, 1, 5 -> offsets 0, 3, 4, 9 (hand cumulative sum)
    assert s.doc_offsets.tolist() == [0, 3, 4, 9]
    assert s.doc_offsets.dtype == np.int64
    assert s.tokens.tolist() == [5, 6, 299, 299, 1, 2, 3, 4, 299]
    assert len(s) == 9 and s.n_docs == 3
    assert s.doc(2).tolist() == [1, 2, 3, 4, 299]
    assert (s.vocab_size, s.eot_id, s.start_id) == (300, 299, 299)
    assert s.meta["eot_delimited"] is True and s.doc_names == ["a", "b", "c"]
    again = open_stream(tmp_path / "s", verify=True)
    assert again.tokens.tolist() == s.tokens.tolist()
    raw = (tmp_path / "s" / "tokens.bin").read_bytes()
    assert s.sha256 == hashlib.sha256(raw).hexdigest()
    # little-endian uint16: 5 -> b"\x05\x00"
    assert raw[:4] == b"\x05\x00\x06\x00"


def test_dtype_selection(tmp_path):
    small = write_stream(tmp_path / "a", [np.array([65535])],
                         {"tokenizer": "t", "vocab_size": 65536, "eot_id": None, "start_id": 0})
    big = write_stream(tmp_path / "b", [np.array([65536, 3])],
                       {"tokenizer": "t", "vocab_size": 65537, "eot_id": None, "start_id": 0})
    assert small.tokens.dtype == np.dtype("<u2")
    assert (tmp_path / "a" / "tokens.bin").stat().st_size == 2
    assert big.tokens.dtype == np.dtype("<u4")
    assert (tmp_path / "b" / "tokens.bin").read_bytes() == b"\x00\x00\x01\x00\x03\x00\x00\x00"
    assert big.tokens.tolist() == [65536, 3]


def test_ids_outside_vocab_are_user_errors(tmp_path):
    meta = {"tokenizer": "t", "vocab_size": 256, "eot_id": None, "start_id": 10}
    with pytest.raises(UserError, match="outside"):
        write_stream(tmp_path / "s", [np.array([1, 256])], meta)
    with pytest.raises(UserError, match="outside"):
        write_stream(tmp_path / "s", [np.array([-1])], meta)
    assert not (tmp_path / "s").exists()
    assert list(tmp_path.iterdir()) == []  # the temporary directory is gone too


def test_eot_convention_enforced(tmp_path):
    with pytest.raises(ValueError, match="eot"):
        write_stream(tmp_path / "s", [np.array([1, 2])], META)
    with pytest.raises(ValueError, match="non-empty"):
        write_stream(tmp_path / "s", [np.array([], dtype=np.int64)],
                     dict(META, eot_id=None))


def test_interrupted_write_leaves_nothing_valid(tmp_path):
    def docs():
        yield np.array([1, 299])
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_stream(tmp_path / "s", docs(), META)
    assert list(tmp_path.iterdir()) == []


def test_leftover_temp_dir_is_ignored_then_cleaned(tmp_path):
    # a killed writer (pid 2**22 + 12345 is beyond the default pid_max, so not alive) left a
    # complete-looking temporary directory: it must never be opened as the stream
    src = write_stream(tmp_path / "src", _docs(), META)
    dead = tmp_path / f".s.tmp-{2**22 + 12345}-abcd"
    os.rename(src.path, dead)
    assert not is_stream(tmp_path / "s")
    with pytest.raises(UserError, match="does not exist"):
        open_stream(tmp_path / "s")
    s = write_stream(tmp_path / "s", [np.array([7, 299])], META)
    assert s.tokens.tolist() == [7, 299]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]


def test_meta_json_is_the_completeness_marker(tmp_path):
    s = write_stream(tmp_path / "s", _docs(), META)
    meta = json.loads((s.path / "meta.json").read_text())
    del meta["sha256"]
    (s.path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(UserError, match="incomplete"):
        open_stream(s.path)
    (s.path / "meta.json").unlink()
    assert not is_stream(s.path)


def test_truncated_tokens_detected_fast(tmp_path):
    s = write_stream(tmp_path / "s", _docs(), META)
    data = (s.path / "tokens.bin").read_bytes()
    (s.path / "tokens.bin").write_bytes(data[:-2])
    with pytest.raises(UserError, match="bytes"):
        open_stream(s.path)


def test_verify_catches_a_flipped_byte(tmp_path):
    s = write_stream(tmp_path / "s", _docs(), META)
    data = bytearray((s.path / "tokens.bin").read_bytes())
    data[4] ^= 0x01
    (s.path / "tokens.bin").write_bytes(bytes(data))
    opened = open_stream(s.path)  # the fast path only checks sizes
    with pytest.raises(UserError, match="corrupted"):
        opened.verify()
    with pytest.raises(UserError, match="corrupted"):
        open_stream(s.path, verify=True)


def test_overwrite_rules(tmp_path):
    write_stream(tmp_path / "s", _docs(), META)
    with pytest.raises(UserError, match="--force"):
        write_stream(tmp_path / "s", _docs(), META)
    s = write_stream(tmp_path / "s", [np.array([9, 299])], META, overwrite=True)
    assert s.tokens.tolist() == [9, 299]
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(UserError, match="not a token stream"):
        write_stream(foreign, _docs(), META, overwrite=True)
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_empty_stream_opens(tmp_path):
    s = write_stream(tmp_path / "s", [], META)
    assert len(s) == 0 and s.n_docs == 0 and s.doc_offsets.tolist() == [0]
    assert s.sha256 == hashlib.sha256(b"").hexdigest()
    open_stream(s.path, verify=True)
