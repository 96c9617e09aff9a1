"""Smoothing constants, prefix-free length, complexity parts, delta split, psi; no torch import."""

import math
import subprocess
import sys

import mpmath as mp
import numpy as np
import pytest

from tokenbound.bounds import complexity_nats, ln_grid, prefix_free_bits, psi, smoothing, split_delta
from tokenbound.bounds.basics import papers_prefix_bits
from tokenbound.errors import UserError


@pytest.mark.parametrize("vocab, alpha, c_published", [(50257, 0.1, 18.7870), (32000, 0.1, 18.1357)])
def test_smoothing_matches_published_ranges(vocab, alpha, c_published):
    a, c = smoothing(vocab, alpha)
    assert c == pytest.approx(c_published, abs=5e-5)
    # independent: 50 digits, straight from the definitions a = -log2(1 - alpha + alpha/V)
    mp.mp.dps = 50
    a_ref = -mp.log(1 - mp.mpf(alpha) + mp.mpf(alpha) / vocab, 2)
    c_ref = mp.log(1 + (1 - mp.mpf(alpha)) * vocab / mp.mpf(alpha), 2)
    assert a == pytest.approx(float(a_ref), rel=1e-13)
    assert c == pytest.approx(float(c_ref), rel=1e-13)


def test_smoothing_range_is_min_to_max_loss():
    # a + c = -log2(alpha / V): the loss of a token with p = 0 (hand algebra in METHOD 1)
    a, c = smoothing(256, 0.25)
    assert a + c == pytest.approx(-math.log2(0.25 / 256), rel=1e-14)


@pytest.mark.parametrize("alpha", [0.0, 1.0, -0.1, 1.5])
def test_smoothing_rejects_bad_alpha(alpha):
    with pytest.raises(UserError, match="alpha"):
        smoothing(256, alpha)


def test_prefix_free_bits():
    assert prefix_free_bits(0) == 0.0
    assert prefix_free_bits(1024) == 1024 + 20.0  # whole bytes: 2 * log2(1024) = 20
    assert prefix_free_bits(8) == 8 + 6.0
    assert prefix_free_bits(1) == 2.0  # 1 + 2 log2 1, plus the bit for a C that is not whole bytes
    assert prefix_free_bits(1025) == pytest.approx(1025 + 2 * math.log2(1025) + 1)
    assert papers_prefix_bits(1025) == pytest.approx(1025 + 2 * math.log2(1025))
    with pytest.raises(UserError):
        prefix_free_bits(-1)
    with pytest.raises(UserError):
        prefix_free_bits(2.5)


def test_prefix_free_bits_is_a_kraft_prior():
    # 2^C strings of C bits each get 2^-L(C): the total mass over every C >= 1 must be <= 1.
    # Partial sum to 10^6 plus the tail bound sum_{C > N} 1/C^2 < 1/N.
    c = np.arange(1, 10**6 + 1, dtype=np.float64)
    pf = np.array([prefix_free_bits(int(x)) for x in c[:4096]])
    assert np.allclose(2.0 ** (c[:4096] - pf), np.where(c[:4096] % 8 == 0, 1, 0.5) / c[:4096] ** 2)
    mass = float(np.sum(np.where(c % 8 == 0, 1.0, 0.5) / c**2)) + 1e-6
    assert mass < 0.85
    # the papers' C + 2 log2 C alone is not a prior over every bit length (the test has teeth) ...
    assert float(np.sum(1.0 / c**2)) > 1.6
    # ... but is one over whole-byte messages, which is what message files are
    assert float(np.sum(1.0 / (8 * c) ** 2)) < 0.026


def test_complexity_parts_sum_and_values():
    k, parts = complexity_nats(1024, 3, 0.05, {"alpha": 8, "lambda": 1000})
    assert parts["code"] == pytest.approx(1044 * math.log(2))
    assert parts["extra"] == pytest.approx(3 * math.log(2))
    assert parts["delta"] == pytest.approx(math.log(20))
    assert parts["grid:alpha"] == pytest.approx(math.log(8))
    assert k == pytest.approx((1047) * math.log(2) + math.log(20 * 8 * 1000))
    assert ln_grid(8, 2) == pytest.approx(math.log(16))


def test_split_delta():
    assert split_delta(0.05, 100) == {"delta_1": 0.05}
    s = split_delta(0.06, m=300, n=100)
    assert s == pytest.approx({"delta_1": 0.015, "delta_2": 0.045})
    s = split_delta(0.06, m=300, n=100, variance=True)
    assert s == pytest.approx({"delta_1": 0.015, "delta_2": 0.03, "delta_3": 0.015})
    assert sum(s.values()) == pytest.approx(0.06)


def test_psi_against_series():
    # psi(lam) = -ln(1 - lam) - lam = sum_{k>=2} lam^k / k
    for lam in (1e-4, 0.3, 0.9):
        series = mp.nsum(lambda k: mp.mpf(lam) ** k / k, [2, mp.inf])
        assert float(psi(lam)) == pytest.approx(float(series), rel=1e-12)


def test_bounds_does_not_import_torch():
    code = "import sys, tokenbound.bounds; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
