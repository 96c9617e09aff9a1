"""`GPTConfig`: every choice that fixes a GPT hypothesis before training, plus its CLI flags.

A config together with the trained tensors (`model.trained_state()`) determines the model bit
for bit: everything else (frozen LoRA bases, the random-subspace origin and projection) is
regenerated from `seed` by `build_model(cfg)`. The config is part of the hypothesis (DESIGN.md
2.1): it is free in the code length only when fixed before seeing data.

Each field carries its help text in `field(metadata={"help": ...})`; `add_model_arguments`
turns the fields into `--kebab-case` flags with those texts, and `config_from_args` reads them
back (only flags actually given override the base config).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from tokenbound.errors import UserError

GROUPS = ("attn", "mlp", "head")
"""Layer groups whose linear maps can be parametrized separately (`GPTConfig.linear`)."""

LINEAR_KINDS = ("dense", "lora", "kronecker", "monarch")
"""Linear parametrizations: see `tokenbound.models.linear`."""

POSITION_KINDS = ("learned", "rope", "none")


def _f(default: Any, help: str, **kw: Any) -> Any:
    """A dataclass field with its help text (the per-field docstring)."""
    if isinstance(default, dict):
        return field(default_factory=lambda: dict(default), metadata={"help": help}, **kw)
    return field(default=default, metadata={"help": help}, **kw)


@dataclass
class GPTConfig:
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
                                  "(rotary, relative) or none")
    max_context: int | None = _f(None, "each layer attends only to the last k tokens (banded "
                                       "causal mask); the logits then depend on the last "
                                       "n_layer*(k-1)+1 tokens (and, with learned positions, "
                                       "on the position id)")
    dropout: float = _f(0.0, "dropout probability during training (attention and residual)")
    linear: dict = _f({"attn": "dense", "mlp": "dense", "head": "dense"},
                      "parametrization per layer group, e.g. attn=monarch,mlp=lora,head=dense; "
                      "kinds: dense, lora, kronecker, monarch; head applies only when the "
                      "head is untied")
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
            raise UserError(f"d_model={self.d_model} is not divisible by n_head={self.n_head};"
                            f" choose --n-head dividing --d-model")
        if self.position not in POSITION_KINDS:
            raise UserError(f"position={self.position!r} is unknown; use one of "
                            f"{', '.join(POSITION_KINDS)}")
        if self.position == "rope" and self.head_dim % 2:
            raise UserError(f"position=rope needs an even head size, got d_model/n_head="
                            f"{self.head_dim}; change --d-model or --n-head")
        if not self.init_std >= 0.0:
            raise UserError(f"init_std={self.init_std} must be >= 0")
        if not 0.0 <= self.dropout < 1.0:
            raise UserError(f"dropout={self.dropout} must lie in [0, 1)")
        if self.tie_embeddings and self.linear["head"] != "dense":
            raise UserError(f"linear head={self.linear['head']} needs an untied head; pass "
                            f"--no-tie-embeddings or use head=dense")
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
        raise UserError(f"linear must be a dict group -> kind, got {linear!r}")
    bad = sorted(set(linear) - set(GROUPS))
    if bad:
        raise UserError(f"linear has unknown group(s) {bad}; groups are {', '.join(GROUPS)}")
    out = {g: str(linear.get(g, "dense")) for g in GROUPS}
    for g, kind in out.items():
        if kind not in LINEAR_KINDS:
            raise UserError(f"linear {g}={kind!r} is unknown; use one of "
                            f"{', '.join(LINEAR_KINDS)}")
    return out


def parse_linear(text: str) -> dict:
    """`"attn=monarch,mlp=lora"` -> `{"attn": "monarch", "mlp": "lora"}`."""
    out = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        if "=" not in item:
            raise UserError(f"--linear item {item!r} must look like group=kind, "
                            f"e.g. attn=monarch")
        g, kind = (s.strip() for s in item.split("=", 1))
        out[g] = kind
    return out


def _check_ints(cfg: GPTConfig) -> None:
    for name in ("vocab_size", "context_len", "n_layer", "n_head", "d_model", "mlp_ratio",
                 "lora_rank", "monarch_blocks"):
        value = getattr(cfg, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UserError(f"{name}={value!r} must be a positive integer")
    for name in ("max_context", "subspace_dim"):
        value = getattr(cfg, name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < 1):
            raise UserError(f"{name}={value!r} must be a positive integer (or unset)")


def _check_monarch(cfg: GPTConfig) -> None:
    nb, d, h = cfg.monarch_blocks, cfg.d_model, cfg.mlp_ratio * cfg.d_model
    dims = {"attn": (d,), "mlp": (d, h), "head": (d, cfg.vocab_size)}
    for g, kind in cfg.linear.items():
        for n in dims[g] if kind == "monarch" else ():
            if n % nb:
                raise UserError(f"monarch_blocks={nb} does not divide width {n} of the {g} "
                                f"layers; choose --monarch-blocks dividing it")


# ---------------------------------------------------------------- argparse helpers

_ARCH_HELP = ("shorthand for --linear: parametrize attn and mlp (and an untied head) with "
              "this kind: " + ", ".join(LINEAR_KINDS))


def add_model_arguments(parser: argparse.ArgumentParser,
                        defaults: dict[str, str] | None = None) -> None:
    """Add one `--field-name` flag per `GPTConfig` field (help from the field docs) + `--arch`.

    Flags default to `None` (= not given) so that `config_from_args` can override a base config
    with only what the user wrote. `defaults`: field -> the default in words, for fields whose
    default the command takes from elsewhere (train: vocab_size from the data).
    """
    group = parser.add_argument_group("model")
    group.add_argument("--arch", choices=LINEAR_KINDS, default=None, help=_ARCH_HELP)
    for f in dataclasses.fields(GPTConfig):
        flag = "--" + f.name.replace("_", "-")
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        shown = (defaults or {}).get(f.name, _show(default))
        helptext = f"{f.metadata['help']} (default: {shown})"
        if isinstance(default, bool):
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=None,
                               help=helptext)
        elif f.name == "linear":
            group.add_argument(flag, type=parse_linear, default=None, metavar="G=KIND,...",
                               help=helptext)
        else:
            typ = str if isinstance(default, str) else float if isinstance(default, float) else int
            choices = POSITION_KINDS if f.name == "position" else None
            group.add_argument(flag, type=typ, default=None, choices=choices, help=helptext)


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items())
    return "unset" if value is None else str(value)


def config_from_args(args: argparse.Namespace, base: GPTConfig | None = None) -> GPTConfig:
    """The config of `base` (default `GPTConfig()`) with every flag the user gave applied.

    `--arch K` sets attn and mlp to K, and the head too when `--no-tie-embeddings`; an explicit
    `--linear` is applied after it.
    """
    d = (base or GPTConfig()).to_dict()
    for f in dataclasses.fields(GPTConfig):
        value = getattr(args, f.name, None)
        if value is not None and f.name != "linear":
            d[f.name] = value
    arch = getattr(args, "arch", None)
    if arch is not None:
        d["linear"] = {"attn": arch, "mlp": arch,
                       "head": "dense" if d["tie_embeddings"] else arch}
    if getattr(args, "linear", None) is not None:
        d["linear"] = {**d["linear"], **args.linear}
    return GPTConfig.from_dict(d)


def near_square_factors(n: int) -> tuple[int, int]:
    """`(a, b)` with `a * b == n`, `a <= b` and `a` the largest divisor of `n` <= sqrt(n)."""
    a = math.isqrt(n)
    while n % a:
        a -= 1
    return a, n // a
