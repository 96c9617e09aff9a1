"""`TrainConfig`: everything that determines a training run, checked on construction.

The defaults are the ones for the issue's target: the default small byte-level GPT trained for
2,000 steps on Shakespeare at batch 32, context 256, peak learning rate 2e-3 (linear warmup over
the first 5% of the steps, cosine decay to 10% of the peak), AdamW (0.9, 0.95), weight decay
0.1 on matrices only, gradient clipping at norm 1.0, bf16 autocast.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from tokenbound.errors import UserError

def _f(default: Any, help: str) -> Any:
    """A dataclass field with its help text (the per-field docstring)."""
    return field(default=default, metadata={"help": help})


@dataclass
class TrainConfig:
    """A training run; `train(cfg)` is deterministic given this and the data.

    Each field's help text (its docstring, starting with its CLI flag) is in
    `FIELD_DOCS`.
    """

    data: str = field(metadata={"help": (
        "--data: token-stream directory from `tokenbound prepare`; DATA/train is trained on "
        "when it exists (else DATA itself), DATA/heldout is evaluated when it exists")})
    out: str = field(metadata={"help": (
        "--out: run directory (config.json, model.safetensors, train.json, ckpt/)")})
    model: Any = field(metadata={"help": (
        "the model configuration (`tokenbound.models.GPTConfig`, from the model flags)")})
    steps: int = _f(2000, "--steps: optimizer steps")
    batch_size: int = _f(32, "--batch-size: sequences per global batch (split evenly across "
                             "DDP processes)")
    context_len: int | None = _f(None, "--seq-len: tokens per training sequence (default: the "
                                       "model's context_len)")
    lr: float = _f(2e-3, "--lr: peak learning rate")
    warmup_frac: float = _f(0.05, "--warmup: fraction of the steps with linear warmup to lr")
    min_lr_ratio: float = _f(0.1, "--min-lr-ratio: cosine decay ends at min_lr_ratio * lr on "
                                  "the last step")
    weight_decay: float = _f(0.1, "--weight-decay: AdamW decoupled decay, on tensors with >= 2 "
                                  "dims only")
    betas: tuple[float, float] = _f((0.9, 0.95), "--betas B1 B2: AdamW moment coefficients")
    grad_clip: float = _f(1.0, "--grad-clip: clip the global gradient norm (0 disables)")
    bf16: bool = _f(True, "--bf16/--no-bf16: bf16 autocast for forward/backward (about 2x "
                          "faster on CPU); weights, optimizer and log-softmax stay float32")
    eval_interval: int = _f(200, "--eval-interval: record train loss and estimate held-out "
                                 "loss every this many steps (0: only at the end)")
    eval_batches: int = _f(20, "--eval-batches: batches of fixed seeded windows per loss "
                               "estimate (0: no estimates)")
    ckpt_interval: int = _f(200, "--ckpt-interval: write RUN/ckpt every this many steps "
                                 "(0: never, so no resume)")
    seed: int = _f(0, "--data-seed: seed of the data order and dropout (the model's init "
                      "seed is the model flag --seed)")
    device: str = _f("auto", "--device: auto (cuda if available, else cpu), cpu, cuda, cuda:N")

    def __post_init__(self) -> None:
        self.betas = tuple(float(b) for b in self.betas)
        model_ctx = getattr(self.model, "context_len", None)
        if self.context_len is None:
            self.context_len = model_ctx
        if model_ctx is not None and isinstance(self.context_len, int):
            _check(self.context_len <= model_ctx, "--seq-len",
                   f"{self.context_len} exceeds the model's context_len {model_ctx}")
        _check(isinstance(self.data, str) and self.data, "--data", "give a token-stream directory")
        _check(isinstance(self.out, str) and self.out, "--out", "give a run directory")
        for name in ("steps", "batch_size", "context_len"):
            value = getattr(self, name)
            _check(isinstance(value, int) and value >= 1, _flag(name),
                   f"must be a positive integer, got {value!r}")
        for name in ("eval_interval", "eval_batches", "ckpt_interval", "seed"):
            value = getattr(self, name)
            _check(isinstance(value, int) and value >= 0, _flag(name),
                   f"must be a non-negative integer, got {value!r}")
        _check(math.isfinite(self.lr) and self.lr > 0, "--lr", f"must be > 0, got {self.lr}")
        _check(0.0 <= self.warmup_frac < 1.0, "--warmup",
               f"must be in [0, 1), got {self.warmup_frac}")
        _check(0.0 <= self.min_lr_ratio <= 1.0, "--min-lr-ratio",
               f"must be in [0, 1], got {self.min_lr_ratio}")
        _check(self.weight_decay >= 0.0, "--weight-decay",
               f"must be >= 0, got {self.weight_decay}")
        _check(len(self.betas) == 2 and all(0.0 <= b < 1.0 for b in self.betas), "--betas",
               f"must be two numbers in [0, 1), got {self.betas}")
        _check(self.grad_clip >= 0.0, "--grad-clip", f"must be >= 0, got {self.grad_clip}")
        _check(self.device == "auto" or self.device == "cpu" or self.device.startswith("cuda"),
               "--device", f"must be auto, cpu, cuda or cuda:N, got {self.device!r}")

    @property
    def warmup_steps(self) -> int:
        """Number of warmup steps, `round(warmup_frac * steps)`."""
        return int(round(self.warmup_frac * self.steps))

    def to_dict(self) -> dict:
        """JSON-ready dict; `model` becomes `model.to_dict()`."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["model"] = self.model.to_dict() if hasattr(self.model, "to_dict") else dict(self.model)
        d["betas"] = list(self.betas)
        return d


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate of optimizer step `step` (0-based): linear warmup, then cosine decay.

    Warmup (`step < w`, `w = cfg.warmup_steps`): `lr * (step + 1) / w`. Then with
    `t = (step - w) / max(1, steps - 1 - w)` in `[0, 1]`:
    `lr * (r + (1 - r) * (1 + cos(pi t)) / 2)`, `r = min_lr_ratio`, so the first step after
    warmup uses `lr` and the last step uses `r * lr`.
    """
    w = cfg.warmup_steps
    if step < w:
        return cfg.lr * (step + 1) / w
    t = min(1.0, (step - w) / max(1, cfg.steps - 1 - w))
    r = cfg.min_lr_ratio
    return cfg.lr * (r + (1.0 - r) * 0.5 * (1.0 + math.cos(math.pi * t)))


def _flag(name: str) -> str:
    """The CLI flag of a field: the start of its help text."""
    return FIELD_DOCS[name].split(":", 1)[0].split()[0]


def _check(ok: bool, flag: str, message: str) -> None:
    if not ok:
        raise UserError(f"{flag}: {message}")


FIELD_DOCS = {f.name: f.metadata.get("help", "") for f in dataclasses.fields(TrainConfig)}
"""Field name -> help text ("--flag: what it does")."""
