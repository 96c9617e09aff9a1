"""The public core that every certifier of the bounds package (and `tokenbound calc`/`bound`) uses.

- `check_m`, `check_mean`: the domain checks of a population size and of a mean in `[0, hi]`.
- `candidates_grid`: the grid entry that pays `ln n` in K for `n` candidates compared after
  seeing the results (checkpoints, quantization variants, strides: METHOD 2.1).
- `with_lambdas`: a grid dictionary plus the lambda grid of a family.
- `Context`: what one certification shares (delta split, C, E, m, n): its `k` is K in nats
  (`complexity_nats`) and its `result` builds a `BoundResult` with `vacuous` and the terms set, the
  value capped at the trivial `a + c` (`trivial_cap`).
- `hoeffding_term`: the Hoeffding sampling term `c sqrt(ln(g / delta) / (2n))` (METHOD 2.5).
- `best`, `best_per_family`: the minimum over candidates, overall and per family (and alpha).

Pure functions; domain errors raise `tokenbound.errors.UserError` naming the argument.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tokenbound.bounds.basics import complexity_nats, prefix_free_bits
from tokenbound.bounds.result import BoundResult, is_vacuous, trivial_cap
from tokenbound.errors import UserError

TOKEN_STATEMENT = ("conditional risk R(h) = (1/m) sum_i E[l_i | x_<i] on the training contexts "
                   "(not the loss on new documents)")
DOC_STATEMENT = "expected per-document mean loss on new documents, documents assumed i.i.d."


def check_m(m) -> int:
    """Return `m` (scored tokens, or documents) as int if it is an integer >= 1; else UserError."""
    if int(m) != m or m < 1:
        raise UserError(f"the number of scored tokens m must be an integer >= 1, got {m!r}")
    return int(m)


def check_mean(mean: float, hi: float, what: str) -> None:
    """Raise UserError unless `mean` lies in `[0, hi]` (up to float rounding, 1e-9 relative)."""
    tol = 1e-9 * max(hi, 1.0)
    if not (-tol <= mean <= hi + tol):
        raise UserError(f"{what} = {mean!r} lies outside [0, {hi}]: clip X (and centers) to [0, c]")


def candidates_grid(n) -> dict:
    """Grid entry for `n` candidates compared after seeing data (checkpoints, quantization
    variants, strides: METHOD 2.1), paid `ln n` in K; empty for n = 1."""
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise UserError(f"the number of candidates must be an integer >= 1, got {n!r}")
    return {"candidates": int(n)} if n > 1 else {}


def with_lambdas(base: dict, lams) -> dict:
    """`base` (grid name -> size) plus `"lambda": len(lams)`; a copy of `base` if `lams` is None."""
    return dict(base) if lams is None else {**base, "lambda": len(lams)}


@dataclass(frozen=True)
class Context:
    """Inputs shared by every candidate of one certification.

    `split`: `split_delta`'s dictionary; `code_bits` C and `extra_bits` E; `m` the population
    (scored tokens, or documents); `n` the sampled windows (None in exact mode);
    `random_guess` in bits (log2 V; 1 - k/V for top-k; None if unknown).
    """

    delta: float
    split: dict
    code_bits: int
    extra_bits: int
    m: int
    n: int | None
    random_guess: float | None
    statement: str

    def k(self, grid_sizes: dict) -> tuple[float, dict]:
        """K in nats and its parts: the code, E, `ln(1/delta_1)` and `ln` of every grid size."""
        return complexity_nats(self.code_bits, self.extra_bits, self.split["delta_1"], grid_sizes)

    def result(self, *, value, empirical, offset, rng, sampling, family, alpha, lam, center,
               k, parts, grid_sizes, extras=None, certificate=True) -> BoundResult:
        """A `BoundResult` whose complexity term is `value - empirical - sampling` (bits) and
        whose value is capped at the trivial `offset + rng` (`trivial_cap`)."""
        capped, trivial = trivial_cap(value, offset, rng)
        return BoundResult(
            value=capped, empirical=float(empirical), offset=float(offset), range=float(rng),
            complexity_term=float(value - empirical - sampling), sampling_term=float(sampling),
            family=family, alpha=alpha, lam=lam, center=center, delta=self.delta,
            delta_split=dict(self.split), code_bits=self.code_bits,
            prefix_free_bits=prefix_free_bits(self.code_bits), extra_bits=self.extra_bits,
            k_nats=float(k), k_parts=parts, m=self.m, n=self.n, grid_sizes=dict(grid_sizes),
            random_guess=self.random_guess,
            vacuous=is_vacuous(capped, self.random_guess, offset, rng), certificate=certificate,
            trivial=trivial,
            statement=self.statement, extras=extras or {})


def hoeffding_term(range_c: float, n: int, delta: float, g: int = 1) -> float:
    """Hoeffding's excess `c sqrt(ln(g / delta) / (2n))` of a UCB on a mean of `n` i.i.d. draws in
    `[0, c]`, valid for `g` candidates compared on the same draws at once (METHOD 2.5)."""
    return float(range_c) * math.sqrt(math.log(g / delta) / (2.0 * n))


def _value(c) -> float:
    return c["value"] if isinstance(c, dict) else c.value


def _field(c, name: str):
    return c[name] if isinstance(c, dict) else getattr(c, name)


def best(cands):
    """The candidate with the smallest `value` (the first one on ties): a `BoundResult` or its
    `to_dict()`. Valid as a certificate because every candidate was paid for in K."""
    return min(cands, key=_value)


def best_per_family(cands, by_alpha: bool = False) -> dict:
    """The best candidate of each family, in the order families first appear (ties: the first).

    `cands`: `BoundResult`s or their `to_dict()`s. With `by_alpha`, the keys are
    `(family, alpha)` pairs (the bound-versus-alpha curve) instead of family names.
    """
    out: dict = {}
    for c in cands:
        key = (_field(c, "family"), _field(c, "alpha")) if by_alpha else _field(c, "family")
        if key not in out or _value(c) < _value(out[key]):
            out[key] = c
    return out
