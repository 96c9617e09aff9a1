"""Linear maps `y = x W^T (+ b)` with structured, compressible weights `W` of shape (out, in).

Parametrizations (docs/METHOD.md section 4; Lotfi et al. ICML 2024 / NeurIPS 2024 use the same
families):

- `DenseLinear`: `W` itself, `out * in` trained entries.
- `LoRALinear` (Hu et al. 2021): `W = W0 + B A`, `W0` frozen and regenerated from a seed,
  `A` (r, in) random init, `B` (out, r) zero init; trained `r (in + out)`.
- `KroneckerLinear`: `W = A ⊗ B`, `A` (o1, i1), `B` (o2, i2) with `in = i1 i2`, `out = o1 o2`
  split into near-square factors (`i1` = largest divisor of `in` that is <= sqrt(in), same for
  out); trained `o1 i1 + o2 i2`. Forward uses `(A ⊗ B) vec(X) = vec(A X B^T)` (row-major vec).
- `MonarchLinear` (Dao et al. 2022, "Monarch", HazyResearch/fly style):
  `W = L · Π · R`, `R` block-diagonal with `nb` blocks (mid/nb, in/nb), `Π` the stride
  permutation of the `mid = min(in, out)` intermediate units, `L` block-diagonal with `nb`
  blocks (out/nb, mid/nb). Trained `mid (in + out) / nb`; e.g. 768 x 768 with nb = 4:
  768 * 1536 / 4 = 294,912. When `nb^2` divides `mid` every output depends on every input.

Every layer has `.dense_weight()` -> (out, in), materialized independently of `forward`, and
optional bias (out,). Init: the materialized `W` has entries of std about `std`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from tokenbound.models.config import near_square_factors


class _Bias(nn.Module):
    """Shared bias handling: `self.bias` is an (out,) zero-init Parameter or None."""

    def _init_bias(self, out_features: int, bias: bool) -> None:
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    def _add_bias(self, y: torch.Tensor) -> torch.Tensor:
        return y if self.bias is None else y + self.bias


class DenseLinear(nn.Linear):
    """`nn.Linear` with normal(0, std) init, zero bias, and `dense_weight()`."""

    def __init__(self, in_features: int, out_features: int, *, std: float = 0.02,
                 bias: bool = False):
        super().__init__(in_features, out_features, bias=bias)
        nn.init.normal_(self.weight, 0.0, std)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def dense_weight(self) -> torch.Tensor:
        return self.weight


class LoRALinear(_Bias):
    """`y = x (W0 + B A)^T + b`; `W0` (out, in) is a non-persistent buffer drawn from `seed`."""

    def __init__(self, in_features: int, out_features: int, rank: int, seed: int, *,
                 std: float = 0.02, bias: bool = False):
        super().__init__()
        self.in_features, self.out_features, self.rank = in_features, out_features, rank
        gen = torch.Generator().manual_seed(int(seed))
        w0 = torch.randn(out_features, in_features, generator=gen) * std  # (out, in)
        self.register_buffer("weight0", w0, persistent=False)
        self.lora_a = nn.Parameter(torch.randn(rank, in_features) / math.sqrt(in_features))
        self.lora_b = nn.Parameter(torch.zeros(out_features, rank))
        self._init_bias(out_features, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.linear(x, self.weight0) + F.linear(F.linear(x, self.lora_a), self.lora_b)
        return self._add_bias(y)

    def dense_weight(self) -> torch.Tensor:
        return self.weight0 + self.lora_b @ self.lora_a


class KroneckerLinear(_Bias):
    """`y = x (A ⊗ B)^T + b` with near-square factor shapes (see module docstring)."""

    def __init__(self, in_features: int, out_features: int, *, std: float = 0.02,
                 bias: bool = False):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        i1, i2 = near_square_factors(in_features)
        o1, o2 = near_square_factors(out_features)
        s = math.sqrt(std)  # entries of A ⊗ B are products a * b: std s * s = std
        self.a = nn.Parameter(torch.randn(o1, i1) * s)
        self.b = nn.Parameter(torch.randn(o2, i2) * s)
        self._init_bias(out_features, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        o1, i1 = self.a.shape
        o2, i2 = self.b.shape
        xm = x.reshape(*lead, i1, i2)  # (..., i1, i2)
        y = torch.matmul(torch.matmul(self.a, xm), self.b.T)  # (..., o1, o2)
        return self._add_bias(y.reshape(*lead, o1 * o2))

    def dense_weight(self) -> torch.Tensor:
        return torch.kron(self.a, self.b)


def monarch_permutation(mid: int, blocks: int) -> torch.Tensor:
    """Stride permutation `perm` with `h_perm = h[..., perm]`: view `h` as (blocks, mid/blocks),
    transpose, flatten. E.g. mid=6, blocks=2: h = [a0 a1 a2 b0 b1 b2] -> [a0 b0 a1 b1 a2 b2]."""
    return torch.arange(mid).view(blocks, mid // blocks).T.reshape(-1)


class MonarchLinear(_Bias):
    """`y = x (L Π R)^T + b`, block-diagonal `R`, `L` with `blocks` blocks (module docstring)."""

    def __init__(self, in_features: int, out_features: int, blocks: int, *,
                 std: float = 0.02, bias: bool = False):
        super().__init__()
        if in_features % blocks or out_features % blocks:
            raise ValueError(f"blocks={blocks} must divide in={in_features}, out={out_features}")
        self.in_features, self.out_features, self.blocks = in_features, out_features, blocks
        mid = min(in_features, out_features)
        # W[o, i] sums over about mid / blocks^2 products r * l: choose std(r) = std(l) = s
        paths = max(1, mid // blocks**2)
        s = (std**2 / paths) ** 0.25
        nb = blocks
        self.r = nn.Parameter(torch.randn(nb, mid // nb, in_features // nb) * s)
        self.l = nn.Parameter(torch.randn(nb, out_features // nb, mid // nb) * s)
        self.register_buffer("perm", monarch_permutation(mid, nb), persistent=False)
        self._init_bias(out_features, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead, nb = x.shape[:-1], self.blocks
        xb = x.reshape(-1, nb, self.in_features // nb).transpose(0, 1)  # (nb, N, in/nb)
        h = torch.bmm(xb, self.r.transpose(1, 2))  # (nb, N, mid/nb)
        h = h.transpose(0, 1).reshape(xb.shape[1], -1)  # (N, mid), block-major
        h = h[:, self.perm].reshape(-1, nb, h.shape[1] // nb).transpose(0, 1)  # (nb, N, mid/nb)
        y = torch.bmm(h, self.l.transpose(1, 2))  # (nb, N, out/nb)
        y = y.transpose(0, 1).reshape(*lead, self.out_features)  # (..., out)
        return self._add_bias(y)

    def dense_weight(self) -> torch.Tensor:
        right = torch.block_diag(*self.r)  # (mid, in)
        left = torch.block_diag(*self.l)  # (out, mid)
        return left @ right[self.perm]


def monarch_param_count(in_features: int, out_features: int, blocks: int) -> int:
    """Trained entries of `MonarchLinear` without bias: `min(in, out) (in + out) / blocks`."""
    return min(in_features, out_features) * (in_features + out_features) // blocks


def make_linear(kind: str, in_features: int, out_features: int, *, std: float, bias: bool,
                lora_rank: int = 4, monarch_blocks: int = 4, seed: int = 0) -> nn.Module:
    """The linear layer of parametrization `kind` (dense, lora, kronecker, monarch)."""
    if kind == "dense":
        return DenseLinear(in_features, out_features, std=std, bias=bias)
    if kind == "lora":
        return LoRALinear(in_features, out_features, lora_rank, seed, std=std, bias=bias)
    if kind == "kronecker":
        return KroneckerLinear(in_features, out_features, std=std, bias=bias)
    if kind == "monarch":
        return MonarchLinear(in_features, out_features, monarch_blocks, std=std, bias=bias)
    raise ValueError(f"unknown linear kind {kind!r}")
