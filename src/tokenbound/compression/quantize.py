"""Post-training quantization of the charged tensors to an `L`-level float16 codebook.

METHOD section 4 (and Lotfi et al. 2024, section 4 / ICML 2024 "SubLoRA", quantization of the
trained parameters): each group of charged values `v` (n,) is mapped to symbols `s` (n,) in
`{0..L-1}` and a codebook `c` (L,) stored in float16; the model's weights become exactly
`c[s]` (float16 values cast to the tensor's dtype), so the decoded message *is* the evaluated
model.

Schemes (a small config plus a registered handler, applied in place like torchao `quantize_`):
- ``"uniform"``: `L` equal-width bins on `[-max|v|, max|v|]`; a value's symbol is its bin; the
  centroid of a bin is the mean of its members (an empty bin keeps its midpoint).
- ``"kmeans"``: 1-D Lloyd iterations started from the quantiles `(k + 1/2) / L`; after float16
  rounding of the centroids every value takes its nearest float16 centroid.

Grouping: ``"model"`` = one codebook for all quantized tensors (concatenated in
`trained_state()` order), ``"tensor"`` = one codebook per tensor. Tensors whose name matches a
pattern of `QuantConfig.exclude` (fnmatch), or that a `filter_fn` rejects, are stored raw at
their own width.
"""

from __future__ import annotations

import fnmatch
import logging
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np
import torch

from tokenbound.compression.adapters import builder_for
from tokenbound.configs import Config, ConfigError, setting
from tokenbound.errors import UserError

log = logging.getLogger(__name__)

FP16_MAX = 65504.0
QUANTIZERS: dict[str, Callable[[np.ndarray, "QuantConfig"], tuple[np.ndarray, np.ndarray]]] = {}
GROUPINGS = ("model", "tensor")


def register_quantizer(name: str):
    """Decorator: register `fn(values (n,) float64, cfg) -> (codebook (L,) f16, symbols (n,))`."""
    def deco(fn):
        QUANTIZERS[name] = fn
        return fn
    return deco


@dataclass(frozen=True)
class QuantConfig(Config):
    """How the charged tensors are quantized (stored in the message header); each field is a
    `tokenbound.configs.setting` whose help text is `tokenbound compress`'s."""

    levels: int = setting(11, "codebook size L (e.g. 11)")
    # L in 1..65535; every level is charged 16 bits (float16)
    method: str = setting("uniform", "quantization scheme (default uniform)")
    # a registered scheme (QUANTIZERS): 'uniform' (equal-width bins, mean centroids) or
    # 'kmeans' (1-D Lloyd)
    grouping: str = setting("model", "one codebook for the model, or one per tensor (default "
                                     "model)", cli={"choices": GROUPINGS})
    exclude: tuple[str, ...] = setting((), "keep trained tensors matching this fnmatch pattern "
                                           "raw (repeat)",
                                       cli={"action": "append", "metavar": "PATTERN"})
    # fnmatch patterns of trained tensor names kept raw at their width (e.g. '*norm*')
    kmeans_iters: int = setting(50, "maximum Lloyd iterations for 'kmeans'", cli=False)

    def __post_init__(self):
        object.__setattr__(self, "exclude", tuple(self.exclude))
        if not 1 <= int(self.levels) <= 65535:
            raise ConfigError("levels", "{levels} {v}: use an integer in 1..65535", v=self.levels)
        if self.method not in QUANTIZERS:
            raise ConfigError("method", "quantization method {v!r} unknown; use one of {known}",
                              v=self.method, known=sorted(QUANTIZERS))
        if self.grouping not in GROUPINGS:
            raise ConfigError("grouping", "{grouping} {v!r}: use 'model' or 'tensor'",
                              v=self.grouping)
        if self.kmeans_iters < 0:
            raise ConfigError("kmeans_iters", "kmeans_iters must be >= 0")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["exclude"] = list(self.exclude)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "QuantConfig":
        return cls(**{**d, "exclude": tuple(d.get("exclude", ()))})


@dataclass
class QuantGroup:
    """One codebook and the symbols of its member tensors (flattened, concatenated)."""

    names: tuple[str, ...]
    codebook: np.ndarray  # (L,) float16
    symbols: np.ndarray   # (n,) int64 in 0..L-1
    latent: np.ndarray | None = field(default=None, repr=False)  # (n,) float32, for QAT only

    @property
    def counts(self) -> np.ndarray:  # (L,) int64
        return np.bincount(self.symbols, minlength=len(self.codebook)).astype(np.int64)


@dataclass
class QuantizedState:
    """Result of `quantize_`: groups (codebook + symbols) and the names of raw tensors."""

    config: QuantConfig
    groups: list[QuantGroup]
    raw_names: tuple[str, ...]

    @property
    def quantized_parameters(self) -> int:
        return int(sum(len(g.symbols) for g in self.groups))


def nearest(values: np.ndarray, codebook: np.ndarray) -> np.ndarray:
    """Index of the nearest codebook entry for each value (ties -> the lower centroid)."""
    cb = np.asarray(codebook, dtype=np.float64)
    order = np.argsort(cb, kind="stable")
    mids = (cb[order][:-1] + cb[order][1:]) / 2  # (L-1,)
    return order[np.searchsorted(mids, values, side="left")].astype(np.int64)


def _to_fp16(cb: np.ndarray) -> np.ndarray:
    if not np.all(np.isfinite(cb)):
        raise UserError("a quantization centroid is not finite (diverged QAT or NaN weights); "
                        "lower the QAT learning rate or check the model")
    if np.any(np.abs(cb) > FP16_MAX):
        raise UserError("a quantization centroid exceeds the float16 range (65504); exclude that "
                        "tensor with QuantConfig.exclude / --exclude")
    return np.asarray(cb, dtype=np.float64).astype(np.float16)


@register_quantizer("uniform")
def uniform_quantizer(values: np.ndarray, cfg: QuantConfig):
    """Equal-width bins on [-m, m], m = max|v|; centroid = mean of the bin's members."""
    levels = cfg.levels
    m = float(np.max(np.abs(values))) if len(values) else 0.0
    edges = np.linspace(-m, m, levels + 1)  # (L+1,)
    sym = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, levels - 1)
    sums = np.bincount(sym, weights=values, minlength=levels)
    cnt = np.bincount(sym, minlength=levels)
    mids = (edges[:-1] + edges[1:]) / 2
    cb = np.where(cnt > 0, sums / np.maximum(cnt, 1), mids)
    return _to_fp16(cb), sym.astype(np.int64)


@register_quantizer("kmeans")
def kmeans_quantizer(values: np.ndarray, cfg: QuantConfig):
    """1-D Lloyd from quantile initialization; final symbols = nearest float16 centroid.

    Runs on the sorted values with prefix sums: a cluster is a contiguous run of sorted values
    between midpoints, so one iteration costs O(L log n) after an O(n log n) sort.
    """
    levels = cfg.levels
    if not len(values):
        return np.zeros(levels, np.float16), np.zeros(0, np.int64)
    v = np.sort(np.asarray(values, dtype=np.float64))  # (n,)
    prefix = np.concatenate([[0.0], np.cumsum(v)])  # (n+1,)
    cb = np.quantile(v, (np.arange(levels) + 0.5) / levels)  # (L,) ascending
    for _ in range(cfg.kmeans_iters):
        mids = (cb[:-1] + cb[1:]) / 2
        # same tie rule as `nearest`: a value equal to a midpoint joins the lower centroid
        cuts = np.concatenate([[0], np.searchsorted(v, mids, side="right"), [len(v)]])
        cnt = np.diff(cuts)
        sums = prefix[cuts[1:]] - prefix[cuts[:-1]]
        new = np.where(cnt > 0, sums / np.maximum(cnt, 1), cb)
        if np.array_equal(new, cb):
            break
        cb = new
    cb16 = _to_fp16(cb)
    return cb16, nearest(values, cb16)


def _select(state: dict, qcfg: QuantConfig, filter_fn) -> list[str]:
    names = []
    for name, t in state.items():
        if not torch.is_floating_point(t) or any(fnmatch.fnmatch(name, p) for p in qcfg.exclude):
            continue
        if filter_fn is None or filter_fn(name, t):
            names.append(name)
    return names


def dequantized(group: QuantGroup, state: dict) -> dict:
    """{name: tensor} of a group's members = codebook[symbols], reshaped, in their dtype."""
    values = group.codebook.astype(np.float32)[group.symbols]  # (n,)
    out, pos = {}, 0
    for name in group.names:
        ref = state[name]
        n = ref.numel()
        out[name] = torch.from_numpy(values[pos:pos + n].copy()).reshape(ref.shape).to(ref.dtype)
        pos += n
    return out


def quantize_(model, qcfg: QuantConfig, filter_fn=None) -> QuantizedState:
    """Quantize `model`'s charged tensors in place; returns the codebooks and symbols.

    `filter_fn(name, tensor) -> bool` (optional) keeps a tensor raw when it returns False.
    Afterwards every quantized weight equals `codebook[symbol]` exactly (float16 values).
    """
    builder = builder_for(model)
    state = {n: t.detach().cpu() for n, t in builder.trained_state(model).items()}
    names = _select(state, qcfg, filter_fn)
    parts = [names] if qcfg.grouping == "model" else [[n] for n in names]
    groups = []
    for members in parts if names else []:
        values = np.concatenate([state[n].double().reshape(-1).numpy() for n in members])
        codebook, symbols = QUANTIZERS[qcfg.method](values, qcfg)
        groups.append(QuantGroup(tuple(members), codebook, symbols, values.astype(np.float32)))
    new_state = dict(state)
    for g in groups:
        new_state.update(dequantized(g, state))
    builder.load_trained_state(model, new_state)
    raw = tuple(n for n in state if n not in set(names))
    log.info("quantized %d values in %d group(s) at %d levels; %d raw tensor(s)",
             sum(len(g.symbols) for g in groups), len(groups), qcfg.levels, len(raw))
    return QuantizedState(qcfg, groups, raw)
