"""Delta messages: a base model named by its identity, plus the coded adapters (METHOD 2.9).

A fine-tuned model `h = B + delta` is written as a message of builder ``"delta"`` whose header
config is `{"adapter": AdapterConfig.to_dict()}`; `adapter.base` is the base's identity:

    kind     "hf" (a Hugging Face causal-LM directory), "gguf" (a .gguf file), "message" (a
             tokenbound message), or "run" (a finished `tokenbound train` run)
    path     where the base was found when the message was written (absolute)
    sha256   of its files (hf: every file of the directory, `dir_sha256`; gguf/message: the
             file; run: the model config and model.safetensors)
    bytes    size of those files
    tokenizer, tokenizer_sha256   the base's tokenizer (spec and file hash) when known

`tokenbound.sources` computes the identity and loads the base (`base_identity`,
`load_base_module`). The base is part of the decoder and is not charged: only the adapters are coded (quantized and
entropy-coded as any trained tensors), so `C = 8 * len(message)` is `L(h | B)`. Decoding loads the
base from the recorded path, or from the path given to `using_base` (the `--base` flag), checks
its sha256 and refuses another base with an error naming both hashes.
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import os
import sys

import torch

from tokenbound.compression.adapters import Builder, register_builder
from tokenbound.compression.wire import MessageError

BASE_KINDS = ("hf", "gguf", "message", "run")
_LOADED: dict = {}  # (kind, sha256) -> (pristine base module, info): the last base loaded
_OVERRIDE: contextvars.ContextVar[str | None] = contextvars.ContextVar("tb_base", default=None)


class BaseMismatch(MessageError):
    """The base needed to decode a delta message is missing or is another model."""


@contextlib.contextmanager
def using_base(path: str | None):
    """Decode delta messages inside this block with the base at `path` (None: the recorded one)."""
    token = _OVERRIDE.set(str(path) if path else None)
    try:
        yield
    finally:
        _OVERRIDE.reset(token)


def _sources():
    """`tokenbound.sources`, the home of every loader (it sits above compression: imported at
    call time, because only it can load the base a delta message names)."""
    from tokenbound import sources

    return sources


def base_identity(source: str) -> dict:
    """See `tokenbound.sources.base_identity`."""
    return _sources().base_identity(source)


def open_base(ident: dict) -> tuple[torch.nn.Module, dict]:
    """Load the base of a delta message: from `using_base`'s path when set, else the recorded
    one; raises `BaseMismatch` (naming both hashes) when its files are another model."""
    override = _OVERRIDE.get()
    path = override or ident.get("path")
    if ident.get("kind") not in BASE_KINDS or not isinstance(path, str):
        raise MessageError("message header: the base identity lacks kind/path")
    if not os.path.exists(path):
        raise BaseMismatch(f"the base {path} of this fine-tuned model is missing; pass its "
                           f"location with --base PATH (sha256 {ident.get('sha256')})")
    found = _sources().base_identity(path)
    if found["kind"] != ident["kind"] or found["sha256"] != ident.get("sha256"):
        raise BaseMismatch(f"the base {path} has sha256 {found['sha256']} ({found['kind']}), "
                           f"but this model was fine-tuned from sha256 {ident.get('sha256')} "
                           f"({ident['kind']}); pass the original base with --base PATH")
    key = (ident["kind"], found["sha256"])
    if key not in _LOADED:  # one load per process (a GGUF base takes a while to dequantize)
        _LOADED.clear()
        _LOADED[key] = _sources().load_base_module({**ident, "path": path})
    module, info = _LOADED[key]
    return copy.deepcopy(module), dict(info)  # adapters are injected into the copy in place


def build_delta(adapter: dict):
    """`(FinetunedModel, AdapterConfig)` from a header's adapter dict (loads the base)."""
    from tokenbound.models.finetune import AdapterConfig, attach_adapters

    cfg = AdapterConfig.from_dict(dict(adapter))
    base, _ = open_base(cfg.base)
    return attach_adapters(base, cfg), cfg


def prior_of(info: dict) -> dict | None:
    """The base identity of a decoded delta message (`decode(...)[2]`), else None."""
    header = info.get("header", {})
    if header.get("builder") != "delta":
        return None
    return dict(header["config"]["adapter"]["base"])


def _owns(model) -> bool:
    from tokenbound.models.finetune import FinetunedModel

    return isinstance(model, FinetunedModel)


def _build(d: dict):
    if not isinstance(d, dict) or not isinstance(d.get("adapter"), dict):
        raise MessageError("message header: a delta model needs an adapter config")
    return build_delta(d["adapter"])


register_builder(Builder(
    name="delta",
    owns=lambda m: "tokenbound.models.finetune" in sys.modules and _owns(m),
    describe=lambda model, cfg: {"adapter": model.cfg.to_dict()},
    build=_build,
    trained_state=lambda m: m.trained_state(),
    load_trained_state=lambda m, d: m.load_trained_state(d),
))
