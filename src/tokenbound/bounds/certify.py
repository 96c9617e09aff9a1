"""High-level certification: per-alpha/center statistics in, best certified bound out (METHOD 2).

What is paid where (all grids are fixed in advance, `tokenbound.bounds.grids`):
- Complexity `K = (L(C) + E) ln 2 + ln(1/delta_1) + ln|alphas| + ln|centers| + ln|families|
  + ln|lambda grid of the family|` nats, for every candidate (Azuma pays the center and family
  terms too: conservative, one rule for all), with `L(C) = C + 2 log2 C` (`prefix_free_bits`).
  This makes all candidates hold simultaneously with probability >= 1 - delta_1, so reporting
  the minimum is valid.
- Candidates compared on the results after seeing them (checkpoints, quantization variants,
  strides: `extra_candidates`) are paid `ln(extra_candidates)` in K in every mode.
- Sampled mode additionally pays `ln(G/delta_2)` (mean) and `ln(G/delta_3)` (variance) with
  `G = |alphas| * |centers| * extra_candidates` candidates compared on the same sample.
- The document-level bound is a separate certificate with its own `delta` (it needs i.i.d.
  documents and bounds a different quantity); it never enters `best`.
"""

from __future__ import annotations

import math

import numpy as np

from tokenbound.bounds import grids
from tokenbound.bounds.basics import smoothing, split_delta
from tokenbound.bounds.core import (DOC_STATEMENT, TOKEN_STATEMENT, Context, best, candidates_grid,
                                    check_m, check_mean, with_lambdas)
from tokenbound.bounds.result import BoundResult, Certification
from tokenbound.bounds.token import azuma_term, betting_bound, fan_term, kl_bound
from tokenbound.errors import UserError

def certify_exact(m, sum_x, sum_center=None, sum_sq_dev=None, betting_S=None, *, vocab_size,
                  code_bits, extra_bits=0, delta=0.05, doc_means=None, alphas=grids.ALPHA_GRID,
                  centers=grids.CENTERS, bernstein_lams=grids.BERNSTEIN_LAMBDAS,
                  betting_lams=grids.BETTING_LAMBDAS, extra_candidates=1) -> Certification:
    """Exact mode (every token scored): best token-level bound over alpha x center x family.

    Inputs (float64, index A over `alphas`, Ctr over `centers`, Lam over `betting_lams`):
    `sum_x[A]` = sum_i X_i with `X_i = l_i - a` in [0, c]; `sum_center[A, Ctr]` = sum_i Xhat_i;
    `sum_sq_dev[A, Ctr]` = sum_i (X_i - Xhat_i)^2; `betting_S[A, Ctr, Lam]` =
    sum_i ln1p(lam (Xhat_i - X_i)/c). Families: azuma (always), bernstein (with centers and
    squared deviations), betting (with betting_S). `doc_means[N, A]`: per-document means of X
    for the separate document-level certificate. `delta_1 = delta` (no sampling).
    `extra_candidates`: other models / strides compared on these results, paid `ln` of it in K.
    See the module docstring for what K contains.
    """
    m = check_m(m)
    sum_x = np.asarray(sum_x, dtype=np.float64).reshape(len(alphas))  # (A,)
    fams = ["azuma"] + (["bernstein"] if sum_center is not None and sum_sq_dev is not None else [])
    fams += ["betting"] if betting_S is not None and sum_center is not None else []
    common = Context(delta, split_delta(delta, m), int(code_bits), int(extra_bits), m, None,
                     math.log2(vocab_size), TOKEN_STATEMENT)
    base = {"alpha": len(alphas), "center": len(centers), "family": len(fams),
            **candidates_grid(extra_candidates)}
    lam_grids = {"azuma": None, "bernstein": bernstein_lams, "betting": betting_lams}
    ks = {f: common.k(with_lambdas(base, lam_grids[f])) for f in fams}
    cands = []
    for ia, alpha in enumerate(alphas):
        a, c = smoothing(vocab_size, alpha)
        xbar = sum_x[ia] / m
        check_mean(xbar, c, f"mean X at alpha={alpha}")
        k, parts = ks["azuma"]
        cands.append(common.result(value=a + xbar + azuma_term(c, k, m), empirical=a + xbar,
                                   offset=a, rng=c, sampling=0.0, family="azuma", alpha=alpha,
                                   lam=None, center=None, k=k, parts=parts,
                                   grid_sizes=with_lambdas(base, None)))
        for ic, center in enumerate(centers if len(fams) > 1 else ()):
            cands += _centered(common, fams, ks, base, lam_grids, m, a, c, xbar, alpha, center,
                               sum_center[ia][ic] / m,
                               None if sum_sq_dev is None else sum_sq_dev[ia][ic] / m,
                               None if betting_S is None else betting_S[ia][ic])
    doc = None
    if doc_means is not None:
        doc = certify_documents(doc_means, vocab_size=vocab_size, code_bits=code_bits,
                                extra_bits=extra_bits, delta=delta, alphas=alphas,
                                extra_candidates=extra_candidates).best
    return Certification(best=best(cands), candidates=tuple(cands), document=doc)


def _centered(common, fams, ks, base, lam_grids, m, a, c, xbar, alpha, center, center_mean,
              var_mean, log_wealth) -> list[BoundResult]:
    """Bernstein (Fan) and betting candidates for one (alpha, center)."""
    check_mean(center_mean, c, f"mean center at alpha={alpha}")
    out = []
    if "bernstein" in fams:
        check_mean(var_mean, c * c, f"mean squared deviation at alpha={alpha}")
        k, parts = ks["bernstein"]
        term, lam = fan_term(var_mean, c, k, m, lam_grids["bernstein"])
        out.append(common.result(value=a + xbar + term, empirical=a + xbar, offset=a, rng=c,
                                 sampling=0.0, family="bernstein", alpha=alpha, lam=lam,
                                 center=center, k=k, parts=parts,
                                 grid_sizes=with_lambdas(base, lam_grids["bernstein"]),
                                 extras={"var_mean": var_mean}))
    if "betting" in fams:
        k, parts = ks["betting"]
        s = np.asarray(log_wealth, dtype=np.float64)  # (Lam,)
        bound, lam = betting_bound(center_mean, s, c, k, m, lam_grids["betting"])
        out.append(common.result(value=a + bound, empirical=a + xbar, offset=a, rng=c,
                                 sampling=0.0, family="betting", alpha=alpha, lam=lam,
                                 center=center, k=k, parts=parts,
                                 grid_sizes=with_lambdas(base, lam_grids["betting"]),
                                 extras={"center_mean": center_mean}))
    return out


def certify_topk_exact(m, errors_sum, center_sum=None, sq_dev_sum=None, *, k, vocab_size,
                       code_bits, extra_bits=0, delta=0.05, k_choices=len(grids.TOPK),
                       bernstein_lams=grids.BERNSTEIN_LAMBDAS,
                       kl_lams=grids.KL_LAMBDAS, extra_candidates=1) -> Certification:
    """Exact-mode bound on the conditional top-k error rate (range c = 1, offset 0).

    `errors_sum` = sum_i 1[x_i not in top-k]; `center_sum` = sum_i (model mass outside its top k);
    `sq_dev_sum` = sum_i (err_i - center_i)^2. Families azuma, bernstein (with a center), kl.
    K pays `ln(k_choices)` (which k of `grids.TOPK` is reported) and `ln|families|` plus each
    lambda grid (and `ln(extra_candidates)`, as in `certify_exact`). A separate certificate from
    the loss bound (its own delta).
    """
    m = check_m(m)
    if not 1 <= k < vocab_size:
        raise UserError(f"top-{k} error needs 1 <= k < V = {vocab_size}: with k >= V every token "
                        "is in the top k (skip this k; see `topk_applicable`)")
    fams = ["azuma"] + (["bernstein"] if center_sum is not None and sq_dev_sum is not None else [])
    fams.append("kl")
    common = Context(delta, split_delta(delta, m), int(code_bits), int(extra_bits), m, None,
                     1.0 - k / vocab_size, f"conditional top-{k} error rate on the training contexts")
    base = {"k": int(k_choices), "family": len(fams), **candidates_grid(extra_candidates)}
    err = float(errors_sum) / m
    check_mean(err, 1.0, "top-k error rate")
    kw = dict(empirical=err, offset=0.0, rng=1.0, sampling=0.0, alpha=None, center=None)
    kk, parts = common.k(base)
    cands = [common.result(value=err + azuma_term(1.0, kk, m), family="azuma", lam=None, k=kk,
                           parts=parts, grid_sizes=base, **kw)]
    kk, parts = common.k(with_lambdas(base, kl_lams))
    bound, lam = kl_bound(err, kk, m, kl_lams)
    cands.append(common.result(value=bound, family="kl", lam=lam, k=kk, parts=parts,
                               grid_sizes=with_lambdas(base, kl_lams), **kw))
    if "bernstein" in fams:
        var_mean = float(sq_dev_sum) / m
        check_mean(var_mean, 1.0, "top-k squared deviation")
        kk, parts = common.k(with_lambdas(base, bernstein_lams))
        term, lam = fan_term(var_mean, 1.0, kk, m, bernstein_lams)
        cands.append(common.result(value=err + term, family="bernstein", lam=lam, k=kk,
                                   parts=parts, grid_sizes=with_lambdas(base, bernstein_lams),
                                   extras={"var_mean": var_mean}, **kw))
    return Certification(best=best(cands), candidates=tuple(cands))


def topk_applicable(topk, vocab_size) -> tuple[int, ...]:
    """The k of `topk` that mean something for a vocabulary of `vocab_size` symbols: `k < V`.

    The one place that drops top-k rows: for `k >= V` every token is among the top k (error 0,
    random guess `1 - k/V <= 0`), so no bound or row is produced for it. What is paid for the
    choice of k (`k_choices`) stays the number of k evaluated (conservative).
    """
    return tuple(int(k) for k in topk if int(k) < int(vocab_size))


def certify_documents(doc_means, *, vocab_size, code_bits, extra_bits=0, delta=0.05,
                      alphas=grids.ALPHA_GRID, extra_candidates=1) -> Certification:
    """Document-level bound (METHOD 2.3; the SubLoRA paper): Hoeffding over N i.i.d. documents.

    `doc_means[N, A]`: each document's mean of X = l - a in [0, c] at each alpha.
    `E[Y] <= a + mean(Y) + c sqrt(K / (2N))`, `K` paying the code, `ln(1/delta)`, `ln|alphas|`
    and `ln(extra_candidates)`.
    """
    y = np.asarray(doc_means, dtype=np.float64)  # (N, A)
    if y.ndim != 2 or y.shape[1] != len(alphas) or y.shape[0] < 1:
        raise UserError(f"doc_means must have shape (N, {len(alphas)}), got {y.shape}")
    n_docs = y.shape[0]
    common = Context(delta, split_delta(delta, n_docs), int(code_bits), int(extra_bits), n_docs,
                     None, math.log2(vocab_size), DOC_STATEMENT)
    sizes = {"alpha": len(alphas), **candidates_grid(extra_candidates)}
    k, parts = common.k(sizes)
    cands = []
    for ia, alpha in enumerate(alphas):
        a, c = smoothing(vocab_size, alpha)
        ybar = float(y[:, ia].mean())
        check_mean(ybar, c, f"mean document X at alpha={alpha}")
        cands.append(common.result(value=a + ybar + azuma_term(c, k, n_docs), empirical=a + ybar,
                                   offset=a, rng=c, sampling=0.0, family="document", alpha=alpha,
                                   lam=None, center=None, k=k, parts=parts, grid_sizes=sizes))
    return Certification(best=best(cands), candidates=tuple(cands))
