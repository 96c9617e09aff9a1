"""Token-level inequalities against naive loops / closed forms, and their properties."""

import math

import numpy as np
import pytest

from tokenbound.bounds import azuma_term, betting_bound, fan_term, grids, kl_bound


def test_azuma_closed_form():
    # c sqrt(K / (2m)) with c = 2, K = 8, m = 100: 2 * sqrt(0.04) = 0.4
    assert azuma_term(2.0, 8.0, 100) == pytest.approx(0.4)


def test_fan_term_naive_loop():
    lams, v, c, k, m = grids.BERNSTEIN_LAMBDAS, 2.9, 10.0, 1000.0, 10**6
    best, best_lam = math.inf, None
    for lam in lams:  # naive scan of psi(lam) v / (lam c) + c K / (lam m)
        t = (-math.log(1 - lam) - lam) * v / (lam * c) + c * k / (lam * m)
        if t < best:
            best, best_lam = t, lam
    term, lam = fan_term(v, c, k, m, lams)
    assert term == pytest.approx(best, rel=1e-12) and lam == best_lam
    # K/m -> 0: the Gaussian rate sqrt(2 v K / m) (psi(lam) ~ lam^2/2; grid slack < 1%)
    term, _ = fan_term(v, c, 100.0, 10**10, lams)
    assert term == pytest.approx(math.sqrt(2 * v * 100.0 / 10**10), rel=0.01)


def test_fan_floor_at_large_k():
    # K/m large: lam hits the grid top (0.999) and the term is about c K / (0.999 m)
    term, lam = fan_term(0.0, 4.0, 500.0, 1000, grids.BERNSTEIN_LAMBDAS)
    assert lam == grids.BERNSTEIN_LAMBDAS[-1]
    assert term == pytest.approx(4.0 * 500 / (0.999 * 1000))


def _stats(rng, m, c):
    x = np.clip(rng.normal(0.4 * c, 0.1 * c, m), 0, c)  # (m,)
    xhat = np.clip(x + rng.normal(0, 0.05 * c, m), 0, c)  # (m,) a good center
    return x, xhat


def test_betting_never_looser_than_fan_same_lambda():
    rng = np.random.default_rng(0)
    c, m, k = 5.0, 2000, 40.0
    x, xhat = _stats(rng, m, c)
    v = np.mean((x - xhat) ** 2)
    for lam in (0.01, 0.1, 0.5, 0.9):
        s = np.sum(np.log1p(lam * (xhat - x) / c))
        bet, _ = betting_bound(xhat.mean(), np.array([s]), c, k, m, np.array([lam]))
        fan, _ = fan_term(v, c, k, m, np.array([lam]))
        assert bet <= x.mean() + fan + 1e-12
        assert bet >= x.mean()  # never below the mean (Jensen)


def test_betting_grid_beats_fan_grid_on_examples():
    rng = np.random.default_rng(1)
    for c, m, k in [(5.0, 2000, 40.0), (14.6, 10**5, 900.0)]:
        x, xhat = _stats(rng, m, c)
        lams = grids.BETTING_LAMBDAS
        s = np.log1p(lams[None, :] * ((xhat - x) / c)[:, None]).sum(0)  # (Lam,)
        bet, _ = betting_bound(xhat.mean(), s, c, k + math.log(len(lams)), m, lams)
        fan, _ = fan_term(np.mean((x - xhat) ** 2), c, k + math.log(1000), m,
                          grids.BERNSTEIN_LAMBDAS)
        assert x.mean() <= bet <= x.mean() + fan


def test_betting_formula_single_lambda():
    # hand check, m = 2, c = 1, lam = 0.5, xi = (0.5, -0.5): S = ln(1.25) + ln(0.75);
    # bound = mean(xhat) + (1/0.5)(1 - exp((S - K)/2)) with K = 1
    xhat_mean, s, k = 0.5, math.log(1.25) + math.log(0.75), 1.0
    expected = 0.5 + 2.0 * (1.0 - math.exp((s - k) / 2))
    got, _ = betting_bound(xhat_mean, np.array([s]), 1.0, k, 2, np.array([0.5]))
    assert got == pytest.approx(expected, rel=1e-14)


def test_kl_bound_inverts_the_chernoff_inequality():
    # the bound q solves -ln(1 - q (1 - e^-lam)) = lam p + K/m at the chosen lam
    p, k, m = 0.02, 30.0, 10_000
    q, lam = kl_bound(p, k, m, grids.KL_LAMBDAS)
    assert -math.log(1 - q * (1 - math.exp(-lam))) == pytest.approx(lam * p + k / m, rel=1e-10)
    assert p < q < p + math.sqrt(k / (2 * m))  # beats Azuma at small error rates
    assert kl_bound(0.0, 0.0, m, grids.KL_LAMBDAS)[0] == pytest.approx(0.0, abs=1e-15)


def test_properties_monotone_and_above_mean():
    c, v, xbar = 8.0, 1.0, 2.0
    vals = [xbar + azuma_term(c, k, m) for k, m in [(10, 1000), (10, 2000), (20, 2000)]]
    assert vals[0] > vals[1] < vals[2]  # decreasing in m, increasing in K (code bits, 1/delta)
    f = [fan_term(v, c, k, m, grids.BERNSTEIN_LAMBDAS)[0] for k, m in [(10, 1000), (10, 2000),
                                                                         (20, 2000)]]
    assert f[0] > f[1] < f[2] and min(f) > 0
    # Bernstein below Azuma when the variance is small compared with c^2 / 4
    assert fan_term(0.5, c, 50.0, 10**5, grids.BERNSTEIN_LAMBDAS)[0] < azuma_term(c, 50.0, 10**5)
