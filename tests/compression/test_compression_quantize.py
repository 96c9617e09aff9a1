import numpy as np
import pytest

from tokenbound.compression import QuantConfig
from tokenbound.compression.quantize import kmeans_quantizer, nearest, uniform_quantizer


def test_uniform_by_hand():
    # m = 1, L = 2: bins [-1, 0) and [0, 1]; members {-1, -0.5} and {0, 0.2, 1}
    # centroids: (-1 - 0.5) / 2 = -0.75 and (0 + 0.2 + 1) / 3 = 0.4 -> float16 0.39990234375
    cb, sym = uniform_quantizer(np.array([-1.0, -0.5, 0.0, 0.2, 1.0]), QuantConfig(levels=2))
    assert sym.tolist() == [0, 0, 1, 1, 1]
    assert cb.dtype == np.float16 and cb.tolist() == [-0.75, 0.39990234375]


def test_uniform_empty_bin_keeps_midpoint():
    # m = 3, L = 3: bins of width 2 centred at -2, 0, 2; nothing falls in [-1, 1)
    cb, sym = uniform_quantizer(np.array([-3.0, -2.0, 2.0, 3.0]), QuantConfig(levels=3))
    assert sym.tolist() == [0, 0, 2, 2] and cb.tolist() == [-2.5, 0.0, 2.5]


def _naive_lloyd(values, levels, iters):
    c = [float(np.quantile(values, (k + 0.5) / levels)) for k in range(levels)]
    for _ in range(iters):
        members = [[] for _ in range(levels)]
        for v in values:
            best = min(range(levels), key=lambda k: (abs(v - c[k]), c[k]))
            members[best].append(v)
        new = [sum(m) / len(m) if m else c[k] for k, m in enumerate(members)]
        if new == c:
            break
        c = new
    return np.array(c)


def test_kmeans_matches_a_naive_lloyd_loop():
    values = np.random.default_rng(0).standard_normal(300)
    cb, sym = kmeans_quantizer(values, QuantConfig(levels=4, method="kmeans"))
    ref = _naive_lloyd(values.tolist(), 4, 50).astype(np.float16)
    assert np.array_equal(cb, ref)
    # every value takes its nearest float16 centroid
    err = np.abs(values[:, None] - cb.astype(np.float64)[None, :])  # (n, L)
    assert np.array_equal(err[np.arange(len(values)), sym], err.min(axis=1))


def test_nearest_ties_go_to_the_lower_centroid():
    assert nearest(np.array([0.5, 1.5, -7.0, 9.0]), np.array([1.0, 0.0, 2.0])).tolist() == \
        [1, 0, 1, 2]


def test_fp16_overflow_is_a_user_error():
    from tokenbound.errors import UserError

    with pytest.raises(UserError, match="float16"):
        uniform_quantizer(np.array([-1e6, 1e6]), QuantConfig(levels=2))
