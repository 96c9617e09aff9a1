"""Per-token statistics: fast paths against the naive reference, clipping (METHOD 7.4)."""

import math

import numpy as np
import pytest
import torch

from tokenbound.bounds.basics import smoothing
from tokenbound.bounds.grids import ALPHA_GRID, TOPK
from tokenbound.evaluation.token_stats import (token_stats, token_stats_naive,
                                               token_stats_vchunked)


def _rows(N=12, V=150, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(N, V, generator=g) * 3
    z[0, :] = 0.0  # all tied: rank of x = #{y < x}
    z[1, 5] = z[1, 7] = z[1].max() + 1  # a tie at the top
    t = torch.randint(0, V, (N,), generator=g)
    t[1] = 7  # tied with id 5, which ranks first -> rank 1
    return z, t


def _assert_same(a, b, tol=1e-5):
    for f in ("logp", "x", "center", "topk_center"):
        np.testing.assert_allclose(getattr(a, f), getattr(b, f), rtol=tol, atol=tol, err_msg=f)
    assert np.array_equal(a.topk_err, b.topk_err)


def test_naive_hand_values():
    # V = 4, logits 0: p uniform 1/4, so q uniform too: l = 2 bits, H(q) = 2 bits
    z, t = torch.zeros(1, 4), torch.tensor([2])
    ts = token_stats_naive(z, t, alphas=(0.5,), topk=(1, 3))
    a, c = smoothing(4, 0.5)  # a = -log2(0.5 + 0.125), c = log2(1 + 0.5*4/0.5) = log2 5
    assert a == pytest.approx(-math.log2(0.625)) and c == pytest.approx(math.log2(5))
    assert ts.logp[0] == pytest.approx(math.log(0.25))
    assert ts.x[0, 0] == pytest.approx(2 - a)
    assert ts.center[0, 0].tolist() == pytest.approx([2 - a, 2 - a])
    # all tied: rank(2) = #{0, 1} = 2 -> err for k=1 yes, k=3 no; centers 3/4 and 1/4
    assert ts.topk_err[0].tolist() == [1.0, 0.0]
    assert ts.topk_center[0].tolist() == pytest.approx([0.75, 0.25])


def test_fast_paths_match_naive():
    z, t = _rows()
    ref = token_stats_naive(z, t)
    assert ref.topk_err[1].tolist() == [1.0, 0.0, 0.0]  # tie broken by id: 5 before 7
    _assert_same(token_stats(z, t, chunk_bytes=5 * 4 * 8 * 150), ref)
    _assert_same(token_stats_vchunked(z, t, vocab_chunk=40), ref)
    _assert_same(token_stats_vchunked(z.bfloat16(), t, vocab_chunk=64),
                 token_stats_naive(z.bfloat16(), t))
    assert np.array_equal(token_stats(z, t).logp, ref.logp)  # same fp32 log-softmax


def test_rank_small_vocab_topk_above_v():
    z, t = _rows(N=6, V=8)
    ref = token_stats_naive(z, t)  # k = 10, 100 >= V: never an error, center 0
    assert np.all(ref.topk_err[:, 1:] == 0) and np.all(ref.topk_center[:, 1:] == 0)
    _assert_same(token_stats(z, t), ref)
    _assert_same(token_stats_vchunked(z, t, vocab_chunk=3), ref)


@pytest.mark.parametrize("fn", [token_stats, token_stats_naive, token_stats_vchunked])
def test_clipping_exact_where_p_underflows(fn):
    V = 50
    z = torch.zeros(4, V)
    z[:, 0] = 1e4  # p(y != 0) underflows to exactly 0 in fp32
    z[3, :] = -float("inf")
    z[3, 1] = 0.0  # a one-hot model with -inf logits
    t = torch.tensor([1, 0, 2, 0])
    ts = fn(z, t)
    for i, al in enumerate(ALPHA_GRID):
        a, c = smoothing(V, al)
        assert np.all(ts.x[:, i] >= 0) and np.all(ts.x[:, i] <= c)
        assert np.all(ts.center[:, i] >= 0) and np.all(ts.center[:, i] <= c)
        # p(x) = 0: l = -log2(alpha/V) = a + c exactly in real arithmetic -> X = c (clipped)
        assert ts.x[0, i] == pytest.approx(c, rel=1e-12)
        assert ts.x[0, i] <= c
    assert ts.logp[0] == pytest.approx(-1e4) and np.isneginf(ts.logp[3])
    assert np.all((ts.topk_center >= 0) & (ts.topk_center <= 1))
    assert np.all(np.isfinite(ts.center))


def _llm_rows(N=6, V=3000, seed=3):
    """Peaked rows like a real LM's: a few likely tokens, a long tail 20-120 nats down."""
    g = torch.Generator().manual_seed(seed)
    z = -torch.rand(N, V, generator=g) * 100
    z[:, :5] = torch.randn(N, 5, generator=g) * 2 + 10
    z[0, 7:] = -1e4  # every p but a few underflows
    return z, torch.randint(0, V, (N,), generator=g)


def test_centers_close_to_float64_reference():
    # the centers' float32 row sums (a new summation order, issue 20) stay within 1e-6 relative
    # of the float64 reference; logp, X and the top-k numbers are exactly the reference's
    z, t = _llm_rows()
    ref, got = token_stats_naive(z, t), token_stats(z, t)
    np.testing.assert_allclose(got.center, ref.center, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(got.topk_center, ref.topk_center, rtol=0, atol=1e-7)
    assert np.array_equal(got.logp, ref.logp) and np.array_equal(got.x, ref.x)
    assert np.array_equal(got.topk_err, ref.topk_err)


def test_row_numbers_do_not_depend_on_neighbours_chunks_or_threads():
    # a row's numbers are bitwise the same alone, among others, at any position of any chunk
    # size, with one or several threads (padded rows, one thread per chunk)
    z, t = _llm_rows(N=9)
    row = 8 * 3000 * 4  # bytes of one row's (A, V) tile
    whole = token_stats(z, t, chunk_bytes=4 * row, threads=2)
    for i in (0, 5, 8):
        for kw in ({"chunk_bytes": row, "threads": 1}, {"chunk_bytes": 3 * row, "threads": 3}):
            alone = token_stats(z[i:i + 1], t[i:i + 1], **kw)
            for f in ("logp", "x", "center", "topk_err", "topk_center"):
                assert np.array_equal(getattr(alone, f)[0], getattr(whole, f)[i]), (f, kw)
    assert torch.equal(torch.tensor(token_stats(z, t, chunk_bytes=row, threads=1).center),
                       torch.tensor(whole.center))


def test_threads_setting_restored():
    z, t = _llm_rows(N=5)
    before = torch.get_num_threads()
    token_stats(z, t, chunk_bytes=8 * 3000 * 4, threads=2)
    assert torch.get_num_threads() == before


def test_flush_to_zero_mode_does_not_matter():
    # probabilities are floored at exp(LP_FLOOR): no subnormal arithmetic, so the per-thread
    # flush-to-zero mode cannot change a number (scoring no longer sets it)
    z, t = _llm_rows()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the calling thread does all the work: its mode applies to all
    try:
        torch.set_flush_denormal(True)
        flushed = token_stats(z, t)
        torch.set_flush_denormal(False)
        plain = token_stats(z, t)
    finally:
        torch.set_flush_denormal(False)
        torch.set_num_threads(threads)
    for f in ("logp", "x", "center", "topk_err", "topk_center"):
        assert np.array_equal(getattr(flushed, f), getattr(plain, f)), f
