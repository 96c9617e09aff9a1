"""A frozen base causal LM plus trained LoRA adapters: the hypothesis `h = B + delta` of METHOD 2.9.

The base `B` (a Hugging Face causal LM, or a tokenbound `GPT`) is fixed before the bounded tokens
are seen and is part of the decoder; only `delta` is charged. `delta` is

- LoRA adapters (Hu et al. 2021) injected by PEFT (`peft.inject_adapter_in_model`) into the
  linear maps named by `AdapterConfig.targets`: `W = W0 + (alpha / r) B A`, `A` (r, in) seeded
  random init, `B` (out, r) zero init; trained `r (in + out)` per target; or
- SubLoRA (Lotfi et al., ICML 2024) when `subspace_dim = d` is set: the LoRA tensors are
  `theta = theta0 + P w`, `theta0` their seeded init and `P` the seeded Kronecker projection of
  `models.subspace` (`KroneckerProjection`, `||P w|| ~ ||w||`); only `w` (d,) is trained.

Everything that is not trained (the base, `theta0`, `P`) is regenerated bit for bit from the
base files and `AdapterConfig.seed`, so `trained_state()` plus the config is the whole model.

Packed training rows (`training.batches`) carry `doc_ids`; a Hugging Face base gets position
ids that restart at every document boundary, from which transformers builds a block-diagonal
causal mask (no attention across documents), as the tokenbound GPT does with `doc_ids`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.func import functional_call

from tokenbound.errors import UserError
from tokenbound.models.gpt import TrainedStateMixin, derived_seed, positions_and_segments
from tokenbound.models.subspace import KroneckerProjection

GPT_TARGETS = ("attn.qkv", "mlp.fc")
"""Default LoRA targets of a tokenbound GPT base (module name suffixes)."""


@dataclass
class AdapterConfig:
    """Adapters on a base model; with the base's files, this and the trained tensors fix `h`."""

    base: dict = field(metadata={"help": "the base's identity: kind (hf, gguf, message, run), "
                                         "path, sha256 of its files, bytes, tokenizer"})
    rank: int = field(default=4, metadata={"help": "--lora-rank: LoRA rank r"})
    alpha: float = field(default=8.0, metadata={"help": "--lora-alpha: LoRA scale alpha "
                                                         "(the update is alpha / r * B A)"})
    targets: tuple = field(default=(), metadata={"help": (
        "--lora-targets: names (suffixes) of the linear maps that get adapters; empty: PEFT's "
        "default for the base's model_type (q_proj, v_proj for Llama), attn.qkv and mlp.fc "
        "for a tokenbound GPT")})
    subspace_dim: int | None = field(default=None, metadata={"help": (
        "--subspace-dim: train only d coordinates of a seeded random subspace of the LoRA "
        "tensors (SubLoRA); none: train the LoRA tensors themselves")})
    seed: int = field(default=0, metadata={"help": "--seed: seed of the LoRA init and the "
                                                   "subspace projection"})
    context_len: int | None = field(default=None, metadata={"help": (
        "longest input the base accepts (from its config)")})

    def __post_init__(self) -> None:
        self.targets = tuple(self.targets or ())
        if not isinstance(self.base, dict) or not self.base.get("sha256"):
            raise UserError("adapters need a base identity (kind, path, sha256); give --base")
        if not (isinstance(self.rank, int) and self.rank >= 1):
            raise UserError(f"--lora-rank must be a positive integer, got {self.rank!r}")
        if not self.alpha > 0:
            raise UserError(f"--lora-alpha must be > 0, got {self.alpha!r}")
        if self.subspace_dim is not None and not (isinstance(self.subspace_dim, int)
                                                  and self.subspace_dim >= 1):
            raise UserError(f"--subspace-dim must be a positive integer, got "
                            f"{self.subspace_dim!r}")

    vocab_size = None  # the base's; the stream is checked against its tokenizer instead

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["targets"] = list(self.targets)
        return d

    @staticmethod
    def from_dict(d: dict) -> "AdapterConfig":
        names = {f.name for f in dataclasses.fields(AdapterConfig)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown adapter config keys {unknown}")
        return AdapterConfig(**d)

    def replace(self, **kw) -> "AdapterConfig":
        return dataclasses.replace(self, **kw)


def is_hf_model(module: nn.Module) -> bool:
    """True for a transformers `PreTrainedModel` (without importing transformers)."""
    return any(c.__module__.startswith("transformers.") and c.__name__ == "PreTrainedModel"
               for c in type(module).__mro__)


def default_targets(base: nn.Module) -> tuple[str, ...]:
    """PEFT's default LoRA targets for a transformers base, `GPT_TARGETS` for ours."""
    if not is_hf_model(base):
        return GPT_TARGETS
    from peft.utils import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as MAP

    targets = MAP.get(getattr(base.config, "model_type", None))
    if not targets:
        raise UserError(f"no default LoRA targets for model_type "
                        f"{getattr(base.config, 'model_type', None)!r}; name them with "
                        "--lora-targets (e.g. q_proj v_proj)")
    return tuple(targets)


class FinetunedModel(TrainedStateMixin, nn.Module):
    """`base` (frozen) with LoRA adapters; `forward(idx, doc_ids=None)` -> logits (B, T, V).

    `trained_state()` holds the LoRA tensors (or `subspace.w` for SubLoRA): exactly what the
    message codes. Build with `attach_adapters`.
    """

    def __init__(self, base: nn.Module, cfg: AdapterConfig):
        super().__init__()
        self.cfg = cfg
        self.hf = is_hf_model(base)
        for p in base.parameters():
            p.requires_grad_(False)  # B: frozen, part of the decoder
        self.net = _inject(base, cfg)
        self.subspace = None
        if cfg.subspace_dim:
            self._setup_subspace(cfg)

    def _setup_subspace(self, cfg: AdapterConfig) -> None:
        named = [(n, p) for n, p in self.net.named_parameters() if p.requires_grad]
        self._names = [n for n, _ in named]
        self._sizes = [p.numel() for _, p in named]
        D = sum(self._sizes)
        check_subspace_dim(cfg.subspace_dim, D)
        for _, p in named:
            p.requires_grad_(False)  # theta0: regenerated from the seed
        self.subspace = KroneckerProjection(D, cfg.subspace_dim,
                                            derived_seed(cfg.seed, "lora-subspace"))

    def _lora_params(self) -> dict[str, torch.Tensor]:
        """`{name: theta0_t + (P w)_t}` for every LoRA tensor (SubLoRA only)."""
        params = dict(self.net.named_parameters())
        delta = self.subspace()  # (D,)
        return {n: params[n] + chunk.view(params[n].shape).to(params[n].dtype)
                for n, chunk in zip(self._names, delta.split(self._sizes))}

    def forward(self, idx: torch.Tensor, doc_ids: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T) int64 [, doc_ids (B, T)] -> logits (B, T, V)."""
        if self.hf:
            kwargs = {"input_ids": idx, "use_cache": False}
            if doc_ids is not None:
                kwargs["position_ids"] = positions_and_segments(doc_ids)[0]  # (B, T)
            args = ()
        else:
            args, kwargs = (idx,), {"doc_ids": doc_ids}
        if self.subspace is None:
            out = self.net(*args, **kwargs)
        else:
            out = functional_call(self.net, self._lora_params(), args, kwargs, strict=False)
        return out if isinstance(out, torch.Tensor) else out.logits  # (B, T, V)


def _inject(base: nn.Module, cfg: AdapterConfig) -> nn.Module:
    """PEFT LoRA adapters into `base` (in place), initialized from `cfg.seed`."""
    from peft import LoraConfig, inject_adapter_in_model

    targets = list(cfg.targets or default_targets(base))
    lcfg = LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, lora_dropout=0.0, bias="none",
                      target_modules=targets)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derived_seed(cfg.seed, "lora-init"))
        try:
            net = inject_adapter_in_model(lcfg, base)
        except ValueError as exc:  # no module matches, or one that PEFT cannot adapt
            why = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
            linear = sorted({n.rsplit(".", 1)[-1] for n, m in base.named_modules()
                             if isinstance(m, nn.Linear)})
            raise UserError(f"--lora-targets {' '.join(targets)}: {why}; the base's linear "
                            f"maps are named {', '.join(linear[:12]) or 'nothing'}") from None
    if not any(p.requires_grad for p in net.parameters()):
        raise UserError(f"--lora-targets {' '.join(targets)} matched no linear map of the base")
    return net


def check_subspace_dim(d: int, D: int, name: str = "--subspace-dim") -> None:
    """UserError unless a SubLoRA subspace of d dimensions fits the D LoRA entries."""
    if d > D:
        raise UserError(f"{name} {d} exceeds the {D:,} LoRA parameters it would "
                        f"reparametrize; choose <= {D}")


def lora_size(base: nn.Module, rank: int, targets=()) -> int:
    """D: the entries of the LoRA tensors `attach_adapters` gives `base` (what a SubLoRA
    subspace reparametrizes). `base` may live on the meta device (nothing is allocated)."""
    net = _inject(base, AdapterConfig(base={"sha256": "-"}, rank=rank, targets=targets))
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


def attach_adapters(base: nn.Module, cfg: AdapterConfig) -> FinetunedModel:
    """`FinetunedModel(base, cfg)` in eval mode (deterministic given `cfg` and the base)."""
    model = FinetunedModel(base, cfg)  # loaders give float32 on the CPU
    model.eval()
    return model
