"""Sampled-mode certification (METHOD 2.5, 2.6): UCBs on Xbar and V/m plugged into Azuma / Fan.

`n` windows are drawn uniformly with replacement with probability proportional to their number of
scored tokens, so each window's mean `Y_j` of X is an unbiased, i.i.d. estimate of
`Xbar = (1/m) sum_i X_i` in [0, c], and its mean `W_j` of (X - Xhat)^2 one of `V/m` in [0, c^2].
With `delta_1 = delta n/(n+m)` and the sampling share `delta m/(n+m)` split 2:1 into `delta_2`,
`delta_3` (or all `delta_2` without W), on the intersection of the three events:

    azuma:      R - a <= UCB_X + c sqrt(K / (2m))
    bernstein:  R - a <= UCB_X + psi(lam) UCB_V / (lam c) + c K / (lam m)

both increasing in Xbar and V, so plugging in UCBs is valid. `UCB_X` pays `ln(G / delta_2)`,
`UCB_V` pays `ln(G / delta_3)`, `G = |alphas| * |centers| * extra_candidates` (every candidate
compared on this sample: alphas, centers, and e.g. checkpoints or quantization variants the
caller compared, passed as `extra_candidates`). K pays the code, `ln(1/delta_1)`, `ln|alphas|`,
`ln|centers|`, `ln|families|`, `ln(extra_candidates)` (METHOD 2.1: in the union bound as well as
the sampling terms) and the lambda grid (bernstein). The betting form is not used here.
"""

from __future__ import annotations

import math

import numpy as np

from tokenbound.bounds import grids
from tokenbound.bounds.basics import smoothing, split_delta
from tokenbound.bounds.core import TOKEN_STATEMENT, Context, best, candidates_grid, check_m, with_lambdas
from tokenbound.bounds.result import Certification
from tokenbound.bounds.sampling import sample_ucb
from tokenbound.bounds.token import azuma_term, fan_term
from tokenbound.errors import UserError


def certify_sampled(Y, W=None, *, m, vocab_size, code_bits, extra_bits=0, delta=0.05,
                    alphas=grids.ALPHA_GRID, centers=grids.CENTERS, estimator="betting",
                    extra_candidates=1, bernstein_lams=grids.BERNSTEIN_LAMBDAS) -> Certification:
    """Best sampled-mode token-level bound over alpha x center x family (azuma, bernstein).

    `Y[n, A]`: per drawn window (in draw order, duplicates kept) the mean of X = l - a at each
    alpha; `W[n, A, Ctr]`: the window's mean of (X - Xhat)^2 for each center (None: Azuma only).
    `m`: scored tokens of the population. `estimator`: "betting" (default), "maurer_pontil",
    "hoeffding". Returns every candidate; `sampling_term = UCB_X - mean(Y)`, and the variance
    UCB enters the Bernstein complexity term. The sample statistics are in `extras`.
    """
    m = check_m(m)
    y = np.asarray(Y, dtype=np.float64)  # (n, A)
    if y.ndim != 2 or y.shape[1] != len(alphas):
        raise UserError(f"Y must have shape (n, {len(alphas)}), got {y.shape}")
    n = y.shape[0]
    w = None if W is None else np.asarray(W, dtype=np.float64)  # (n, A, Ctr)
    if w is not None and w.shape != (n, len(alphas), len(centers)):
        raise UserError(f"W must have shape ({n}, {len(alphas)}, {len(centers)}), got {w.shape}")
    fams = ["azuma"] + ([] if w is None else ["bernstein"])
    g = len(alphas) * len(centers) * int(extra_candidates)
    common = Context(delta, split_delta(delta, m, n, variance=w is not None), int(code_bits),
                     int(extra_bits), m, n, math.log2(vocab_size), TOKEN_STATEMENT)
    base = {"alpha": len(alphas), "center": len(centers), "family": len(fams),
            **candidates_grid(extra_candidates)}
    sample_sizes = {"sample_candidates": g}
    cands = []
    for ia, alpha in enumerate(alphas):
        a, c = smoothing(vocab_size, alpha)
        ybar = float(y[:, ia].mean())
        ux = sample_ucb(y[:, ia], c, common.split["delta_2"], g, estimator)
        kw = dict(empirical=a + ybar, offset=a, rng=c, sampling=ux - ybar, alpha=alpha)
        k, parts = common.k(base)
        cands.append(common.result(value=a + ux + azuma_term(c, k, m), family="azuma", lam=None,
                                   center=None, k=k, parts=parts,
                                   grid_sizes={**base, **sample_sizes},
                                   extras={"ucb_mean": ux, "estimator": estimator}, **kw))
        for ic, center in enumerate(centers if w is not None else ()):
            uv = sample_ucb(w[:, ia, ic], c * c, common.split["delta_3"], g, estimator)
            k, parts = common.k(with_lambdas(base, bernstein_lams))
            term, lam = fan_term(uv, c, k, m, bernstein_lams)
            cands.append(common.result(
                value=a + ux + term, family="bernstein", lam=lam, center=center, k=k, parts=parts,
                grid_sizes={**with_lambdas(base, bernstein_lams), **sample_sizes},
                extras={"ucb_mean": ux, "ucb_var": uv, "sample_var_mean": float(w[:, ia, ic].mean()),
                        "estimator": estimator}, **kw))
    return Certification(best=best(cands), candidates=tuple(cands))
