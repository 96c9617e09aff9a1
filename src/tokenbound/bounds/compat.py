"""The published code's arithmetic (METHOD 2.7), for recomputing published numbers.

    bound = Rhat_n + c [ sqrt((D - ln(r eps)) / (2m)) + sqrt(-ln((1 - r) eps) / (2n)) ],
    r = n / (n + m),  D = (C + 2 log2 C + E) ln 2  nats.

NOT a certificate: the alpha search (and anything else compared on the sample) is not paid in
its sampling term. Results carry `certificate=False` and never enter a certified minimum.
"""

from __future__ import annotations

import math

from tokenbound.bounds.basics import LN2, check_bits, check_open_unit, papers_prefix_bits
from tokenbound.bounds.result import BoundResult, is_vacuous, trivial_cap


def paper_bound(mean_bits: float, offset: float, range_c: float, m: int, n: int, code_bits: int,
                extra_bits: int = 0, delta: float = 0.05, alpha: float | None = None,
                random_guess: float | None = None) -> BoundResult:
    """The paper's bound, `mean_bits` = sampled mean smoothed loss in bits (offset included).

    Complexity term `c sqrt((D - ln(r delta)) / (2m))`, sampling term
    `c sqrt(-ln((1 - r) delta) / (2n))`; `certificate=False`. The value is capped at the trivial
    `a + c` like every bound's (`trivial_cap`; the terms keep the published arithmetic).
    """
    delta = check_open_unit(delta, "delta")
    extra = check_bits(extra_bits, "extra bits")
    pf = papers_prefix_bits(code_bits)  # exactly the published arithmetic
    d_nats = (pf + extra) * LN2
    r = n / (n + m)
    comp = range_c * math.sqrt((d_nats - math.log(r * delta)) / (2.0 * m))
    samp = range_c * math.sqrt(-math.log((1.0 - r) * delta) / (2.0 * n))
    value, trivial = trivial_cap(mean_bits + comp + samp, offset, range_c)
    return BoundResult(
        value=value, empirical=float(mean_bits), offset=float(offset), range=float(range_c),
        complexity_term=comp, sampling_term=samp, family="paper", alpha=alpha, lam=None,
        center=None, delta=delta, delta_split={"delta_1": r * delta, "delta_2": (1 - r) * delta},
        code_bits=int(code_bits), prefix_free_bits=pf, extra_bits=extra,
        k_nats=d_nats - math.log(r * delta), k_parts={"code": pf * LN2, "extra": extra * LN2,
                                                      "delta": -math.log(r * delta)},
        m=int(m), n=int(n), grid_sizes={}, random_guess=random_guess,
        vacuous=is_vacuous(value, random_guess, offset, range_c), certificate=False,
        trivial=trivial,
        statement="the published code's arithmetic; NOT a certificate (alpha search unpaid)")
