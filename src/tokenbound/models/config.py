"""`GPTConfig`: every choice that fixes a GPT hypothesis before training.

A config together with the trained tensors (`model.trained_state()`) determines the model bit
for bit: everything else (frozen LoRA bases, the random-subspace origin and projection) is
regenerated from `seed` by `build_model(cfg)`. The config is part of the hypothesis (docs/METHOD.md
2.1): it is free in the code length only when fixed before seeing data.

Each field is a `tokenbound.configs.setting` with its help text; the `--kebab-case` CLI flags
(`tokenbound.commands.flags`) and the recipe's `model:` keys are generated from them, and a bad
value raises `ConfigError` naming the field.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from tokenbound.configs import Config, ConfigError
from tokenbound.configs import setting as _f
from tokenbound.errors import UserError

GROUPS = ("attn", "mlp", "head")
"""Layer groups whose linear maps can be parametrized separately (`GPTConfig.linear`)."""

LINEAR_KINDS = ("dense", "lora", "kronecker", "monarch")
"""Linear parametrizations: see `tokenbound.models.linear`."""

POSITION_KINDS = ("learned", "rope", "none")


def parse_linear(text: str) -> dict:
    """`"attn=monarch,mlp=lora"` -> `{"attn": "monarch", "mlp": "lora"}`."""
    out = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        if "=" not in item:
            raise ConfigError("linear", "{linear} item {item!r} must look like group=kind, "
                              "e.g. attn=monarch", item=item)
        g, kind = (s.strip() for s in item.split("=", 1))
        out[g] = kind
    return out


@dataclass
class GPTConfig(Config):
    """Shape, parametrization and seed of a pre-LN GPT (nanoGPT layout); see `gpt.py`."""

    vocab_size: int = _f(256, "vocabulary size V; logits have shape (B, T, V)")
    context_len: int = _f(256, "maximum sequence length T the model accepts (size of the "
                               "learned position table)")
    n_layer: int = _f(4, "number of transformer blocks")
    n_head: int = _f(4, "attention heads per block; must divide d_model")
    d_model: int = _f(128, "residual stream width")
    mlp_ratio: int = _f(4, "MLP hidden width = mlp_ratio * d_model")
    bias: bool = _f(False, "add biases to linear maps (and to LayerNorm when norm_affine)")
    norm_affine: bool = _f(False, "LayerNorm with a learned scale (off: the norms have no "
                                  "parameters, so nothing in them needs quantizing)")
    tie_embeddings: bool = _f(True, "output head shares the token-embedding matrix")
    position: str = _f("learned", "position encoding: learned (absolute table), rope "
                                  "(rotary, relative) or none", cli={"choices": POSITION_KINDS})
    max_context: int | None = _f(None, "each layer attends only to the last k tokens (banded "
                                       "causal mask); the logits then depend on the last "
                                       "n_layer*(k-1)+1 tokens (and, with learned positions, "
                                       "on the position id)")
    dropout: float = _f(0.0, "dropout probability during training (attention and residual)")
    linear: dict = _f({"attn": "dense", "mlp": "dense", "head": "dense"},
                      "parametrization per layer group, e.g. attn=monarch,mlp=lora,head=dense; "
                      "kinds: dense, lora, kronecker, monarch; head applies only when the "
                      "head is untied", cli={"type": parse_linear,
                                             "metavar": "G=KIND,..."})
    lora_rank: int = _f(4, "rank r of LoRA updates W0 + B A")
    monarch_blocks: int = _f(4, "number of diagonal blocks of each Monarch factor; must "
                                "divide the input and output widths of those layers")
    subspace_dim: int | None = _f(None, "train only w in theta = theta0 + P w with this "
                                        "dimension d (random subspace; over LoRA = SubLoRA)")
    subspace_orthonormal: bool = _f(False, "QR-orthonormalize the two Kronecker factors of P "
                                           "(off: scaled Gaussians; see subspace.py)")
    subspace_per_tensor: bool = _f(False, "scale each tensor's slice of P w to its init "
                                          "scale (see subspace.py)")
    init_std: float = _f(0.02, "std of the normal init of dense weights and embeddings")
    seed: int = _f(0, "seed of every random tensor of the model (init, frozen bases, P)")

    def __post_init__(self) -> None:
        self.linear = _normalize_linear(self.linear)
        _check_ints(self)
        if self.d_model % self.n_head:
            raise ConfigError("d_model", "d_model={d} is not divisible by n_head={h}; choose "
                              "{n_head} dividing {d_model}", d=self.d_model, h=self.n_head)
        if self.position not in POSITION_KINDS:
            raise ConfigError("position", "position={p!r} is unknown; use one of {kinds}",
                              p=self.position, kinds=", ".join(POSITION_KINDS))
        if self.position == "rope" and self.head_dim % 2:
            raise ConfigError("position", "position=rope needs an even head size, got "
                              "d_model/n_head={hd}; change {d_model} or {n_head}", hd=self.head_dim)
        if not self.init_std >= 0.0:
            raise ConfigError("init_std", "init_std={v} must be >= 0", v=self.init_std)
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError("dropout", "dropout={v} must lie in [0, 1)", v=self.dropout)
        if self.tie_embeddings and self.linear["head"] != "dense":
            raise ConfigError("linear", "linear head={k} needs an untied head; pass "
                              "{tie_embeddings:false} or use head=dense", k=self.linear["head"])
        if "monarch" in self.linear.values():
            _check_monarch(self)

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head

    def to_dict(self) -> dict:
        """JSON-serializable dict; `GPTConfig.from_dict(cfg.to_dict()) == cfg`."""
        d = dataclasses.asdict(self)
        d["linear"] = dict(self.linear)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "GPTConfig":
        """Inverse of `to_dict`; unknown keys raise `UserError` (a typo must not pass)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise UserError(f"unknown model config field(s) {unknown}; known: {sorted(names)}")
        return cls(**d)

    def replace(self, **changes: Any) -> "GPTConfig":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


def _normalize_linear(linear: Any) -> dict:
    if isinstance(linear, str):  # "attn=monarch,mlp=dense"
        linear = parse_linear(linear)
    if not isinstance(linear, dict):
        raise ConfigError("linear", "linear must be a dict group -> kind, got {v!r}", v=linear)
    bad = sorted(set(linear) - set(GROUPS))
    if bad:
        raise ConfigError("linear", "linear has unknown group(s) {bad}; groups are {groups}",
                          bad=bad, groups=", ".join(GROUPS))
    out = {g: str(linear.get(g, "dense")) for g in GROUPS}
    for g, kind in out.items():
        if kind not in LINEAR_KINDS:
            raise ConfigError("linear", "linear {g}={kind!r} is unknown; use one of {kinds}",
                              g=g, kind=kind, kinds=", ".join(LINEAR_KINDS))
    return out


def _check_ints(cfg: GPTConfig) -> None:
    for name in ("vocab_size", "context_len", "n_layer", "n_head", "d_model", "mlp_ratio",
                 "lora_rank", "monarch_blocks"):
        value = getattr(cfg, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(name, "{s} must be a positive integer", s=f"{name}={value!r}")
    for name in ("max_context", "subspace_dim"):
        value = getattr(cfg, name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < 1):
            raise ConfigError(name, "{s} must be a positive integer (or unset)",
                              s=f"{name}={value!r}")


def _check_monarch(cfg: GPTConfig) -> None:
    nb, d, h = cfg.monarch_blocks, cfg.d_model, cfg.mlp_ratio * cfg.d_model
    dims = {"attn": (d,), "mlp": (d, h), "head": (d, cfg.vocab_size)}
    for g, kind in cfg.linear.items():
        for n in dims[g] if kind == "monarch" else ():
            if n % nb:
                raise ConfigError("monarch_blocks", "monarch_blocks={nb} does not divide width "
                                  "{n} of the {g} layers; choose {monarch_blocks} dividing it",
                                  nb=nb, n=n, g=g)


def near_square_factors(n: int) -> tuple[int, int]:
    """`(a, b)` with `a * b == n`, `a <= b` and `a` the largest divisor of `n` <= sqrt(n)."""
    a = math.isqrt(n)
    while n % a:
        a -= 1
    return a, n // a
