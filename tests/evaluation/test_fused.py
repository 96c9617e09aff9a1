"""Fused per-token statistics (PyTorch online reference, Triton kernel under the interpreter)
against the naive reference; the GPU scoring helpers' logic on the CPU (METHOD 6)."""

import functools
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from tokenbound.bounds.basics import smoothing
from tokenbound.bounds.grids import ALPHA_GRID
from tokenbound.errors import UserError
from tokenbound.evaluation import EvalConfig, evaluate, load_result
from tokenbound.evaluation import fused
from tokenbound.evaluation.fused import (auto_batch_size, compile_fn, scoring_probe, stats_fn,
                                         token_stats_fused, token_stats_online)
from tokenbound.evaluation.scoring import score_tokens
from tokenbound.evaluation.token_stats import (token_stats, token_stats_naive,
                                               token_stats_vchunked)
from tokenbound.evaluation.windows import make_windows

from .helpers import make_stream


def _rows(N=9, V=203, seed=0):
    """Random logits (V >= 151) with the hard cases: all tied, a tie at the top, -inf entries,
    a target at -inf (p(x) = 0), a one-hot row (every p but one underflows)."""
    z, t = _plain(N, V, seed)
    z[0, :] = 0.0
    z[1, 5] = z[1, 7] = z[1].max() + 1
    t[1] = 7  # tied with id 5, which ranks first -> rank 1
    z[2, :100] = -float("inf")  # the whole first chunks are -inf
    t[2] = 150
    z[3, 17] = -float("inf")
    t[3] = 17
    z[4, :] = 0.0
    z[4, 60] = 1e4
    return z, t


def _plain(N, V, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(N, V, generator=g) * 3, torch.randint(0, V, (N,), generator=g)


def _assert_same(a, b, tol=1e-5):
    for f in ("logp", "x", "center", "topk_center"):
        np.testing.assert_allclose(getattr(a, f), getattr(b, f), rtol=tol, atol=tol, err_msg=f)
    assert np.array_equal(a.topk_err, b.topk_err)


@pytest.mark.parametrize("vocab_chunk,row_chunk", [(64, 4), (203, 100), (7, 1)])
def test_online_matches_naive(vocab_chunk, row_chunk):
    z, t = _rows()
    ref = token_stats_naive(z, t)
    assert np.isneginf(ref.logp[3]) and ref.topk_err[1].tolist() == [1.0, 0.0, 0.0]
    _assert_same(token_stats_online(z, t, vocab_chunk=vocab_chunk, row_chunk=row_chunk), ref)


def test_online_bf16_and_small_vocab():
    z, t = _rows(N=7, V=300, seed=1)
    zb = z.bfloat16()  # ties appear after rounding to bf16
    _assert_same(token_stats_online(zb, t, vocab_chunk=128), token_stats_naive(zb, t))
    z, t = _plain(6, 8, seed=2)  # k = 10, 100 >= V: no error, center 0
    got = token_stats_online(z, t, vocab_chunk=3)
    assert np.all(got.topk_err[:, 1:] == 0) and np.all(got.topk_center[:, 1:] == 0)
    _assert_same(got, token_stats_naive(z, t))


def test_online_hand_values():
    # V = 4, all logits 0: p = q = 1/4; l = 2 bits, H(q) = E_p[-log2 q] = 2 bits; rank(2) = 2
    ts = token_stats_online(torch.zeros(1, 4), torch.tensor([2]), alphas=(0.5,), topk=(1, 3),
                            vocab_chunk=3)
    a, c = smoothing(4, 0.5)
    assert ts.logp[0] == pytest.approx(math.log(0.25), abs=1e-7)
    assert ts.x[0, 0] == pytest.approx(2 - a, abs=1e-6)
    assert ts.center[0, 0].tolist() == pytest.approx([2 - a, 2 - a], abs=1e-6)
    assert ts.topk_err[0].tolist() == [1.0, 0.0]
    assert ts.topk_center[0].tolist() == pytest.approx([0.75, 0.25], abs=1e-7)


def test_empty_and_fused_dispatch_on_cpu():
    z, t = _plain(4, 50, seed=3)
    assert token_stats_online(z[:0], t[:0]).x.shape == (0, len(ALPHA_GRID))
    _assert_same(token_stats_fused(z, t), token_stats_naive(z, t))  # CPU: the online path


INTERPRETED = """
import sys
sys.path.insert(0, {tests!r})
from evaluation.test_fused import _assert_same, _rows
from tokenbound.evaluation.fused import token_stats_triton
from tokenbound.evaluation.token_stats import token_stats_naive
z, t = _rows(N=6, V=203)
_assert_same(token_stats_triton(z, t, block=64), token_stats_naive(z, t))  # last chunk masked
zb, tb = z[:, :150].bfloat16(), t % 150  # bf16 input, A = 2, one masked chunk
_assert_same(token_stats_triton(zb, tb, alphas=(0.1, 0.3), block=256),
             token_stats_naive(zb, tb, alphas=(0.1, 0.3)))
# the whole scoring path with the kernel as its statistics (token_stats_fused takes it here)
import numpy as np
import torch
from evaluation.helpers import make_stream
from tokenbound.evaluation.scoring import score_tokens
from tokenbound.evaluation.windows import make_windows
torch.manual_seed(0)
emb = torch.nn.Embedding(50, 50)
st = make_stream([20, 7, 33], seed=4)
w = make_windows(st.doc_offsets, 8, 4)
args = (lambda idx: emb(idx) * 4, st.tokens, st.doc_offsets, st.start_id, w, np.arange(len(w)))
with torch.inference_mode():
    got, want = score_tokens(*args, batch_size=3, stats="fused"), score_tokens(*args, batch_size=3)
_assert_same(got, want)
print("kernel ok")
"""


def test_triton_kernel_under_interpreter():
    """The CUDA kernel's code, run by Triton's CPU interpreter, alone and as the statistics of
    `score_tokens` (needs triton installed: `make test-triton`; the interpreter must be chosen
    before triton is imported: a fresh process)."""
    pytest.importorskip("triton")
    tests = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, TRITON_INTERPRET="1")
    out = subprocess.run([sys.executable, "-c", INTERPRETED.format(tests=tests)], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "kernel ok" in out.stdout, out.stderr[-3000:]


def test_triton_refuses_cpu_tensors_without_interpreter(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(ValueError, match="CUDA"):
        fused.token_stats_triton(*_plain(2, 10, seed=0))


def test_alpha_constants_padding():
    c1, c0, A = fused._alpha_consts((0.1, 0.2, 0.5), 10, "cpu")
    assert A == 4  # padded with q = 0 * p + 1 = 1: log2 q = 0 adds nothing
    assert c1.tolist() == pytest.approx([0.9, 0.8, 0.5, 0.0])
    assert c0.tolist() == pytest.approx([0.01, 0.02, 0.05, 1.0])


def test_stats_fn_selection():
    assert stats_fn("auto", False, None) is token_stats  # CPU default path unchanged
    assert stats_fn("torch", True, None) is token_stats
    assert stats_fn("auto", True, None) is token_stats_fused
    assert stats_fn("fused", False, 64) is token_stats_fused
    part = stats_fn("auto", False, 64)
    assert isinstance(part, functools.partial) and part.func is token_stats_vchunked
    with pytest.raises(ValueError):
        stats_fn("fast", False, None)


def test_auto_batch_size_doubling_search():
    tried = []

    def probe(b):  # out of memory above 6 windows
        tried.append(b)
        if b > 6:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")

    assert auto_batch_size(probe, max_batch=100) == 4 and tried == [1, 2, 4, 8]
    tried.clear()
    assert auto_batch_size(probe, max_batch=3) == 3 and tried == [1, 2, 3]  # capped
    with pytest.raises(UserError, match="does not fit"):
        auto_batch_size(lambda b: probe(b + 10), max_batch=8)

    def broken(b):
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape"):  # not an OOM: propagates
        auto_batch_size(broken, max_batch=8)


def test_scoring_probe_runs_forward_and_stats(bigram_source):
    calls = []

    def fn(idx):
        calls.append(tuple(idx.shape))
        return bigram_source.fn(idx)

    scoring_probe(fn, 5, "cpu", "fused", None)(3)
    assert calls == [(3, 5)]


def test_compile_fn_same_logits(gpt2_source):
    idx = torch.randint(0, 40, (2, 9))
    with torch.inference_mode():
        want = gpt2_source.fn(idx)
        got = compile_fn(gpt2_source.fn, backend="eager")(idx)
    assert torch.equal(got, want)


def test_fused_scoring_matches_default(gpt2_source):
    st = make_stream([20, 7, 33], seed=4)
    w = make_windows(st.doc_offsets, 8, 4)
    idx = np.arange(len(w))
    args = (gpt2_source.fn, st.tokens, st.doc_offsets, st.start_id, w, idx)
    _assert_same(score_tokens(*args, batch_size=3, stats="fused"),
                 score_tokens(*args, batch_size=3))


def test_evaluate_auto_batch_and_compile_wiring(tmp_path, bigram_source, monkeypatch):
    st = make_stream([30, 12, 45], seed=1)
    compiled = []

    def fake_compile(fn):
        compiled.append(fn)
        return fn

    monkeypatch.setattr("tokenbound.evaluation.engine.compile_fn", fake_compile)
    res = evaluate(bigram_source, st, str(tmp_path / "a"),
                   EvalConfig(context_len=8, batch_size="auto", compile=True, stats="fused"))
    ref = evaluate(bigram_source, st, str(tmp_path / "b"), EvalConfig(context_len=8))
    assert compiled == [bigram_source.fn] and res["timing"]["batch_size"] == 8  # CPU: 8
    a, b = load_result(str(tmp_path / "a"))[0], load_result(str(tmp_path / "b"))[0]
    np.testing.assert_allclose(a.sum_center, b.sum_center, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(a.sum_x, b.sum_x, rtol=1e-6)  # ln p(x): fp32 z_x - lse


@pytest.mark.parametrize("kw", [{"batch_size": "big"}, {"batch_size": 0}, {"stats": "x"}])
def test_eval_config_rejects(kw):
    with pytest.raises(UserError):
        EvalConfig(context_len=8, **kw)
