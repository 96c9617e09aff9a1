"""The public core of the bounds package: best per family and the Hoeffding term."""

import math

import numpy as np
import pytest

from tokenbound.bounds import (best, best_per_family, certify_exact, hoeffding_term,
                               hoeffding_ucb)
from tokenbound.errors import UserError


def _cert():
    alphas, centers = (0.01, 0.1), ("entropy", "expected")
    m, lams = 10_000, np.linspace(0.01, 0.5, 16)
    rng = np.random.default_rng(3)
    return certify_exact(m, [2.0 * m, 1.5 * m], np.full((2, 2), 1.9 * m), np.full((2, 2), 0.4 * m),
                         rng.normal(0.0, 1.0, (2, 2, 16)) + 60.0, vocab_size=256, code_bits=800,
                         alphas=alphas, centers=centers, betting_lams=lams)


def test_best_per_family_matches_a_naive_scan_on_results_and_dicts():
    cands = _cert().candidates
    naive = {}
    for c in cands:  # first appearance order, strict improvement only
        if c.family not in naive or c.value < naive[c.family].value:
            naive[c.family] = c
    got = best_per_family(cands)
    assert list(got) == list(naive) == ["azuma", "bernstein", "betting"]
    assert all(got[f] is naive[f] for f in naive)
    as_dicts = best_per_family([c.to_dict() for c in cands])
    assert {f: c["value"] for f, c in as_dicts.items()} == {f: c.value for f, c in naive.items()}
    assert best(cands) is min(naive.values(), key=lambda c: c.value)
    by_alpha = best_per_family(cands, by_alpha=True)
    assert set(by_alpha) == {(f, a) for f in naive for a in (0.01, 0.1)}
    assert by_alpha[("azuma", 0.1)].value == min(c.value for c in cands
                                                 if c.family == "azuma" and c.alpha == 0.1)


def test_best_keeps_the_first_of_ties():
    a, b = {"family": "x", "alpha": None, "value": 1.0}, {"family": "x", "alpha": None, "value": 1.0}
    assert best([a, b]) is a and best_per_family([a, b])["x"] is a


def test_hoeffding_term_closed_form_and_ucb():
    # c sqrt(ln(g / delta) / (2n)) by hand: 2 * sqrt(ln(3 / 0.01) / 2000)
    assert hoeffding_term(2.0, 1000, 0.01, 3) == pytest.approx(2 * math.sqrt(math.log(300) / 2000),
                                                               rel=1e-15)
    y = np.full(1000, 0.5)
    assert hoeffding_ucb(y, 2.0, 0.01, 3) == 0.5 + hoeffding_term(2.0, 1000, 0.01, 3)


def test_candidates_grid_rejects_bad_counts():
    from tokenbound.bounds import candidates_grid

    assert candidates_grid(1) == {} and candidates_grid(4) == {"candidates": 4}
    with pytest.raises(UserError, match="candidates"):
        candidates_grid(0)
