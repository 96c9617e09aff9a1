"""`evaluate --export-tokens`: per-token ln p(target) from the scoring pass (issue 17)."""

import json

import numpy as np
import pytest
import torch

from tokenbound.cli import main
from tokenbound.data import write_stream
from tokenbound.evaluation import EvalConfig, evaluate
from tokenbound.evaluation.export import scored_positions, tokens_path
from tokenbound.evaluation.windows import make_windows

from .helpers import EOT, START, V, make_stream


def _naive_logp(fn, st, L):
    """ln p of every token, stream order, with s = L: token j of a document is predicted from
    aug[(j // L) * L : j + 1] of aug = [start] + doc, one unpadded forward per token, fp32
    log_softmax, gather (independent of the windows and the batching)."""
    out = []
    for a, b in zip(st.doc_offsets[:-1], st.doc_offsets[1:]):
        aug = [START] + st.tokens[a:b].astype(np.int64).tolist()
        for j in range(b - a):
            ctx = torch.tensor([aug[(j // L) * L: j + 1]])
            with torch.inference_mode():
                lp = torch.log_softmax(fn(ctx)[0, -1].float(), -1)  # (V,)
            out.append(lp[aug[j + 1]].item())
    return np.array(out)


def test_export_equals_naive_log_softmax(tmp_path, gpt2_source):
    st = make_stream([9, 14, 30, 5])
    path = tmp_path / "tok.npz"
    res = evaluate(gpt2_source, st, str(tmp_path / "o"),
                   EvalConfig(context_len=8, batch_size=3, shard_tokens=16),
                   export_tokens=str(path))
    z = np.load(path, allow_pickle=False)
    m = len(st.tokens)
    assert z["logp"].dtype == np.float32 and z["logp"].shape == (m,)
    np.testing.assert_array_equal(z["positions"], np.arange(m))  # exact mode: stream order
    np.testing.assert_array_equal(z["token_ids"], st.tokens.astype(np.int64))
    np.testing.assert_array_equal(z["doc"], np.repeat(np.arange(4), [9, 14, 30, 5]))
    np.testing.assert_allclose(z["logp"], _naive_logp(gpt2_source.fn, st, 8), atol=2e-5)
    # the same numbers as the statistics: sum of -log2 p = the unsmoothed total
    assert -z["logp"].astype(np.float64).sum() / np.log(2) == \
        pytest.approx(res["totals"]["sum_bits"], rel=1e-6)
    meta = json.loads(str(z["meta_json"]))
    assert meta["units"].startswith("nats") and meta["mode"] == "exact" and meta["n_tokens"] == m


def test_export_after_a_run_without_it_rescores_and_sampled(tmp_path, bigram_source):
    st = make_stream([9, 14, 30, 5])
    cfg = EvalConfig(context_len=8, stride=4, shard_tokens=16)
    out = str(tmp_path / "o")
    first = evaluate(bigram_source, st, out, cfg)
    assert not (tmp_path / "o" / "shards" / "tokens_000000.npz").exists()
    again = evaluate(bigram_source, st, out, cfg, export_tokens=str(tmp_path / "t.npz"))
    assert again["totals"] == first["totals"]  # rescored, identical
    z = np.load(tmp_path / "t.npz")
    np.testing.assert_array_equal(z["positions"], np.arange(len(st.tokens)))
    evaluate(bigram_source, st, out, cfg)  # nothing to score: tokens files stay consistent
    assert (tmp_path / "o" / "shards" / "tokens_000000.npz").exists()
    smp = EvalConfig(context_len=8, stride=4, mode="sampled", n_samples=7, seed=1)
    evaluate(bigram_source, st, str(tmp_path / "s"), smp, export_tokens=str(tmp_path / "s.npz"))
    z = np.load(tmp_path / "s.npz")
    w = make_windows(st.doc_offsets, 8, 4)
    idx = np.unique(z["draws"])
    assert z["draws"].size == 7
    pos, win = scored_positions(w, idx)
    np.testing.assert_array_equal(z["positions"], pos)
    np.testing.assert_array_equal(z["window"], win)
    np.testing.assert_array_equal(z["token_ids"], st.tokens[pos])


def test_export_cli(tmp_path, capsys):
    st = make_stream([9, 14])
    docs = [st.tokens[a:b] for a, b in zip(st.doc_offsets[:-1], st.doc_offsets[1:])]
    write_stream(tmp_path / "data", docs, {"tokenizer": "toy", "vocab_size": V,
                                           "eot_id": EOT, "start_id": START})
    from .test_sources_cli import _message

    msg, _ = _message(tmp_path)
    argv = ["evaluate", "--model", str(msg), "--data", str(tmp_path / "data"), "--out",
            str(tmp_path / "o"), "--context", "8", "--no-progress"]
    assert main(argv + ["--export-tokens", str(tmp_path / "no" / "t.npz")]) == 2
    assert "directory does not exist" in capsys.readouterr().err
    assert main(argv + ["--export-tokens", str(tmp_path / "t.npz")]) == 0
    assert "nats" in capsys.readouterr().out
    assert np.load(tmp_path / "t.npz")["logp"].shape == (23,)
    assert tokens_path(str(tmp_path / "o"), 0).endswith("tokens_000000.npz")
