"""The stream's tokenizer against a Hugging Face directory's or a GGUF file's own (issue 17)."""

import json
from types import SimpleNamespace

import numpy as np
import pytest

from tokenbound.data import write_stream
from tokenbound.data.vocab import gguf_tokens, hf_tokens, spec_file
from tokenbound.errors import UserError
from tokenbound.evaluation import EvalConfig, evaluate
from tokenbound.evaluation.tokenizer_check import check_tokenizer
from tokenbound.evaluation.sources import ModelSource
from tokenbound.fileio import file_sha256
from tokenbound.sources import load_model_fn

from .helpers import EOT, START, V, make_stream

WORDS = ["<|endoftext|>", "to", "be", "or", "not", "that", "is", "the", "question"]


def _tokenizer_json(path, words=WORDS, lowercase=False):
    """A WordLevel tokenizer.json with ids in the order of `words`; `lowercase` adds a
    normalizer (another file, the same vocabulary)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

    tk = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token=words[0]))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    if lowercase:
        tk.normalizer = normalizers.Lowercase()
    tk.save(str(path))
    return path


def _gguf(path, words=WORDS, note=0):
    """A GGUF file holding only metadata: the vocabulary and a number `note` (another file)."""
    gguf = pytest.importorskip("gguf")
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_tokenizer_model("gpt2")
    w.add_token_list(list(words))
    w.add_uint32("test.note", note)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def _model(spec, path):
    return ModelSource(lambda idx: None, V, None, {"kind": spec.partition(":")[0],
                                                   "path": str(path)},
                       tokenizer=spec, tokenizer_sha256=file_sha256(path))


def _stream(spec, path=None):
    meta = {"tokenizer": spec, "tokenizer_sha256": file_sha256(path) if path else None}
    return SimpleNamespace(meta=meta, path="DATA")


def test_vocabularies_read_in_id_order(tmp_path):
    tj = _tokenizer_json(tmp_path / "tokenizer.json")
    assert hf_tokens(tj) == WORDS
    assert gguf_tokens(_gguf(tmp_path / "m.gguf")) == WORDS
    assert spec_file(f"hf:{tmp_path}") == tmp_path / "tokenizer.json"
    assert spec_file(f"gguf:{tmp_path}/m.gguf#eot=</s>") == tmp_path / "m.gguf"
    assert spec_file("bytes") is None and spec_file("chars:ACGT") is None


def test_gguf_model_accepts_same_file_or_same_vocabulary(tmp_path):
    model_file = _gguf(tmp_path / "model.Q8.gguf", note=8)
    model = _model(f"gguf:{model_file}", model_file)
    check_tokenizer(_stream(f"gguf:{model_file}", model_file), model)  # same file
    requant = _gguf(tmp_path / "model.Q4.gguf", note=4)  # requantized: another file
    assert file_sha256(requant) != file_sha256(model_file)
    check_tokenizer(_stream(f"gguf:{requant}#eot=<|endoftext|>", requant), model)
    tj = _tokenizer_json(tmp_path / "tokenizer.json")  # the HF tokenizer of the same model
    check_tokenizer(_stream(f"hf:{tj}", tj), model)


def test_mismatches_refused_with_the_fix(tmp_path):
    model_file = _gguf(tmp_path / "model.gguf")
    model = _model(f"gguf:{model_file}", model_file)
    other = _gguf(tmp_path / "other.gguf", words=WORDS[::-1])  # same strings, other ids
    for stream in (_stream("bytes"), _stream("chars:ACGT"), _stream(f"gguf:{other}", other)):
        with pytest.raises(UserError, match=f"--tokenizer gguf:{model_file}$"):
            check_tokenizer(stream, model)
    gone = tmp_path / "gone.gguf"  # the stream's file is not here: cannot compare, refused
    with pytest.raises(UserError, match="not on this machine"):
        check_tokenizer(SimpleNamespace(meta={"tokenizer": f"gguf:{gone}",
                                              "tokenizer_sha256": "0" * 64}), model)
    (tmp_path / "hf").mkdir()
    tj = _tokenizer_json(tmp_path / "hf" / "tokenizer.json")
    hf_model = _model(f"hf:{tj}", tj)
    lower = _tokenizer_json(tmp_path / "lower.json", lowercase=True)  # same vocab: accepted
    check_tokenizer(_stream(f"hf:{lower}", lower), hf_model)
    fewer = _tokenizer_json(tmp_path / "fewer.json", words=WORDS[:-1])
    with pytest.raises(UserError, match="different vocabulary.*--tokenizer hf:.*tokenizer.json"):
        check_tokenizer(_stream(f"hf:{fewer}", fewer), hf_model)


def test_hf_directory_ships_its_tokenizer(tmp_path, gpt2, caplog):
    """End to end: `load_model_fn` records the directory's tokenizer.json, `evaluate` refuses a
    byte-level stream before anything is written; without tokenizer.json a warning."""
    gpt2.save_pretrained(tmp_path / "hf")
    st = make_stream([9, 14])
    docs = [st.tokens[a:b] for a, b in zip(st.doc_offsets[:-1], st.doc_offsets[1:])]
    data = write_stream(tmp_path / "data", docs, {"tokenizer": "bytes", "vocab_size": V,
                                                  "eot_id": EOT, "start_id": START})
    with caplog.at_level("WARNING"):
        bare = load_model_fn(str(tmp_path / "hf"))
    assert bare.tokenizer is None and "no tokenizer.json" in caplog.text
    evaluate(bare, data, str(tmp_path / "ok"), EvalConfig(context_len=8))  # nothing to compare
    tj = _tokenizer_json(tmp_path / "hf" / "tokenizer.json")
    src = load_model_fn(str(tmp_path / "hf"))
    assert src.tokenizer == f"hf:{tj}" and src.tokenizer_sha256 == file_sha256(tj)
    with pytest.raises(UserError, match=r"prepared with tokenizer 'bytes'"):
        evaluate(src, data, str(tmp_path / "bad"), EvalConfig(context_len=8))
    assert not (tmp_path / "bad").exists()
    meta = json.loads((tmp_path / "data" / "meta.json").read_text())
    assert meta["tokenizer"] == "bytes"
    np.testing.assert_array_equal(np.asarray(data.tokens), st.tokens)


def test_command_refuses_a_byte_stream_before_loading_the_model(tmp_path, capsys):
    from tokenbound.cli import main

    st = make_stream([9])
    write_stream(tmp_path / "data", [st.tokens], {"tokenizer": "bytes", "vocab_size": V,
                                                  "eot_id": EOT, "start_id": START})
    _gguf(tmp_path / "fake.gguf")  # metadata only: it would not load as a model
    assert main(["evaluate", "--model", str(tmp_path / "fake.gguf"), "--data",
                 str(tmp_path / "data"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "prepared with tokenizer 'bytes'" in err and err.count("\n") == 1
    assert f"--tokenizer gguf:{tmp_path / 'fake.gguf'}" in err
