"""`TrainConfig`: everything that determines a training run, checked on construction.

The defaults are the ones for the issue's target: the default small byte-level GPT trained for
2,000 steps on Shakespeare at batch 32, context 256, peak learning rate 2e-3 (linear warmup over
the first 5% of the steps, cosine decay to 10% of the peak), AdamW (0.9, 0.95), weight decay
0.1 on matrices only, gradient clipping at norm 1.0, bf16 autocast.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from tokenbound.configs import Config, ConfigError, setting


@dataclass
class TrainConfig(Config):
    """A training run; `train(cfg)` is deterministic given this and the data.

    Each field is a `tokenbound.configs.setting` with its help text (and its CLI flag when that
    is not `--field-name`); `tokenbound train`'s flags and the recipe's `train:` keys come from
    these.
    """

    data: str = setting(help=(
        "token-stream directory from `tokenbound prepare`; DATA/train is trained on "
        "when it exists (else DATA itself), DATA/heldout is evaluated when it exists"),
        cli={"metavar": "DIR", "required": True})
    out: str = setting(help="run directory (config.json, model.safetensors, train.json, ckpt/)",
                       cli={"metavar": "RUN", "required": True})
    model: Any = setting(help="the model configuration (`tokenbound.models.GPTConfig`, from the "
                              "model flags)", cli=False)
    steps: int = setting(2000, "optimizer steps")
    batch_size: int = setting(32, "sequences per global batch (split evenly across DDP "
                                  "processes)")
    context_len: int | None = setting(None, "tokens per training sequence (default: the model's "
                                            "context_len)", flag="--seq-len",
                                      cli={"metavar": "L"}, show_default=False)
    lr: float = setting(2e-3, "peak learning rate")
    warmup_frac: float = setting(0.05, "fraction of the steps with linear warmup to lr",
                                 flag="--warmup")
    min_lr_ratio: float = setting(0.1, "cosine decay ends at min_lr_ratio * lr on the last step")
    weight_decay: float = setting(0.1, "AdamW decoupled decay, on tensors with >= 2 dims only")
    betas: tuple[float, float] = setting((0.9, 0.95), "AdamW moment coefficients",
                                         cli={"metavar": ("B1", "B2")})
    grad_clip: float = setting(1.0, "clip the global gradient norm (0 disables)")
    bf16: bool = setting(True, "bf16 autocast for forward/backward (about 2x faster on CPU); "
                               "weights, optimizer and log-softmax stay float32",
                         show_default=False)
    eval_interval: int = setting(200, "record train loss and estimate held-out loss every this "
                                      "many steps (0: only at the end)")
    eval_batches: int = setting(20, "batches of fixed seeded windows per loss estimate (0: no "
                                    "estimates)")
    ckpt_interval: int = setting(200, "write RUN/ckpt every this many steps (0: never, so no "
                                      "resume)")
    seed: int = setting(0, "seed of the data order and dropout (the model's init seed is the "
                           "model flag --seed)", flag="--data-seed", show_default=False)
    device: str = setting("auto", "auto (cuda if available, else cpu), cpu, cuda, cuda:N",
                          show_default=False)

    def __post_init__(self) -> None:
        self.betas = tuple(float(b) for b in self.betas)
        model_ctx = getattr(self.model, "context_len", None)
        if self.context_len is None:
            self.context_len = model_ctx
        if model_ctx is not None and isinstance(self.context_len, int):
            _check(self.context_len <= model_ctx, "context_len",
                   "{v} exceeds the model's context_len {ctx}", v=self.context_len, ctx=model_ctx)
        _check(isinstance(self.data, str) and self.data, "data", "give a token-stream directory")
        _check(isinstance(self.out, str) and self.out, "out", "give a run directory")
        for name in ("steps", "batch_size", "context_len"):
            value = getattr(self, name)
            _check(isinstance(value, int) and value >= 1, name,
                   "must be a positive integer, got {v!r}", v=value)
        for name in ("eval_interval", "eval_batches", "ckpt_interval", "seed"):
            value = getattr(self, name)
            _check(isinstance(value, int) and value >= 0, name,
                   "must be a non-negative integer, got {v!r}", v=value)
        _check(math.isfinite(self.lr) and self.lr > 0, "lr", "must be > 0, got {v}", v=self.lr)
        _check(0.0 <= self.warmup_frac < 1.0, "warmup_frac", "must be in [0, 1), got {v}",
               v=self.warmup_frac)
        _check(0.0 <= self.min_lr_ratio <= 1.0, "min_lr_ratio", "must be in [0, 1], got {v}",
               v=self.min_lr_ratio)
        _check(self.weight_decay >= 0.0, "weight_decay", "must be >= 0, got {v}",
               v=self.weight_decay)
        _check(len(self.betas) == 2 and all(0.0 <= b < 1.0 for b in self.betas), "betas",
               "must be two numbers in [0, 1), got {v}", v=self.betas)
        _check(self.grad_clip >= 0.0, "grad_clip", "must be >= 0, got {v}", v=self.grad_clip)
        _check(self.device == "auto" or self.device == "cpu" or self.device.startswith("cuda"),
               "device", "must be auto, cpu, cuda or cuda:N, got {v!r}", v=self.device)

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


def _check(ok: bool, name: str, message: str, **values: Any) -> None:
    """ConfigError naming field `name` ("{name} " + message) unless `ok`."""
    if not ok:
        raise ConfigError(name, "{" + name + "} " + message, **values)
