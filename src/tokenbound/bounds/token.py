"""Token-level martingale inequalities (METHOD 2.2-2.4): the terms, given `K` in nats.

All work on `X_i = l_i - a` in `[0, c]` (bits), `m` scored tokens, and bound the conditional
risk `mean_i E[X_i | x_<i]` (add the offset `a` back for bits/token). `k_nats` is the full
complexity `K(h)` of METHOD 2.1, *including* `ln(1/delta_1)` and every grid searched (including
the lambda grid of the function called). Each holds with probability >= 1 - delta_1 for every
`h` simultaneously, and for every lambda of the grid simultaneously.

- Azuma-Hoeffding (the paper's theorem, 2.2):  R - a <= Xbar + c sqrt(K / (2m)).
- Empirical Bernstein, Fan form (2.4), `v = V/m = mean (X_i - Xhat_i)^2`:
      R - a <= Xbar + psi(lam) v / (lam c) + c K / (lam m).
- Betting form (2.4), `S(lam) = sum_i ln1p(lam xi_i)`, `xi_i = (Xhat_i - X_i)/c`:
      R - a <= mean(Xhat) + (c / lam) (1 - exp((S(lam) - K) / m)).
  Never looser than Fan at the same lam and K (ln1p(lam xi) >= lam xi - psi(lam) xi^2, and
  1 - e^x <= -x); never below Xbar (Jensen).
- Bernoulli-kl for [0, 1] losses (2.4):  mean(mu) <= (1 - exp(-(lam Xbar + K/m))) / (1 - e^-lam).
- Document level (2.3), N i.i.d. documents with means in [0, c]: E[Y] <= mean(Y) + c sqrt(K/(2N)).
"""

from __future__ import annotations

import math

import numpy as np

from tokenbound.bounds.basics import psi


def azuma_term(range_c: float, k_nats: float, m: int) -> float:
    """Azuma-Hoeffding excess `c sqrt(K / (2 m))` in bits (METHOD 2.2); also Hoeffding for
    N i.i.d. documents with `m = N` (METHOD 2.3)."""
    return float(range_c) * math.sqrt(float(k_nats) / (2.0 * m))


def fan_term(var_mean: float, range_c: float, k_nats: float, m: int,
             lams: np.ndarray) -> tuple[float, float]:
    """Empirical-Bernstein (Fan form) excess over Xbar, minimized over the grid `lams` (METHOD 2.4).

    term(lam) = psi(lam) v / (lam c) + c K / (lam m),  `v = V/m` in bits^2 (may be an upper
    confidence bound on V/m: the term is increasing in v). `K` must include `ln(len(lams))`.
    Returns `(term_bits, lam_argmin)`.
    """
    lams = np.asarray(lams, dtype=np.float64)  # (Lam,)
    terms = psi(lams) * var_mean / (lams * range_c) + range_c * k_nats / (lams * m)  # (Lam,)
    j = int(np.argmin(terms))
    return float(terms[j]), float(lams[j])


def betting_bound(center_mean: float, log_wealth: np.ndarray, range_c: float, k_nats: float,
                  m: int, lams: np.ndarray) -> tuple[float, float]:
    """Betting-form upper bound on `mean_i E[X_i | x_<i]` in bits, best lam of the grid (METHOD 2.4).

    `center_mean = mean(Xhat)`; `log_wealth[k] = S(lams[k]) = sum_i ln1p(lams[k] xi_i)` with
    `xi_i = (Xhat_i - X_i) / c` in [-1, 1]. Derivation: `prod_i (1 + lam xi_i)/(1 + lam nu_i)`,
    `nu_i = (Xhat_i - mu_i)/c`, is a positive martingale; Ville/Markov + union give
    `S - sum ln(1 + lam nu_i) <= K`; concavity gives `sum ln(1 + lam nu_i) <= m ln(1 + lam mean nu)`,
    hence `mean(mu) <= mean(Xhat) + (c/lam)(1 - exp((S - K)/m))`. `K` must include `ln(len(lams))`.
    Returns `(bound_bits_without_offset, lam_argmin)`.
    """
    lams = np.asarray(lams, dtype=np.float64)  # (Lam,)
    s = np.asarray(log_wealth, dtype=np.float64)  # (Lam,)
    values = center_mean - (range_c / lams) * np.expm1((s - k_nats) / m)  # (Lam,)
    j = int(np.argmin(values))
    return float(values[j]), float(lams[j])


def kl_bound(mean01: float, k_nats: float, m: int, lams: np.ndarray) -> tuple[float, float]:
    """Bernoulli-kl (Chernoff, concavity) upper bound on `mean_i E[X_i | x_<i]` for X_i in [0, 1].

    From `E[exp(-lam X) | past] <= 1 - mu (1 - e^-lam)` (convexity on [0, 1]) and concavity of ln:
    `mean(mu) <= (1 - exp(-(lam Xbar + K/m))) / (1 - exp(-lam))`, best lam of the grid (METHOD 2.4).
    `K` must include `ln(len(lams))`. Returns `(bound, lam_argmin)` in [0, 1] units.
    """
    lams = np.asarray(lams, dtype=np.float64)  # (Lam,)
    values = np.expm1(-(lams * mean01 + k_nats / m)) / np.expm1(-lams)  # (Lam,)
    j = int(np.argmin(values))
    return float(values[j]), float(lams[j])
