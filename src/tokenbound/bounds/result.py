"""What a bound result carries (METHOD 2.8): a frozen, JSON-able record of every term and input."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field


def _jsonable(value):
    """Floats/ints/str/None/bool, dicts and lists thereof; non-finite floats become None."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return int(value)
    value = float(value)
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class BoundResult:
    """One upper bound, in bits per token (or error rate for top-k), with all its terms.

    `value = min(a + c, empirical + complexity_term + sampling_term)` (up to float rounding),
    where `empirical` is the mean loss with the offset included (`Rhat = a + Xbar`; the sample
    mean in sampled mode). For the betting and kl families the complexity term is defined as
    `uncapped value - empirical - sampling_term` (the bound is not additive in form).
    Every loss lies in `[a, a + c]`, so `a + c` (1 for top-k) bounds the risk for every model
    without any data: a bound above it is replaced by `a + c` and labelled `trivial`
    (`trivial_cap`). The terms keep their uncapped values, so their sum shows what C cost.
    """

    value: float  #: the bound (bits/token, offset included; error rate for top-k)
    empirical: float  #: mean loss (bits/token, offset included) or error rate
    offset: float  #: smoothing offset a (bits); 0 for top-k
    range: float  #: range c of X = l - a (bits); 1 for top-k
    complexity_term: float  #: excess paid for K (and the variance, for Bernstein)
    sampling_term: float  #: UCB(Xbar) - sample mean; 0 in exact mode
    family: str  #: "azuma", "bernstein", "betting", "kl", "document", "paper"
    alpha: float | None  #: prediction smoothing (None for top-k)
    lam: float | None  #: chosen lambda (None for azuma/document/paper)
    center: str | None  #: center of the variance-adaptive families (None otherwise)
    delta: float  #: total confidence budget
    delta_split: dict  #: {"delta_1": ..., "delta_2": ..., "delta_3": ...}
    code_bits: int  #: payload bits C
    prefix_free_bits: float  #: L(C) = C + 2 log2 C (+1 unless C is whole bytes)
    extra_bits: int  #: self-delimiting extra bits E
    k_nats: float  #: K in nats (all parts summed)
    k_parts: dict  #: name -> nats ("code", "extra", "delta", "grid:<name>")
    m: int  #: scored tokens (population); documents for the document-level bound
    n: int | None  #: sampled windows (None in exact mode)
    grid_sizes: dict  #: every grid searched, name -> size (incl. "sample_candidates" G)
    random_guess: float | None  #: log2 V bits (1 - k/V for top-k)
    vacuous: bool  #: value >= random guess (or >= a + c when unknown)
    certificate: bool  #: False for the paper's compatibility arithmetic
    trivial: bool = False  #: the bound reached a + c and was capped there (it says nothing)
    statement: str = ""  #: what is bounded, in words
    extras: dict = field(default_factory=dict)  #: family-specific numbers (v, UCBs, ...)

    def to_dict(self) -> dict:
        """Plain JSON-able dict (non-finite floats -> None)."""
        return _jsonable(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, d: dict) -> "BoundResult":
        """The result `to_dict` wrote (a bound.json entry); `trivial` False when absent."""
        return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls) if f.name in d})


def trivial_cap(value: float, offset: float, range_c: float) -> tuple[float, bool]:
    """`(min(value, a + c), value >= a + c)`: the one place where every bound is capped.

    Every smoothed loss lies in `[a, a + c]` (every top-k error in `[0, 1]`: `a = 0, c = 1`),
    so `R(h) <= a + c` holds for every model with probability 1; a bound at or above it is
    replaced by it and called trivial. (The random-guess value `log2 V` is not a bound on a
    model's risk and is never used as a cap: it only decides `vacuous`.)
    """
    trivial = float(offset) + float(range_c)
    return (trivial, True) if value >= trivial else (float(value), False)


#: How tables label a bound that `trivial_cap` capped.
TRIVIAL_LABEL = "trivial (capped at a + c)"


def value_label(value: float, trivial: bool = False, digits: int = 4) -> str:
    """A bound's value for tables: `"3.5140"`, or `"21.2877 trivial (capped at a + c)"`."""
    text = f"{value:.{digits}f}"
    return f"{text} {TRIVIAL_LABEL}" if trivial else text


def is_vacuous(value: float, random_guess: float | None, offset: float, range_c: float) -> bool:
    """A bound is vacuous if it is no better than guessing uniformly (or than the trivial a + c)."""
    trivial = offset + range_c
    ref = trivial if random_guess is None else min(random_guess, trivial)
    return bool(value >= ref)


@dataclass(frozen=True)
class Certification:
    """The best certified bound and every candidate compared (all paid in the union bound).

    `document` is the separate document-level certificate (its own delta, i.i.d.-documents
    assumption), never part of `best`.
    """

    best: BoundResult
    candidates: tuple[BoundResult, ...]
    document: BoundResult | None = None

    @classmethod
    def from_dict(cls, d: dict) -> "Certification":
        """The certification `to_dict` wrote (the `token` entry of bound.json)."""
        doc = d.get("document")
        return cls(best=BoundResult.from_dict(d["best"]),
                   candidates=tuple(BoundResult.from_dict(c) for c in d["candidates"]),
                   document=None if doc is None else BoundResult.from_dict(doc))

    def to_dict(self) -> dict:
        return {"best": self.best.to_dict(),
                "candidates": [c.to_dict() for c in self.candidates],
                "document": None if self.document is None else self.document.to_dict()}
