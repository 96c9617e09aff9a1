"""`tokenbound prepare` end to end on tiny corpora, and its bad-input exit codes."""

import json

import numpy as np
import pytest

from tokenbound.cli import main
from tokenbound.data import hash_heldout, open_stream, tokenizer_from_spec

TEXTS = {f"doc{i:02d}.txt": f"Document {i}: to be or not to be, é{i}\n" * (i % 3 + 1)
         for i in range(40)}


@pytest.fixture
def corpus_dir(tmp_path):
    d = tmp_path / "corpus"
    d.mkdir()
    for name, text in TEXTS.items():
        (d / name).write_text(text, encoding="utf-8")
    return d


def _decoded_docs(stream):
    tok = tokenizer_from_spec(stream.meta["tokenizer"])
    return {n: tok.decode(stream.doc(i)) for i, n in enumerate(stream.doc_names)}


def test_prepare_bytes_round_trip_and_split(corpus_dir, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["prepare", "--corpus", str(corpus_dir), "--out", str(out),
                 "--heldout-fraction", "0.25"]) == 0
    train, held = open_stream(out / "train", verify=True), open_stream(out / "heldout")
    expect_held = sorted(n for n in TEXTS if hash_heldout(n, 0.25))
    assert held.doc_names == expect_held and 0 < len(expect_held) < 40
    assert train.doc_names == sorted(set(TEXTS) - set(expect_held))
    assert {**_decoded_docs(train), **_decoded_docs(held)} == TEXTS
    # bytes: no EOT, tokens are the UTF-8 bytes in sorted file order
    expect = b"".join(TEXTS[n].encode() for n in train.doc_names)
    assert train.tokens.astype(np.uint8).tobytes() == expect
    assert (train.eot_id, train.start_id, train.meta["eot_delimited"]) == (None, 10, False)
    assert train.meta["n_bytes"] == len(expect)
    printed = capsys.readouterr().out
    assert f"{len(train):,} tokens" in printed and train.sha256[:12] in printed
    assert "conditional on the document layout" in printed
    # a second identical run keeps the streams
    assert main(["prepare", "--corpus", str(corpus_dir), "--out", str(out),
                 "--heldout-fraction", "0.25"]) == 0
    assert "already prepared" in capsys.readouterr().out
    # an edited corpus file is not silently served from the old streams
    first = sorted(corpus_dir.rglob("*"))[-1]
    first.write_text(first.read_text() + " and one more line")
    assert main(["prepare", "--corpus", str(corpus_dir), "--out", str(out),
                 "--heldout-fraction", "0.25"]) == 2
    assert "not prepared with these settings" in capsys.readouterr().err
    assert main(["prepare", "--corpus", str(corpus_dir), "--out", str(out),
                 "--heldout-fraction", "0.25", "--force"]) == 0


def test_prepare_hf_tokenizer_eot_layout(corpus_dir, tmp_path, tiny_hf):
    tk = tiny_hf(tmp_path / "tokenizer.json")
    eot = tk.token_to_id("<|endoftext|>")
    out = tmp_path / "out"
    assert main(["prepare", "--corpus", str(corpus_dir), "--out", str(out),
                 "--tokenizer", f"hf:{tmp_path / 'tokenizer.json'}"]) == 0
    s = open_stream(out / "train")
    assert s.eot_id == eot == s.start_id and s.meta["eot_delimited"] is True
    for i, name in enumerate(s.doc_names):
        doc = s.doc(i).tolist()
        # every document is its own encoding followed by exactly one closing EOT
        assert doc == tk.encode(TEXTS[name], add_special_tokens=False).ids + [eot]
    assert s.tokens.tolist().count(eot) == s.n_docs


def test_prepare_fasta_with_chars(tmp_path):
    fa = tmp_path / "seqs.faa"
    fa.write_text("".join(f">s{i}\nMKV{'A' * i}\nWL\n" for i in range(30)))
    out = tmp_path / "out"
    assert main(["prepare", "--corpus", str(fa), "--out", str(out),
                 "--tokenizer", "chars:ACDEFGHIKLMNPQRSTVWY"]) == 0
    s = open_stream(out / "train")
    names = s.doc_names
    assert s.meta["tokenizer"] == "chars:ACDEFGHIKLMNPQRSTVWY" and s.vocab_size == 22
    assert (s.eot_id, s.start_id, s.meta["eot_delimited"]) == (20, 21, True)
    i = names.index("s3")
    # M=10, K=8, V=17, A=0, W=18, L=9 (positions in the alphabet), then the closing EOT 20
    assert s.doc(i).tolist() == [10, 8, 17, 0, 0, 0, 18, 9, 20]
    assert s.meta["n_bytes"] == sum(len(f"MKV{'A' * k}WL") for k in range(30)
                                    if f"s{k}" in names)  # residues only, EOT excluded


def test_legacy_chars_stream_opens_and_is_not_reused(tmp_path, capsys):
    """A stream prepared with the old chars: layout (vocab = alphabet, no EOT, start 0) opens
    as its meta says, and prepare with the same spec and request does not pass it off as the
    new layout (it asks for --force)."""
    from tokenbound.data import write_stream
    from tokenbound.data.prepare import make_request

    fa = tmp_path / "seqs.faa"
    fa.write_text("".join(f">s{i}\nACG{'T' * i}\n" for i in range(10)))
    out = tmp_path / "out"
    tok = tokenizer_from_spec("chars:ACGT")
    request = make_request(str(fa.absolute()), tok, heldout_fraction=None, doc_separator=None,
                           glob="*", text_column="text")
    for split in ("train", "heldout"):
        write_stream(out / split, [np.array([0, 1, 2, 3])],
                     dict(tokenizer="chars:ACGT", vocab_size=4, eot_id=None, start_id=0,
                          request=request))
    old = open_stream(out / "train", verify=True)
    assert (old.vocab_size, old.eot_id, old.start_id, old.doc(0).tolist()) == (4, None, 0,
                                                                                [0, 1, 2, 3])
    assert old.tokens.dtype == np.uint16
    assert _prepare("--corpus", str(fa), "--out", str(out), "--tokenizer", "chars:ACGT") == 2
    assert "--force" in capsys.readouterr().err
    assert _prepare("--corpus", str(fa), "--out", str(out), "--tokenizer", "chars:ACGT",
                    "--force") == 0
    assert (open_stream(out / "train").vocab_size, open_stream(out / "train").eot_id) == (6, 4)


def _prepare(*args):
    return main(["prepare", *args])


def test_exit_codes_for_bad_input(corpus_dir, tmp_path, capsys):
    out = str(tmp_path / "out")
    (tmp_path / "bad.txt").write_bytes(b"\xff\xfe")
    (tmp_path / "empty").mkdir()
    fa = tmp_path / "x.fa"
    fa.write_text(">a\nACGN\n")
    cases = [
        (["--corpus", str(tmp_path / "nope"), "--out", out], "does not exist"),
        (["--corpus", str(tmp_path / "empty"), "--out", out], "no (non-empty) documents"),
        (["--corpus", str(tmp_path / "bad.txt"), "--out", out], "bad.txt is not UTF-8"),
        (["--corpus", str(corpus_dir), "--out", out, "--tokenizer", "wordpiece"], "unknown"),
        (["--corpus", str(fa), "--out", out, "--tokenizer", "chars:ACGT"], "document a:"),
        (["--corpus", str(corpus_dir), "--out", out, "--doc-separator", "\\n"], "single text"),
    ]
    for args, msg in cases:
        assert _prepare(*args) == 2, args
        err = capsys.readouterr().err
        assert msg in err and "Traceback" not in err and err.count("\n") == 1
    assert not (tmp_path / "out" / "train").exists()
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_existing_output_needs_force(corpus_dir, tmp_path, capsys):
    out = tmp_path / "out"
    assert _prepare("--corpus", str(corpus_dir), "--out", str(out)) == 0
    sha = open_stream(out / "train").sha256
    assert _prepare("--corpus", str(corpus_dir), "--out", str(out), "--tokenizer",
                    "chars:abc") == 2
    assert "--force" in capsys.readouterr().err
    assert _prepare("--corpus", str(corpus_dir), "--out", str(out), "--heldout-fraction", "0.5",
                    "--force") == 0
    meta = json.loads((out / "train" / "meta.json").read_text())
    assert meta["request"]["heldout_fraction"] == 0.5 and meta["sha256"] != sha


def test_prepare_jsonl_one_document_per_line(tmp_path, capsys):
    rows = [{"text": f"line {i}: to be or not to be\n", "id": i} for i in range(30)]
    path = tmp_path / "c.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "out"
    assert _prepare("--corpus", str(path), "--out", str(out), "--heldout-fraction", "0.2") == 0
    train, held = open_stream(out / "train"), open_stream(out / "heldout")
    assert train.n_docs + held.n_docs == 30 and held.n_docs > 0
    got = {**_decoded_docs(train), **_decoded_docs(held)}
    assert got == {f"c.jsonl:{i + 1}": r["text"] for i, r in enumerate(rows)}  # no JSON syntax
    path.write_text(path.read_text() + '{"txt": "x"}\n')
    assert _prepare("--corpus", str(path), "--out", str(out), "--force") == 2
    err = capsys.readouterr().err
    assert "c.jsonl:31: no field 'text'" in err and err.count("\n") == 1


def _nanogpt_bin(path, docs_ids, dtype=np.uint16):
    """What nanoGPT's prepare.py writes: every document's ids then the EOT id, concatenated."""
    np.concatenate(docs_ids).astype(dtype).tofile(path)


def test_prepare_nanogpt_token_file(tmp_path, tiny_hf):
    tk = tiny_hf(tmp_path / "tokenizer.json")
    eot = tk.token_to_id("<|endoftext|>")
    texts = [f"doc {i}: to be or not, é{i}\n" * (1 + i % 3) for i in range(25)]
    docs = [np.array(tk.encode(t, add_special_tokens=False).ids + [eot]) for t in texts]
    _nanogpt_bin(tmp_path / "train.bin", docs[:12] + [np.array([eot])] + docs[12:])
    out = tmp_path / "out"
    spec = f"hf:{tmp_path / 'tokenizer.json'}"
    assert _prepare("--corpus", str(tmp_path / "train.bin"), "--out", str(out), "--tokenizer",
                    spec, "--heldout-fraction", "0") == 0
    s = open_stream(out / "train", verify=True)
    # the ids are kept as they are (the lone EOT, an empty document, dropped); split at each
    # EOT, which closes (and is scored in) its document
    assert s.tokens.tolist() == np.concatenate(docs).tolist()
    assert [s.doc(i).tolist() for i in range(s.n_docs)] == [d.tolist() for d in docs]
    assert s.doc_names == [f"train.bin#{k}" for k in range(13) if k != 12] + [
        f"train.bin#{k}" for k in range(13, 26)]
    assert (s.eot_id, s.start_id, s.vocab_size) == (eot, eot, tk.get_vocab_size())
    assert s.meta["n_bytes"] == sum(len(t.encode()) for t in texts)  # decoded, EOT excluded
    assert s.meta["corpus_info"]["kind"] == "token-file"
    assert open_stream(out / "heldout").n_docs == 0
    # the default split holds out whole documents by name, as for any path corpus
    assert _prepare("--corpus", str(tmp_path / "train.bin"), "--out", str(tmp_path / "o2"),
                    "--tokenizer", spec, "--heldout-fraction", "0.3") == 0
    held = open_stream(tmp_path / "o2" / "heldout")
    assert held.doc_names == [n for n in s.doc_names if hash_heldout(n, 0.3)]


def test_prepare_token_file_with_chars(tmp_path):
    tok = tokenizer_from_spec("chars:ACGT")
    texts = ["GATTACA", "CAT", "TAG"]
    _nanogpt_bin(tmp_path / "t.bin", [tok.encode_document(t) for t in texts])
    out = tmp_path / "out"
    assert _prepare("--corpus", str(tmp_path / "t.bin"), "--out", str(out), "--tokenizer",
                    "chars:ACGT", "--heldout-fraction", "0") == 0
    s = open_stream(out / "train")
    assert [tok.decode(s.doc(i)) for i in range(s.n_docs)] == texts
    assert s.meta["n_bytes"] == 13 and s.doc(1).tolist() == [1, 0, 3, 4]


def test_token_file_errors(tmp_path, tiny_hf, capsys):
    tiny_hf(tmp_path / "tokenizer.json")
    spec = f"hf:{tmp_path / 'tokenizer.json'}"
    out = str(tmp_path / "out")
    _nanogpt_bin(tmp_path / "open.bin", [np.array([5, 6, 0, 7, 8])])  # EOT 0, then 2 more
    _nanogpt_bin(tmp_path / "big.bin", [np.array([5, 299, 300, 0])])
    (tmp_path / "odd.bin").write_bytes(b"\x05\x00\x00")
    cases = [
        (["open.bin"], "open.bin is a token file: pass"),  # default bytes: refused, not guessed
        (["open.bin", "--tokenizer", "bytes"], "pass the tokenizer that wrote it"),
        (["open.bin", "--tokenizer", spec], "the last 2 tokens are not closed by the end-of"),
        (["big.bin", "--tokenizer", spec], "holds token id 300, outside"),
        (["odd.bin", "--tokenizer", spec], "3 bytes, not a whole number of uint16"),
    ]
    for (name, *args), msg in cases:
        assert _prepare("--corpus", str(tmp_path / name), "--out", out, *args) == 2, name
        err = capsys.readouterr().err
        assert msg in err and "Traceback" not in err and err.count("\n") == 1, err


def test_n_bytes_for_bits_per_byte(corpus_dir, tmp_path, tiny_hf):
    """Every prepared stream records the UTF-8 bytes of its text (EOT excluded), whatever the
    tokenizer, so bits/token convert to bits/byte; a stream written without it says None."""
    from tokenbound.data import write_stream

    tiny_hf(tmp_path / "tokenizer.json")
    for spec in ("bytes", f"hf:{tmp_path / 'tokenizer.json'}"):
        out = tmp_path / spec[:2]
        assert main(["prepare", "--corpus", str(corpus_dir), "--out", str(out),
                     "--tokenizer", spec]) == 0
        s = open_stream(out / "train")
        assert s.n_bytes == sum(len(TEXTS[n].encode("utf-8")) for n in s.doc_names)
        assert (s.n_bytes == len(s)) == (spec == "bytes")  # BPE: fewer tokens (EOT included)
    bare = write_stream(tmp_path / "bare", [np.array([1, 2])],
                        dict(tokenizer="bytes", vocab_size=256, eot_id=None, start_id=10))
    assert bare.n_bytes is None


def _shas(out):
    return [open_stream(out / s).sha256 for s in ("train", "heldout")]


def test_command_streams_are_reused_by_the_pipeline_step(corpus_dir, tmp_path, capsys):
    from tokenbound.experiments import steps

    out = tmp_path / "out"
    assert main(["prepare", "--corpus", str(corpus_dir), "--out", str(out)]) == 0
    before = (out / "train" / "meta.json").read_text()
    res = steps.prepare(str(corpus_dir), "bytes", out)  # the recipe's step, same settings
    assert res["train"].skipped and res["heldout"].skipped
    assert (out / "train" / "meta.json").read_text() == before
    res = steps.prepare(str(corpus_dir), "bytes", tmp_path / "again", heldout_fraction=0.25)
    assert not res["train"].skipped
    assert main(["prepare", "--corpus", str(corpus_dir), "--out", str(tmp_path / "again"),
                 "--heldout-fraction", "0.25"]) == 0
    assert "already prepared, kept" in capsys.readouterr().out


def test_pipeline_streams_are_reused_by_the_command(corpus_dir, tmp_path, capsys, monkeypatch):
    from tokenbound.experiments import steps

    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    steps.prepare("corpus", "bytes", out, glob="*.txt", doc_separator=None)  # a relative path
    shas = _shas(out)
    capsys.readouterr()
    assert main(["prepare", "--corpus", str(corpus_dir), "--out", str(out), "--glob",
                 "*.txt"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert all("already prepared, kept" in line for line in lines[:2]) and _shas(out) == shas
    assert main(["prepare", "--corpus", str(corpus_dir), "--out", str(out)]) == 2  # other glob
    assert "--force" in capsys.readouterr().err


def test_requests_written_by_older_versions_are_still_recognised(corpus_dir, tmp_path,
                                                                  monkeypatch):
    from tokenbound.data.prepare import _same_request, make_request

    monkeypatch.chdir(tmp_path)
    req = make_request(str(corpus_dir), tokenizer_from_spec("bytes"))
    assert req["corpus"] == str(corpus_dir) and set(req) == {"corpus", "source", "tokenizer",
                                                             "tokenizer_sha256"}
    command = {**req, "heldout_fraction": None, "doc_separator": None, "glob": "*",
               "text_column": "text"}  # what `tokenbound prepare` wrote
    pipeline = {**req, "corpus": "corpus", "max_train_docs": None}  # the pipeline step, relative
    assert _same_request(command, req) and _same_request(pipeline, req)
    assert not _same_request({**command, "glob": "*.md"}, req)
