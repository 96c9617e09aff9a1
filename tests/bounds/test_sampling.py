"""Sampling UCBs: closed forms, coverage on i.i.d. draws, betting tighter than Maurer-Pontil."""

import math

import numpy as np
import pytest
from scipy.stats import binom

from tokenbound.bounds import betting_ucb, hoeffding_ucb, maurer_pontil_ucb, sample_ucb
from tokenbound.errors import UserError


def test_hoeffding_closed_form_with_candidates():
    y = np.array([0.0, 1.0, 2.0, 1.0])  # mean 1, c = 4, n = 4, G = 5, delta = 0.1
    expected = 1.0 + 4.0 * math.sqrt(math.log(5 / 0.1) / 8)
    assert hoeffding_ucb(y, 4.0, 0.1, g=5) == pytest.approx(min(expected, 4.0))
    assert hoeffding_ucb(np.full(100, 1.0), 4.0, 0.1) == pytest.approx(1 + 4 * math.sqrt(math.log(10) / 200))


def test_maurer_pontil_closed_form():
    y = np.array([1.0, 3.0, 2.0, 2.0, 2.0])  # mean 2, unbiased s^2 = 2/4 = 0.5
    lt = math.log(2 * 3 / 0.05)  # G = 3
    expected = 2 + math.sqrt(2 * 0.5 * lt / 5) + 7 * 10.0 * lt / (3 * 4)
    assert maurer_pontil_ucb(y, 10.0, 0.05, g=3) == pytest.approx(min(expected, 10.0))


def test_ucbs_reject_out_of_range_and_bad_names():
    with pytest.raises(UserError):
        hoeffding_ucb(np.array([0.5, 1.5]), 1.0, 0.1)
    with pytest.raises(UserError):
        sample_ucb(np.array([0.5]), 1.0, 0.1, estimator="magic")


@pytest.mark.parametrize("ucb", [betting_ucb, maurer_pontil_ucb, hoeffding_ucb])
def test_coverage_iid(ucb):
    # Beta(2, 5) has mean 2/7; at delta = 0.2 at most binom.ppf(0.999) misses in 200 trials
    rng = np.random.default_rng(2)
    trials, delta, c = 200, 0.2, 3.0
    misses = sum(ucb(c * rng.beta(2, 5, 60), c, delta) < c * 2 / 7 for _ in range(trials))
    assert misses <= binom.ppf(0.999, trials, delta)


def test_betting_broken_threshold_is_caught():
    # a "UCB" that is the sample mean plus a tenth of the betting excess misses far more than delta
    rng = np.random.default_rng(3)
    trials, delta = 200, 0.2
    misses = 0
    for _ in range(trials):
        y = rng.beta(2, 5, 60)
        misses += y.mean() + 0.1 * (betting_ucb(y, 1.0, delta) - y.mean()) < 2 / 7
    assert misses > binom.ppf(0.999, trials, delta)


def test_betting_tighter_than_maurer_pontil():
    rng = np.random.default_rng(4)
    for n in (200, 2000):
        y = rng.beta(2, 5, n)
        mean = y.mean()
        bet, mp_ = betting_ucb(y, 1.0, 0.05), maurer_pontil_ucb(y, 1.0, 0.05)
        assert mean < bet < mp_
        assert bet - mean < 0.75 * (mp_ - mean)


def test_betting_monotone_in_delta_and_g():
    y = np.random.default_rng(5).beta(2, 5, 300)
    assert betting_ucb(y, 1, 0.01) >= betting_ucb(y, 1, 0.1)
    assert betting_ucb(y, 1, 0.05, g=100) >= betting_ucb(y, 1, 0.05, g=1)
    assert betting_ucb(np.ones(5), 1.0, 0.05) == 1.0  # clipped to the range
