"""Bits per byte beside bits per token in a run's report (issue 17): a fixed rescaling of the
certified mean over the m scored tokens by m / n_bytes, only where it is the same population."""

from types import SimpleNamespace

import pytest

from tokenbound.experiments.report import _per_byte


class _Stream:
    def __init__(self, m, n_bytes):
        self.m, self.n_bytes = m, n_bytes

    def __len__(self):
        return self.m


def _cert(m, value=4.5, mean=3.0):
    return SimpleNamespace(m=m, best={"value": value}, mean_bits=mean)


def test_bound_and_loss_rescaled_by_tokens_per_byte():
    # 1,000 BPE tokens covering 3,125 bytes: 4.5 bits/token * 1000 / 3125 = 1.44 bits/byte
    pb = _per_byte(_Stream(1000, 3125), _cert(1000), "bits per token")
    assert pb["n_bytes"] == 3125 and pb["tokens_per_byte"] == pytest.approx(0.32, abs=0)
    assert pb["bound_bits_per_byte"] == pytest.approx(1.44, rel=1e-15)
    assert pb["empirical_bits_per_byte"] == pytest.approx(0.96, rel=1e-15)


def test_no_conversion_when_it_would_be_wrong_or_pointless():
    assert _per_byte(_Stream(1000, 1000), _cert(1000), "bits per byte") is None  # bytes already
    assert _per_byte(_Stream(1000, None), _cert(1000), "bits per token") is None  # not recorded
    assert _per_byte(_Stream(1000, 3125), _cert(400), "bits per token") is None  # other population
    pb = _per_byte(_Stream(10, 40), _cert(10, mean=None), "bits per token")
    assert pb["empirical_bits_per_byte"] is None and pb["bound_bits_per_byte"] == 4.5 * 10 / 40
