"""Upper confidence bounds on a population mean from i.i.d. draws in [0, c] (METHOD 2.5).

Each function takes the draws `y` (n,) in [0, c] in the order they were drawn, the range `c`,
the confidence `delta` and the number `g` of candidates compared on the same sample, and returns
`U` with `P(E[y] > U) <= delta / g` for one candidate, hence `<= delta` for all `g` at once
(union bound: `ln(g / delta)` replaces `ln(1 / delta)`). Results are clipped to `c`, which is
always valid because `E[y] <= c`.

- Hoeffding: `mean + c sqrt(ln(g/delta) / (2n))`.
- Maurer & Pontil (2009, Thm 4): `mean + sqrt(2 s^2 ln(2g/delta) / n) + 7 c ln(2g/delta) / (3(n-1))`,
  `s^2` the unbiased sample variance (n >= 2).
- Betting (Waudby-Smith & Ramdas 2023, JRSS-B, one-sided, predictable plug-in bets): see
  `betting_ucb`. The tightest of the three in practice.
"""

from __future__ import annotations

import math

import numpy as np

from tokenbound.bounds.core import hoeffding_term
from tokenbound.errors import UserError

ESTIMATORS: tuple[str, ...] = ("betting", "maurer_pontil", "hoeffding")


def _check(y, range_c: float, delta: float, g: int) -> np.ndarray:
    y = np.asarray(y, dtype=np.float64).reshape(-1)  # (n,)
    if y.size == 0:
        raise UserError("the sample is empty: draw at least one window (n >= 1)")
    tol = 1e-9 * range_c  # float64 rounding of window means; anything larger is a real error
    if np.any(y < -tol) or np.any(y > range_c + tol):
        raise UserError(f"sampled values must lie in [0, {range_c}]: clip them to the range")
    y = np.clip(y, 0.0, range_c)
    if not (0.0 < delta < 1.0) or g < 1:
        raise UserError("delta must lie in (0, 1) and the candidate count g must be >= 1")
    return y


def hoeffding_ucb(y, range_c: float, delta: float, g: int = 1) -> float:
    """Hoeffding UCB `mean(y) + c sqrt(ln(g/delta) / (2n))`, clipped to c."""
    y = _check(y, range_c, delta, g)
    u = y.mean() + hoeffding_term(range_c, y.size, delta, g)
    return float(min(u, range_c))


def maurer_pontil_ucb(y, range_c: float, delta: float, g: int = 1) -> float:
    """Empirical-Bernstein UCB of Maurer & Pontil (2009), scaled from [0, 1] to [0, c]; n >= 2.

    `mean + sqrt(2 s^2 ln(2g/delta) / n) + 7 c ln(2g/delta) / (3 (n - 1))`, clipped to c.
    (The published statement is two-sided-safe with ln(2/delta); we keep the 2 as METHOD 2.5 does.)
    """
    y = _check(y, range_c, delta, g)
    n = y.size
    if n < 2:
        raise UserError("the Maurer-Pontil bound needs n >= 2 draws")
    log_term = math.log(2.0 * g / delta)
    s2 = float(y.var(ddof=1))
    u = y.mean() + math.sqrt(2.0 * s2 * log_term / n) + 7.0 * range_c * log_term / (3.0 * (n - 1))
    return float(min(u, range_c))


def plugin_bets(z: np.ndarray, log_inv_delta: float, trunc: float = 0.5) -> np.ndarray:
    """Predictable plug-in bets of Waudby-Smith & Ramdas (2023, fixed horizon n), z in [0, 1].

    `lam_t = min(sqrt(2 ln(1/delta) / (n sigma2_{t-1})), trunc)` with the predictable estimates
    `mu_t = (1/2 + sum_{i<=t} z_i) / (t + 1)`, `sigma2_t = (1/4 + sum_{i<=t} (z_i - mu_i)^2) / (t + 1)`.
    `lam_t` uses only z_1 .. z_{t-1}. Returns (n,) bets in (0, trunc].
    """
    n = z.size
    t = np.arange(1, n + 1, dtype=np.float64)  # (n,)
    mu = (0.5 + np.cumsum(z)) / (t + 1.0)  # (n,) mu_t
    sig2 = (0.25 + np.cumsum((z - mu) ** 2)) / (t + 1.0)  # (n,) sigma2_t
    sig2_prev = np.concatenate(([0.25], sig2[:-1]))  # (n,) sigma2_{t-1}, sigma2_0 = 1/4
    return np.minimum(np.sqrt(2.0 * log_inv_delta / (n * sig2_prev)), trunc)


def betting_ucb(y, range_c: float, delta: float, g: int = 1, trunc: float = 0.5) -> float:
    """One-sided betting UCB (Waudby-Smith & Ramdas 2023), with predictable plug-in bets.

    Normalize `z = y / c` in [0, 1], true mean `mu`. For a candidate mean `t` in [0, 1] the
    capital `K_s(t) = prod_{i<=s} (1 + lam_i (t - z_i))` with predictable `lam_i` in [0, trunc],
    `trunc < 1`, is positive (each factor >= 1 - trunc) and, at `t = mu`, a martingale with
    `K_0 = 1`; by Ville's inequality `P(max_s K_s(mu) >= g/delta) <= delta/g`. So
    `{t : max_s K_s(t) < g/delta}` contains mu with that probability. The bets do not depend
    on `t`, so every factor, hence `max_s K_s(t)`, is nondecreasing in `t`: the set is an
    interval `[0, t*)` (t = 0 is never rejected: all factors <= 1). We bisect for `t*` and
    return the upper end of the bracket (>= t*), times c. Draw order must be the sampling
    order (any order fixed independently of the values is valid for i.i.d. draws).
    """
    y = _check(y, range_c, delta, g)
    z = y / range_c  # (n,) in [0, 1]
    log_thresh = math.log(g / delta)
    lam = plugin_bets(z, log_thresh, trunc)  # (n,)

    def rejected(t: float) -> bool:
        return bool(np.max(np.cumsum(np.log1p(lam * (t - z)))) >= log_thresh)

    lo, hi = 0.0, 1.0
    if not rejected(hi):
        return float(range_c)
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if rejected(mid):
            hi = mid
        else:
            lo = mid
    return float(hi * range_c)


def sample_ucb(y, range_c: float, delta: float, g: int = 1, estimator: str = "betting") -> float:
    """Dispatch to one of `ESTIMATORS` ("betting", "maurer_pontil", "hoeffding")."""
    funcs = {"betting": betting_ucb, "maurer_pontil": maurer_pontil_ucb, "hoeffding": hoeffding_ucb}
    if estimator not in funcs:
        raise UserError(f"unknown sampling estimator {estimator!r}: use one of {', '.join(ESTIMATORS)}")
    return funcs[estimator](y, range_c, delta, g)
