"""High-level entry points: values equal hand-assembled terms, union accounting, JSON, compat."""

import json
import math

import numpy as np
import pytest

from tokenbound.bounds import (certify_documents, certify_exact, certify_sampled,
                               certify_topk_exact, grids, paper_bound, smoothing)
from tokenbound.errors import UserError

V, ALPHAS, CODE = 256, (0.01, 0.1), 5000


def _exact_inputs(m=100_000, seed=0):
    rng = np.random.default_rng(seed)
    sx, sc, sq = np.zeros(2), np.zeros((2, 2)), np.zeros((2, 2))
    S = np.zeros((2, 2, len(grids.BETTING_LAMBDAS)))
    for ia, al in enumerate(ALPHAS):
        _, c = smoothing(V, al)
        x = np.clip(rng.normal(0.3 * c, 0.1 * c, m), 0, c)  # (m,)
        sx[ia] = x.sum()
        for ic, noise in enumerate((0.05, 0.2)):
            xh = np.clip(x + rng.normal(0, noise * c, m), 0, c)
            sc[ia, ic], sq[ia, ic] = xh.sum(), ((x - xh) ** 2).sum()
            S[ia, ic] = np.log1p(grids.BETTING_LAMBDAS[None] * ((xh - x) / c)[:, None]).sum(0)
    return m, sx, sc, sq, S


def test_certify_exact_azuma_value_by_hand():
    m, sx, sc, sq, S = _exact_inputs()
    cert = certify_exact(m, sx, sc, sq, S, vocab_size=V, code_bits=CODE, delta=0.05, alphas=ALPHAS)
    # K = (C + 2 log2 C) ln2 + ln(1/0.05) + ln(2 alphas * 2 centers * 3 families)
    k = (CODE + 2 * math.log2(CODE)) * math.log(2) + math.log(20) + math.log(12)
    az = [r for r in cert.candidates if r.family == "azuma" and r.alpha == 0.1][0]
    a, c = smoothing(V, 0.1)
    assert az.k_nats == pytest.approx(k, rel=1e-12)
    assert az.value == pytest.approx(a + sx[1] / m + c * math.sqrt(k / (2 * m)), rel=1e-12)
    assert az.grid_sizes == {"alpha": 2, "center": 2, "family": 3}
    # Bernstein and betting pay their lambda grids on top
    be = [r for r in cert.candidates if r.family == "bernstein"][0]
    bt = [r for r in cert.candidates if r.family == "betting"][0]
    assert be.k_nats == pytest.approx(k + math.log(1000))
    assert bt.k_nats == pytest.approx(k + math.log(128))
    assert len(cert.candidates) == 2 * (1 + 2 + 2)
    assert cert.best.value == min(r.value for r in cert.candidates)
    assert cert.best.family in ("bernstein", "betting")  # small variance: beats Azuma
    for r in cert.candidates:
        assert r.value >= r.empirical and r.certificate and not r.vacuous
        assert r.value == pytest.approx(r.empirical + r.complexity_term + r.sampling_term)
    json.dumps(cert.to_dict())


def test_extra_candidates_are_paid_in_the_union_bound_in_every_mode():
    m, sx, sc, sq, S = _exact_inputs()
    kw = dict(vocab_size=V, code_bits=CODE, delta=0.05, alphas=ALPHAS)
    docs = np.full((50, 2), 1.0)
    one, many = (certify_exact(m, sx, sc, sq, S, extra_candidates=n, doc_means=docs, **kw)
                 for n in (1, 1000))
    for r1, rn in zip(one.candidates, many.candidates):
        assert rn.k_nats == pytest.approx(r1.k_nats + math.log(1000), rel=1e-13)
        assert rn.k_parts["grid:candidates"] == pytest.approx(math.log(1000))
        assert rn.value > r1.value
    assert many.document.k_nats == pytest.approx(one.document.k_nats + math.log(1000))
    t1, tn = (certify_topk_exact(m, 0.4 * m, 0.4 * m, 0.1 * m, k=1, extra_candidates=n,
                                 vocab_size=V, code_bits=CODE)
              for n in (1, 1000))
    assert tn.best.k_nats == pytest.approx(t1.best.k_nats + math.log(1000))
    rng = np.random.default_rng(1)
    Y = np.stack([np.clip(rng.normal(0.3 * c, 0.05 * c, 500), 0, c)
                  for c in (smoothing(V, a)[1] for a in ALPHAS)], 1)  # (n, A)
    s1, s3 = (certify_sampled(Y, m=m, estimator="hoeffding", extra_candidates=n, **kw)
              for n in (1, 3))
    assert s3.best.k_nats == pytest.approx(s1.best.k_nats + math.log(3))  # K, besides G
    with pytest.raises(UserError, match="candidates"):
        certify_exact(m, sx, extra_candidates=0, **kw)


def test_betting_without_squared_deviations():
    m, sx, sc, sq, S = _exact_inputs()
    cert = certify_exact(m, sx, sc, None, S, vocab_size=V, code_bits=CODE, alphas=ALPHAS)
    assert {r.family for r in cert.candidates} == {"azuma", "betting"}
    assert cert.best.grid_sizes["family"] == 2


def test_certify_exact_monotone_in_code_bits_and_delta():
    m, sx, sc, sq, S = _exact_inputs(seed=1)
    kw = dict(vocab_size=V, alphas=ALPHAS)
    b = lambda code, d: certify_exact(m, sx, sc, sq, S, code_bits=code, delta=d, **kw).best.value
    assert b(1000, 0.05) < b(10_000, 0.05) < b(100_000, 0.05)
    assert b(1000, 0.1) < b(1000, 0.01)


def test_certify_exact_rejects_unclipped_input():
    with pytest.raises(UserError, match="outside"):
        certify_exact(10, np.array([1e6, 1.0]), vocab_size=V, code_bits=10, alphas=ALPHAS)


def test_certify_topk_and_documents():
    cert = certify_topk_exact(10_000, 300.0, 320.0, 250.0, k=1, vocab_size=V, code_bits=100)
    az = [r for r in cert.candidates if r.family == "azuma"][0]
    # C = 100 is not a whole number of bytes: one bit more than the papers' 100 + 2 log2 100
    k = (100 + 2 * math.log2(100) + 1) * math.log(2) + math.log(20) + math.log(3) + math.log(3)
    assert az.value == pytest.approx(0.03 + math.sqrt(k / 20_000))
    kl = [r for r in cert.candidates if r.family == "kl"][0]
    assert kl.value < az.value and cert.best.random_guess == pytest.approx(1 - 1 / V)
    assert cert.best.value == min(r.value for r in cert.candidates)
    docs = np.full((400, 2), 1.0)
    d = certify_documents(docs, vocab_size=V, code_bits=0, delta=0.05, alphas=ALPHAS)
    a, c = smoothing(V, 0.1)
    assert d.candidates[1].value == pytest.approx(a + 1 + c * math.sqrt((math.log(20) + math.log(2)) / 800))


def test_certify_sampled_terms_and_g():
    rng = np.random.default_rng(0)
    n, m = 500, 10**6
    cs = [smoothing(V, al)[1] for al in ALPHAS]
    Y = np.stack([np.clip(rng.normal(0.3 * c, 0.05 * c, n), 0, c) for c in cs], 1)  # (n, A)
    W = np.stack([np.stack([np.full(n, 0.01 * c * c)] * 2, 1) for c in cs], 1)  # (n, A, Ctr)
    cert = certify_sampled(Y, W, m=m, vocab_size=V, code_bits=CODE, delta=0.05, alphas=ALPHAS,
                           estimator="hoeffding", extra_candidates=3)
    split = {"delta_1": 0.05 * n / (n + m), "delta_2": 0.05 * m / (n + m) * 2 / 3,
             "delta_3": 0.05 * m / (n + m) / 3}
    az = [r for r in cert.candidates if r.family == "azuma" and r.alpha == 0.1][0]
    assert az.delta_split == pytest.approx(split)
    g = 2 * 2 * 3
    assert az.grid_sizes["sample_candidates"] == g
    c = cs[1]
    assert az.sampling_term == pytest.approx(c * math.sqrt(math.log(g / split["delta_2"]) / (2 * n)))
    k = ((CODE + 2 * math.log2(CODE)) * math.log(2) + math.log(1 / split["delta_1"]) + math.log(8)
         + math.log(3))  # the 3 candidates are paid in K as well as in G
    assert az.k_nats == pytest.approx(k)
    assert az.value == pytest.approx(az.empirical + az.sampling_term + c * math.sqrt(k / (2 * m)))
    bet = certify_sampled(Y, W, m=m, vocab_size=V, code_bits=CODE, alphas=ALPHAS, extra_candidates=3)
    assert bet.best.value < cert.best.value  # betting UCB tighter than Hoeffding


def test_paper_compat_arithmetic():
    # published formula, by hand: mean + c [sqrt((D - ln(r eps))/(2m)) + sqrt(-ln((1-r) eps)/(2n))]
    a, c = smoothing(50257, 0.1)
    m, n, C, E = 10**9, 10_000, 10**6, 7
    r = n / (n + m)
    D = (C + 2 * math.log2(C) + E) * math.log(2)
    expected = 3.0 + c * (math.sqrt((D - math.log(r * 0.05)) / (2 * m))
                          + math.sqrt(-math.log((1 - r) * 0.05) / (2 * n)))
    res = paper_bound(3.0, a, c, m, n, C, E, 0.05, alpha=0.1)
    assert res.value == pytest.approx(expected, rel=1e-13)
    assert res.certificate is False
