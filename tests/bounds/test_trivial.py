"""Vacuous results look vacuous: every bound is capped at the trivial a + c and labelled, and
top-k rows exist only for k < V (issue 17)."""

import math

import numpy as np
import pytest

from tokenbound.bounds import (TRIVIAL_LABEL, certify_exact, certify_sampled, certify_topk_exact,
                               paper_bound, smoothing, topk_applicable, trivial_cap, value_label)
from tokenbound.errors import UserError

from .test_certify import ALPHAS, V, _exact_inputs


def test_trivial_cap_values():
    # a + c = log2(V / alpha) for smoothing (algebra: a + c = -log2(alpha / V)); by hand:
    # V = 256, alpha = 0.1 -> log2(2560) = 11.321928094887362
    a, c = smoothing(256, 0.1)
    assert a + c == pytest.approx(math.log2(2560), rel=1e-14)
    assert trivial_cap(30.0, a, c) == (pytest.approx(11.321928094887362), True)
    assert trivial_cap(5.0, a, c) == (5.0, False)
    assert trivial_cap(1.2, 0.0, 1.0) == (1.0, True)  # a top-k error rate is at most 1
    assert value_label(21.21, True) == f"21.2100 {TRIVIAL_LABEL}"
    assert value_label(3.5, False) == "3.5000"


def test_huge_code_is_capped_and_labelled_not_levelled_off():
    """C = 10^6 and C = 10^10 gave the same betting value mean + c/0.999 before; now both are
    the trivial a + c (labelled), and the terms still show that C = 10^10 costs more."""
    m, sx, sc, sq, S = _exact_inputs(m=1000)
    small = certify_exact(m, sx, sc, sq, S, vocab_size=V, code_bits=10**6, alphas=ALPHAS)
    big = certify_exact(m, sx, sc, sq, S, vocab_size=V, code_bits=10**10, alphas=ALPHAS)
    a, c = smoothing(V, 0.1)  # the larger alpha has the smaller a + c = log2(V / alpha)
    for cert in (small, big):
        assert cert.best.value == pytest.approx(a + c, rel=1e-14) == pytest.approx(math.log2(2560))
        assert cert.best.trivial and cert.best.vacuous and cert.best.alpha == 0.1
        for r in cert.candidates:
            lo, hi = smoothing(V, r.alpha)
            assert r.trivial and r.value == pytest.approx(lo + hi, rel=1e-14)
    az = lambda cert: [r for r in cert.candidates if r.family == "azuma"][0]
    assert az(big).complexity_term > 90 * az(small).complexity_term  # ~ sqrt(10^4) = 100
    assert az(small).empirical + az(small).complexity_term > az(small).value  # uncapped terms
    assert small.to_dict()["best"]["trivial"] is True


def test_informative_bound_is_unchanged_and_not_trivial():
    m, sx, sc, sq, S = _exact_inputs()
    cert = certify_exact(m, sx, sc, sq, S, vocab_size=V, code_bits=5000, alphas=ALPHAS)
    for r in cert.candidates:
        assert not r.trivial
        assert r.value == pytest.approx(r.empirical + r.complexity_term + r.sampling_term)


def test_topk_sampled_and_paper_are_capped_too():
    cert = certify_topk_exact(50, 20.0, vocab_size=V, k=1, code_bits=10**6)
    assert cert.best.value == 1.0 and cert.best.trivial and cert.best.vacuous
    n, m = 40, 10**4
    Y = np.stack([np.full(n, 0.5 * smoothing(V, al)[1]) for al in ALPHAS], 1)  # (n, A)
    samp = certify_sampled(Y, m=m, vocab_size=V, code_bits=10**7, alphas=ALPHAS)
    a, c = smoothing(V, 0.1)
    assert samp.best.trivial and samp.best.value == pytest.approx(a + c, rel=1e-14)
    p = paper_bound(a + 1.0, a, c, m, n, 10**7, alpha=0.1)
    assert p.trivial and p.value == pytest.approx(a + c, rel=1e-14) and not p.certificate
    assert p.complexity_term > c  # the published arithmetic's terms are kept as computed


def test_topk_rows_only_for_k_below_vocabulary():
    assert topk_applicable((1, 10, 100), 50) == (1, 10)
    assert topk_applicable((1, 10, 100), 100) == (1, 10)
    assert topk_applicable((1, 10, 100), 50257) == (1, 10, 100)
    with pytest.raises(UserError, match="k < V"):
        certify_topk_exact(1000, 3.0, vocab_size=50, k=100, code_bits=10)


def test_report_markdown_labels_a_trivial_bound():
    from tokenbound.experiments.report import render_markdown

    fam = {"bound": 11.3219, "empirical": 3.0, "complexity_term": 40.0, "sampling_term": 0.0,
           "alpha": 0.1, "center": None, "certificate": True, "trivial": True}
    rep = {"name": "t", "families": {"azuma": fam}, "certified_family": "azuma",
           "bound_bits_per_token": 11.3219, "trivial": True, "delta": 0.05, "vacuous": True,
           "random_guess_bits_per_token": 8.0, "empirical_bits_per_token": 3.0, "code_bits": 10**6,
           "n_tokens": 1000, "n_scored": 1000, "provenance": {},
           "topk": {"1": {"bound": 1.0, "trivial": True, "empirical": 0.5, "random_guess": 0.99}}}
    text = render_markdown(rep)
    assert f"**Certified bound: 11.3219 {TRIVIAL_LABEL} bits per token**" in text
    assert f"| 11.3219 {TRIVIAL_LABEL} | 3.0000 |" in text  # the family table's row
    assert f"| 1 | 1.0000 {TRIVIAL_LABEL} |" in text
