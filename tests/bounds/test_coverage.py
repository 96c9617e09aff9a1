"""Monte Carlo coverage (METHOD 7.6): honest bounds hold, broken variants are caught.

Every trial draws fresh data from the known Markov source (`mc_sources`), selects a hypothesis
on the data from 2^b candidates, computes the statistics, and compares each bound with the exact
true conditional risk. The honest count of violations must stay within a binomial tolerance of
delta (`binom.ppf(0.999, trials, delta)`); each broken variant (all union terms dropped, or a
center that peeks at the target, or no sampling term) must exceed that same threshold. (In
sampled mode a peeking center is not caught: the UCB on the mean dominates there; the broken
variant is "no sampling term".)
A large delta (0.25) keeps the fast versions meaningful with few trials.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binom

from tokenbound.bounds import (azuma_term, betting_bound, certify_documents, certify_exact,
                               certify_sampled, certify_topk_exact, fan_term, grids, kl_bound,
                               smoothing)

from .mc_sources import (V, entropy_center, make_source, sample_chain, sample_docs, select,
                         token_stats)

DELTA = 0.25
ALPHAS_FAST = (0.01, 0.1, 0.5)


def _limit(trials: int) -> int:
    return int(binom.ppf(0.999, trials, DELTA))


def _token_trial(rng, support, trans, bits, alphas, b):
    """One exact-mode trial: returns violation flags of honest and broken variants."""
    m = bits.shape[1]
    x = sample_chain(rng, support, m + 1)
    prev, y = x[:-1], x[1:]
    pred, k = select(support, bits, prev, y)
    miss = (pred[k] != y).astype(np.float64)  # (m,)
    p_miss = 1.0 - trans[prev, pred[k]]  # (m,) true conditional miss probability
    lams = grids.BETTING_LAMBDAS
    A, C = len(alphas), len(grids.CENTERS)
    sx, sc, sq, S = np.zeros(A), np.zeros((A, C)), np.zeros((A, C)), np.zeros((A, C, len(lams)))
    true_r, peek = {}, {}
    for ia, alpha in enumerate(alphas):
        a, c = smoothing(V, alpha)
        xs = c * miss
        true_r[alpha] = a + c * p_miss.mean()
        for ic, center in enumerate((entropy_center(alpha), 0.0)):
            sx[ia], sc[ia, ic], sq[ia, ic], S[ia, ic] = token_stats(xs, center, c, lams)
    flags = {}
    cert = certify_exact(m, sx, sc, sq, S, vocab_size=V, code_bits=b, delta=DELTA, alphas=alphas)
    for fam in ("azuma", "bernstein", "betting"):
        flags[fam] = any(r.value < true_r[r.alpha] for r in cert.candidates if r.family == fam)
    # broken: a center that peeks at the target (Xhat_i = X_i): V = 0, S = 0
    bad = certify_exact(m, sx, np.repeat(sx[:, None], C, 1), np.zeros((A, C)), np.zeros_like(S),
                        vocab_size=V, code_bits=b, delta=DELTA, alphas=alphas)
    for fam in ("bernstein", "betting"):
        flags["peek_" + fam] = any(r.value < true_r[r.alpha] for r in bad.candidates
                                   if r.family == fam)
    # broken: every union term dropped (no ln|H|, no grids), alpha = 0.1 fixed
    a, c = smoothing(V, 0.1)
    k0, xbar, ctr = math.log(1 / DELTA), c * miss.mean(), entropy_center(0.1)
    _, _, sq1, s1 = token_stats(c * miss, ctr, c, lams)
    flags["nounion_azuma"] = a + xbar + azuma_term(c, k0, m) < true_r[0.1]
    flags["nounion_bernstein"] = (a + xbar + fan_term(sq1 / m, c, k0, m, grids.BERNSTEIN_LAMBDAS)[0]
                                  < true_r[0.1])
    flags["nounion_betting"] = a + betting_bound(ctr, s1, c, k0, m, lams)[0] < true_r[0.1]
    # top-1 error (X/c = miss), kl family honest and without union terms
    topk = certify_topk_exact(m, miss.sum(), 0.0, miss.sum(), k=1, vocab_size=V, code_bits=b,
                              delta=DELTA)
    flags["kl"] = any(r.value < p_miss.mean() for r in topk.candidates)
    flags["nounion_kl"] = kl_bound(miss.mean(), k0, m, grids.KL_LAMBDAS)[0] < p_miss.mean()
    return flags


def _run_token(trials, m, b, alphas, seed):
    support, trans = make_source(seed)
    rng = np.random.default_rng(seed + 1)
    bits = rng.integers(0, 2, size=(2 ** b, m))  # (H, m) fixed before any data
    counts: dict[str, int] = {}
    for _ in range(trials):
        for key, v in _token_trial(rng, support, trans, bits, alphas, b).items():
            counts[key] = counts.get(key, 0) + bool(v)
    return counts


def _assert_token(counts, trials):
    lim = _limit(trials)
    for fam in ("azuma", "bernstein", "betting", "kl"):
        assert counts[fam] <= lim, (fam, counts)
    for broken in ("peek_bernstein", "peek_betting", "nounion_azuma", "nounion_bernstein",
                   "nounion_betting", "nounion_kl"):
        assert counts[broken] > lim, (broken, counts)


def test_token_level_coverage_fast():
    trials = 40
    _assert_token(_run_token(trials, m=1000, b=8, alphas=ALPHAS_FAST, seed=0), trials)


@pytest.mark.slow
def test_token_level_coverage_slow():
    trials = 300
    _assert_token(_run_token(trials, m=3000, b=10, alphas=grids.ALPHA_GRID, seed=10), trials)


def _run_documents(trials, n_docs, length, b, seed):
    """Documents: an opener drawn uniformly (context only) and `length` scored tokens, i.i.d.
    With only `length * V` cells per hypothesis, a near-even source (0.55 / 0.45) keeps the
    candidates' true risks close, so that selecting on the data mostly fits noise."""
    support, trans = make_source(seed, p_major=0.55)
    rng = np.random.default_rng(seed + 1)
    bits = rng.integers(0, 2, size=(2 ** b, length, V))  # (H, j, x_prev)
    alphas = ALPHAS_FAST
    honest = broken = 0
    for _ in range(trials):
        docs = sample_docs(rng, support, n_docs, length + 1, 0.55)  # (N, l+1)
        prev, y = docs[:, :-1], docs[:, 1:]  # (N, l)
        j_idx = np.broadcast_to(np.arange(length), prev.shape)  # (N, l)
        pred = support[prev[None], bits[:, j_idx, prev]]  # (H, N, l)
        k = int(np.argmax((pred == y[None]).sum(axis=(1, 2))))
        miss = (pred[k] != y).mean(axis=1)  # (N,) per-document miss rate
        # exact E[Y] for hypothesis k: the marginal of the previous token at position j is
        # uniform (the opener) propagated j times through T
        marg, p_miss = np.full(V, 1.0 / V), 0.0
        for j in range(length):
            guess = support[np.arange(V), bits[k, j]]  # (V,) predicted token per previous token
            p_miss += (marg * (1.0 - trans[np.arange(V), guess])).sum() / length
            marg = marg @ trans
        cs = [smoothing(V, al) for al in alphas]
        cert = certify_documents(np.stack([c * miss for _, c in cs], 1), vocab_size=V,
                                 code_bits=b, delta=DELTA, alphas=alphas)
        honest += any(r.value < a + c * p_miss for r, (a, c) in zip(cert.candidates, cs))
        a, c = cs[1]
        broken += a + c * miss.mean() + azuma_term(c, math.log(1 / DELTA), n_docs) < a + c * p_miss
    return honest, broken


def test_document_level_coverage_fast():
    trials = 40
    honest, broken = _run_documents(trials, n_docs=300, length=1, b=10, seed=3)
    assert honest <= _limit(trials) < broken, (honest, broken)


@pytest.mark.slow
def test_document_level_coverage_slow():
    trials = 300
    honest, broken = _run_documents(trials, n_docs=500, length=2, b=12, seed=4)
    assert honest <= _limit(trials) < broken, (honest, broken)


def _run_sampled(trials, m, window, n, b, seed, estimator="betting"):
    """Population of m tokens in windows of `window`; n windows drawn uniformly with replacement;
    the hypothesis is selected on the sample (so G includes 2^b); true risk over all m tokens."""
    support, trans = make_source(seed)
    rng = np.random.default_rng(seed + 1)
    bits = rng.integers(0, 2, size=(2 ** b, m))  # (H, m)
    alphas, C = ALPHAS_FAST, len(grids.CENTERS)
    counts = {"honest": 0, "nosampling": 0}
    for _ in range(trials):
        x = sample_chain(rng, support, m + 1)
        prev, y = x[:-1], x[1:]
        draws = rng.integers(0, m // window, size=n)  # (n,) window ids, duplicates kept
        pos = (draws[:, None] * window + np.arange(window)[None, :]).reshape(-1)  # (n*w,)
        pred_s, k = select(support, bits[:, pos], prev[pos], y[pos])
        pred = support[prev, bits[k]]  # (m,) the selected hypothesis on the whole population
        miss = (pred != y).astype(np.float64)
        p_miss = 1.0 - trans[prev, pred]
        wmiss = miss[pos].reshape(n, window)  # (n, w)
        Y, W = np.zeros((n, len(alphas))), np.zeros((n, len(alphas), C))
        true_r = {}
        for ia, al in enumerate(alphas):
            a, c = smoothing(V, al)
            Y[:, ia] = c * wmiss.mean(1)
            for ic, ctr in enumerate((entropy_center(al), 0.0)):
                W[:, ia, ic] = ((c * wmiss - ctr) ** 2).mean(1)
            true_r[al] = a + c * p_miss.mean()
        cert = certify_sampled(Y, W, m=m, vocab_size=V, code_bits=b, delta=DELTA, alphas=alphas,
                               estimator=estimator, extra_candidates=2 ** b)
        counts["honest"] += any(r.value < true_r[r.alpha] for r in cert.candidates)
        # broken: the sample mean used as if every token were scored (no sampling term)
        a, c = smoothing(V, 0.1)
        k_full = cert.best.k_nats
        counts["nosampling"] += a + Y[:, 1].mean() + azuma_term(c, k_full, m) < true_r[0.1]
    return counts


def test_sampled_coverage_fast():
    trials = 40
    counts = _run_sampled(trials, m=20000, window=10, n=100, b=6, seed=5)
    lim = _limit(trials)
    assert counts["honest"] <= lim < counts["nosampling"], counts


@pytest.mark.slow
@pytest.mark.parametrize("estimator", ["betting", "maurer_pontil", "hoeffding"])
def test_sampled_coverage_slow(estimator):
    trials = 200
    counts = _run_sampled(trials, m=50000, window=10, n=200, b=8, seed=6, estimator=estimator)
    lim = _limit(trials)
    assert counts["honest"] <= lim < counts["nosampling"], counts
