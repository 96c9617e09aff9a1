"""Shared arithmetic of every bound (METHOD 1, 2.1, 2.6).

- `smoothing`: offset `a` and range `c` (bits) of the smoothed loss `-log2 q(x)`,
  `q = (1 - alpha) p + alpha / V`.
- `prefix_free_bits`: the length-prefix bound `C + 2 log2 C` (Kraft prior; one more bit when `C`
  is not a whole number of bytes); `papers_prefix_bits` is the papers' formula alone.
- `complexity_nats`: `K(h) = (L + E) ln 2 + ln(1/delta_1) + sum ln(grid sizes)`, with its parts.
- `split_delta`: the confidence budget `delta = delta_1 + delta_2 (+ delta_3)`.
- `psi`: `psi(lam) = -ln(1 - lam) - lam`, the Fan / empirical-Bernstein function.

Pure functions; domain errors raise `tokenbound.errors.UserError` naming the argument.
"""

from __future__ import annotations

import math

import numpy as np

from tokenbound.errors import UserError

LN2 = math.log(2.0)


def check_open_unit(value: float, name: str) -> float:
    """Return `value` as float if it lies in (0, 1); otherwise raise UserError naming `name`."""
    value = float(value)
    if not (0.0 < value < 1.0):
        raise UserError(f"{name} must lie strictly between 0 and 1, got {value!r}")
    return value


def smoothing(vocab_size: int, alpha: float) -> tuple[float, float]:
    """Offset and range, in bits, of the alpha-smoothed loss (METHOD 1).

    With `q(y) = (1 - alpha) p(y) + alpha / V`, the loss `l = -log2 q(x)` lies in `[a, a + c]`:
        a = -log2(1 - alpha + alpha / V)            (q <= 1 - alpha + alpha/V when p(x) = 1)
        c = log2(1 + (1 - alpha) V / alpha)         (q >= alpha / V when p(x) = 0)
    Domain: integer `vocab_size >= 2`, `alpha` in (0, 1). Example: V = 50257, alpha = 0.1 gives
    c = 18.7870 bits. Returns `(offset_a, range_c)` in bits.
    """
    if int(vocab_size) != vocab_size or vocab_size < 2:
        raise UserError(f"vocab size must be an integer >= 2, got {vocab_size!r}")
    alpha = check_open_unit(alpha, "alpha")
    v = float(vocab_size)
    offset = -math.log1p(-alpha * (1.0 - 1.0 / v)) / LN2
    rng = math.log1p((1.0 - alpha) * v / alpha) / LN2
    return offset, rng


def check_bits(bits: float, name: str) -> int:
    """Return `bits` as int if it is a non-negative integer; otherwise raise UserError."""
    if isinstance(bits, bool) or not float(bits).is_integer() or bits < 0:
        raise UserError(f"{name} must be a non-negative integer number of bits, got {bits!r}")
    return int(bits)


def papers_prefix_bits(code_bits: int) -> float:
    """`C + 2 log2 C` (0 for C = 0): the papers' length-prefix bound, as they compute it."""
    c = check_bits(code_bits, "code bits")
    return 0.0 if c == 0 else c + 2.0 * math.log2(c)


def prefix_free_bits(code_bits: int) -> float:
    """Prefix-free length `L(C)` of a `C`-bit payload, so that `2^-L` is a Kraft prior (METHOD 2.1).

    `L = C + 2 log2 C` (the papers' bound) when `C` is a whole number of bytes, as for every
    message file: summed over all byte strings it gives mass `sum_n 1/(8n)^2 = pi^2/384`. For any
    other `C` (`--code-bits` of a code that is not byte-aligned) it is one bit more, because over
    all bit lengths `sum_C 2^C 2^-(C + 2 log2 C) = pi^2/6 > 1` would not be a prior; with the bit,
    both kinds together have mass below `pi^2/384 + pi^2/12 < 1`. `L(0) = 0` (one hypothesis
    fixed before seeing data).
    """
    c = check_bits(code_bits, "code bits")
    return papers_prefix_bits(c) + (0.0 if c % 8 == 0 else 1.0)


def ln_grid(*sizes: int) -> float:
    """Union-bound price, in nats, of searching grids of the given sizes: `sum ln(size)`."""
    for s in sizes:
        if int(s) != s or s < 1:
            raise UserError(f"grid sizes must be integers >= 1, got {s!r}")
    return float(sum(math.log(s) for s in sizes))


def complexity_nats(code_bits: int, extra_bits: int, delta_1: float,
                    grid_sizes: dict[str, int]) -> tuple[float, dict[str, float]]:
    """`K = (L(C) + E) ln 2 + ln(1/delta_1) + sum_g ln|g|` in nats, and its parts (METHOD 2.1).

    `L(C)` (`prefix_free_bits`) is the prefix-free code length of the `C`-bit payload; `E` extra bits are
    already self-delimiting (architecture, hyperparameters). Parts: "code", "extra", "delta" and
    one "grid:<name>" per grid searched.
    """
    extra = check_bits(extra_bits, "extra bits")
    delta_1 = check_open_unit(delta_1, "delta_1")
    parts = {"code": prefix_free_bits(code_bits) * LN2, "extra": extra * LN2,
             "delta": -math.log(delta_1)}
    for name, size in grid_sizes.items():
        parts[f"grid:{name}"] = ln_grid(size)
    return float(sum(parts.values())), parts


def split_delta(delta: float, m: int, n: int | None = None,
                variance: bool = False) -> dict[str, float]:
    """The confidence budget (METHOD 2.6), fixed before seeing data.

    Exact mode (`n is None`): `delta_1 = delta`. Sampled mode (n draws from m tokens):
    `delta_1 = delta n / (n + m)`, sampling share `delta m / (n + m)`, all of it `delta_2` (UCB
    on the mean) or, with `variance=True`, split 2:1 between `delta_2` and `delta_3` (UCB on V/m).
    """
    delta = check_open_unit(delta, "delta")
    if n is None:
        return {"delta_1": delta}
    share = m / (n + m)
    out = {"delta_1": delta * n / (n + m), "delta_2": delta * share}
    if variance:
        out["delta_2"] = delta * share * 2.0 / 3.0
        out["delta_3"] = delta * share / 3.0
    return out


def psi(lam):
    """`psi(lam) = -ln(1 - lam) - lam` for `lam` in [0, 1) (Fan, Grama & Liu 2015); array-safe."""
    lam = np.asarray(lam, dtype=np.float64)
    return -np.log1p(-lam) - lam
