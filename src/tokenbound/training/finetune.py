"""Fine-tuning runs: `tokenbound train --base SOURCE` trains adapters on a frozen base.

The run directory, the loop, checkpoints, resume, seeding and DDP are those of training from
scratch (`loop.py`, `run.py`); only the model differs: `TrainConfig.model` is an
`AdapterConfig` (models/finetune.py) whose `base` is the identity of SOURCE
(`compression.delta.base_identity`: kind, path, sha256 of its files). The base is loaded, its
hash checked, and LoRA adapters (or SubLoRA coordinates) are attached by `build_finetuned`; a
resumed run or a later `compress` refuses a base whose files changed.

The training stream must have been tokenized with the base's own tokenizer: `check_stream` makes
`evaluate`'s check (`evaluation.tokenizer_check`): the same tokenizer file or vocabulary for an
HF/GGUF base (its tokenizer.json, the GGUF file), the same spec for a message or run.
"""

from __future__ import annotations

import logging

from tokenbound.errors import UserError

log = logging.getLogger(__name__)


def adapter_config(base: str, *, rank: int = 4, alpha: float = 8.0, targets=(),
                   subspace_dim: int | None = None, seed: int = 0, stream=None):
    """`AdapterConfig` for the base at path `base` (hashes its files; checks the targets by
    attaching the adapters once). With `stream`, its tokenizer is checked against the base's
    first (before a slow base is loaded, when the base's files name their tokenizer)."""
    from tokenbound.compression.delta import base_identity, open_base, using_base
    from tokenbound.models.finetune import AdapterConfig, attach_adapters

    ident = base_identity(base)
    cfg = AdapterConfig(base=ident, rank=rank, alpha=alpha, targets=tuple(targets or ()),
                        subspace_dim=subspace_dim, seed=seed)
    if stream is not None and ident.get("tokenizer"):
        check_stream(cfg, stream)
    with using_base(None):
        module, info = open_base(ident)
    if info.get("tokenizer") and not ident.get("tokenizer"):
        ident["tokenizer"] = info["tokenizer"]
        if stream is not None:
            check_stream(cfg, stream)
    cfg.context_len = info.get("context_len")
    attach_adapters(module, cfg)  # fails here, before anything is written, on bad targets
    return cfg


def check_stream(cfg, stream) -> None:
    """UserError unless `stream` was tokenized with the base's tokenizer (the check `evaluate`
    makes: the same tokenizer file or vocabulary for an HF/GGUF base, the spec otherwise)."""
    from types import SimpleNamespace

    from tokenbound.evaluation.tokenizer_check import check_tokenizer

    base = cfg.base
    spec = base.get("tokenizer")
    fix = f"prepare the data with --tokenizer {spec}"
    if not spec:
        raise UserError(f"--base {base['path']} records no tokenizer (an HF directory needs "
                        "its tokenizer.json); add it, so the data can be prepared with it")
    if not (getattr(stream, "meta", {}) or {}).get("tokenizer"):
        raise UserError(f"the data records no tokenizer, so it cannot be checked against the "
                        f"base's; {fix}")
    check_tokenizer(stream, SimpleNamespace(tokenizer=spec,
                                            tokenizer_sha256=base.get("tokenizer_sha256")))


def build_finetuned(cfg):
    """The `FinetunedModel` of `cfg` on the CPU (base loaded and its sha256 checked)."""
    from tokenbound.compression.delta import build_delta

    model, _ = build_delta(cfg.to_dict())
    return model


def is_adapter_config(d) -> bool:
    """True for the `model` entry of a fine-tuning run's config.json (it names a base)."""
    return isinstance(d, dict) and isinstance(d.get("base"), dict)
