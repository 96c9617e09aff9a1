"""Generalization bounds for sequence models, token by token (METHOD 2). numpy + scipy only.

Primitives (`basics`, `core`, `token`, `sampling`) take `K` in nats and return terms (`core` is
the public core every certifier builds on: checks, grids, `Context`, `best_per_family`); the high-level
entry points (`certify_exact`, `certify_topk_exact`, `certify_sampled`, `certify_documents`)
take the per-alpha/center statistics of the evaluation and return a `Certification` holding the
best `BoundResult` and every candidate compared. `paper_bound` reproduces the published
arithmetic and is labelled `certificate=False`.
"""

from tokenbound.bounds import grids
from tokenbound.bounds.basics import (LN2 as LN2_NATS, complexity_nats, ln_grid, prefix_free_bits,
                                      psi, smoothing, split_delta)
from tokenbound.bounds.core import (Context, best, best_per_family, candidates_grid, check_m,
                                    check_mean, hoeffding_term, with_lambdas)
from tokenbound.bounds.certify import (certify_documents, certify_exact, certify_topk_exact,
                                       topk_applicable)
from tokenbound.bounds.compat import paper_bound
from tokenbound.bounds.result import (TRIVIAL_LABEL, BoundResult, Certification, is_vacuous,
                                     trivial_cap, value_label)
from tokenbound.bounds.sampled import certify_sampled
from tokenbound.bounds.sampling import (betting_ucb, hoeffding_ucb, maurer_pontil_ucb,
                                        sample_ucb)
from tokenbound.bounds.token import azuma_term, betting_bound, fan_term, kl_bound

__all__ = [
    "grids", "LN2_NATS", "smoothing", "prefix_free_bits", "ln_grid", "complexity_nats",
    "split_delta", "psi",
    "Context", "check_m", "check_mean", "candidates_grid", "with_lambdas", "hoeffding_term",
    "best", "best_per_family", "is_vacuous", "trivial_cap", "value_label", "TRIVIAL_LABEL",
    "azuma_term", "fan_term", "betting_bound", "kl_bound",
    "hoeffding_ucb", "maurer_pontil_ucb", "betting_ucb", "sample_ucb",
    "certify_exact", "certify_topk_exact", "topk_applicable", "certify_sampled",
    "certify_documents",
    "paper_bound", "BoundResult", "Certification",
]
