"""Delta messages: a base model named by its identity, plus the coded adapters (DESIGN 2.9).

A fine-tuned model `h = B + delta` is written as a message of builder ``"delta"`` whose header
config is `{"adapter": AdapterConfig.to_dict()}`; `adapter.base` is the base's identity:

    kind     "hf" (a Hugging Face causal-LM directory), "gguf" (a .gguf file), "message" (a
             tokenbound message), or "run" (a finished `tokenbound train` run)
    path     where the base was found when the message was written (absolute)
    sha256   of its files (hf: every file of the directory, `dir_sha256`; gguf/message: the
             file; run: the model config and model.safetensors)
    bytes    size of those files
    tokenizer, tokenizer_sha256   the base's tokenizer (spec and file hash) when known

The base is part of the decoder and is not charged: only the adapters are coded (quantized and
entropy-coded as any trained tensors), so `C = 8 * len(message)` is `L(h | B)`. Decoding loads the
base from the recorded path, or from the path given to `using_base` (the `--base` flag), checks
its sha256 and refuses another base with an error naming both hashes.
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import json
import os
import sys
from pathlib import Path

import torch

from tokenbound.compression.adapters import Builder, register_builder
from tokenbound.compression.wire import MessageError
from tokenbound.errors import UserError

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


def _hashes():
    from tokenbound.evaluation.sources import dir_sha256, file_sha256  # one home for hashing

    return dir_sha256, file_sha256


def base_kind(source: str) -> str:
    """`hf`, `gguf`, `message` or `run` for an existing SOURCE; UserError otherwise."""
    from tokenbound.training.run import is_training_run

    p = Path(source)
    if not p.exists():
        raise UserError(f"--base {source}: no such file or directory; give a Hugging Face "
                        "causal-LM directory, a .gguf file, a tokenbound message or run")
    if p.is_dir():
        if is_training_run(p):
            return "run"
        if (p / "config.json").is_file():
            return "hf"
        raise UserError(f"--base {source}: a directory without config.json; give a Hugging "
                        "Face causal-LM directory or a tokenbound training run")
    return "gguf" if p.suffix == ".gguf" else "message"


def base_identity(source: str) -> dict:
    """The identity of the base at SOURCE (see the module docstring); reads every file once."""
    dir_sha256, file_sha256 = _hashes()
    kind, p = base_kind(source), Path(source).absolute()
    ident = {"kind": kind, "path": str(p)}
    if kind == "hf":
        files = [f for f in p.rglob("*") if f.is_file()]
        ident.update(sha256=dir_sha256(str(p)), bytes=sum(f.stat().st_size for f in files))
        tok = p / "tokenizer.json"
        if tok.is_file():
            ident.update(tokenizer=f"hf:{tok}", tokenizer_sha256=file_sha256(str(tok)))
    elif kind == "gguf":
        sha = file_sha256(str(p))
        ident.update(sha256=sha, bytes=p.stat().st_size, tokenizer=f"gguf:{p}",
                     tokenizer_sha256=sha)
    elif kind == "message":
        ident.update(sha256=file_sha256(str(p)), bytes=p.stat().st_size)
    else:
        ident.update(_run_identity(p, file_sha256))
    return ident


def _run_identity(p: Path, file_sha256) -> dict:
    import hashlib

    from tokenbound.training.run import CONFIG, MODEL, is_complete

    if not is_complete(p):
        raise UserError(f"--base {p}: training has not finished; rerun its `tokenbound train` "
                        "command to finish it first")
    config = json.loads((p / CONFIG).read_text())
    h = hashlib.sha256(json.dumps(config["model"], sort_keys=True).encode())
    h.update(file_sha256(str(p / MODEL)).encode())
    return {"sha256": h.hexdigest(), "bytes": (p / MODEL).stat().st_size,
            "data_sha256": config.get("data_sha256"),
            "data_identity": config.get("data_identity")}


def load_base_module(ident: dict) -> tuple[torch.nn.Module, dict]:
    """`(module, info)` of the base `ident` describes, loaded from `ident["path"]` (float32,
    CPU, eval mode). `info` has the tokenizer spec when the base records one, and
    `context_len`. No hash check here: see `open_base`."""
    kind, path = ident["kind"], ident["path"]
    if kind in ("hf", "gguf"):
        model = _from_pretrained(path, kind)
        ctx = getattr(model.config, "max_position_embeddings", None)
        return model, {"context_len": ctx}
    if kind == "message":
        from tokenbound.compression.message import decode

        model, cfg, info = decode(path)
        if info["header"]["builder"] == "delta":
            raise UserError(f"--base {path} is itself a fine-tuned (delta) message; give its "
                            "base, or a message of a whole model")
        extra = info["extra"] if isinstance(info["extra"], dict) else {}
        return model, {"context_len": getattr(cfg, "context_len", None) or
                       getattr(cfg, "max_position_embeddings", None),
                       "tokenizer": extra.get("tokenizer")}
    from tokenbound.training.run import load_run

    model, cfg, info = load_run(path)
    if not hasattr(cfg, "n_layer"):
        raise UserError(f"--base {path} is itself a fine-tuning run; give its base, or a run "
                        "that trained a model from scratch")
    return model, {"context_len": cfg.context_len, "tokenizer": _run_tokenizer(info["config"])}


def _run_tokenizer(config: dict) -> str | None:
    """The tokenizer spec of a run's training stream (DATA/train, else DATA), if still there."""
    root = Path(config.get("data", ""))
    for meta in (root / "train" / "meta.json", root / "meta.json"):
        if meta.is_file():
            return json.loads(meta.read_text()).get("tokenizer")
    return None


def _from_pretrained(path: str, kind: str):
    try:
        from transformers import AutoModelForCausalLM
    except ImportError:
        raise UserError("a Hugging Face or GGUF base needs transformers and peft: pip install "
                        "'tokenbound[hf]'") from None
    p = Path(path)
    kwargs = ({"pretrained_model_name_or_path": str(p)} if kind == "hf" else
              {"pretrained_model_name_or_path": str(p.parent), "gguf_file": p.name})
    import transformers

    major_minor = tuple(int(x) for x in transformers.__version__.split(".")[:2])
    kwargs["dtype" if major_minor >= (4, 56) else "torch_dtype"] = torch.float32
    try:
        model = AutoModelForCausalLM.from_pretrained(**kwargs, local_files_only=True)
    except (MemoryError, torch.cuda.OutOfMemoryError):
        raise
    except Exception as exc:  # transformers raises many types on files it rejects
        why = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise UserError(f"--base {path}: not a causal language model transformers can load "
                        f"({why}); give a Hugging Face causal-LM directory or a .gguf file") \
            from None
    return model.eval()


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
    found = base_identity(path)
    if found["kind"] != ident["kind"] or found["sha256"] != ident.get("sha256"):
        raise BaseMismatch(f"the base {path} has sha256 {found['sha256']} ({found['kind']}), "
                           f"but this model was fine-tuned from sha256 {ident.get('sha256')} "
                           f"({ident['kind']}); pass the original base with --base PATH")
    key = (ident["kind"], found["sha256"])
    if key not in _LOADED:  # one load per process (a GGUF base takes a while to dequantize)
        _LOADED.clear()
        _LOADED[key] = load_base_module({**ident, "path": path})
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
