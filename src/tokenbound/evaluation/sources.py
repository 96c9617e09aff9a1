"""Model sources for evaluation: a tokenbound message, a Hugging Face directory, a GGUF file.

`load_model_fn(source, device, dtype)` returns a `ModelSource` whose `fn` maps (B, T) int64
token ids to (B, T, V) logits (position ids 0..T-1, no KV cache). The message case scores
exactly the model decoded from the message (`tokenbound.compression.decode`) and records the
message sha256; the other cases record the sha256 of the file(s) read. With dtype "bf16" the
weights are cast to bfloat16 (the per-token statistics still use an fp32 log-softmax).
With `device_map="auto"` (Hugging Face and GGUF sources; needs accelerate) a model larger than
one device is split over the visible devices (then CPU memory) by accelerate: the token ids go
to the device of the input embedding, the logits come back from the last block's device.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from typing import Callable

import torch

from tokenbound.errors import UserError

log = logging.getLogger(__name__)

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


@dataclass
class ModelSource:
    """A loaded model: `fn` (B, T) -> (B, T, V); `vocab_size` = V (logits width);
    `max_context` the longest input it accepts (None if unknown); `ident` provenance
    (kind, path, sha256) recorded in the manifest; `tokenizer` the spec it was trained with
    (a message records it; None if unknown), checked against the stream's."""

    fn: Callable[[torch.Tensor], torch.Tensor]
    vocab_size: int
    max_context: int | None
    ident: dict
    tokenizer: str | None = None


def file_sha256(path: str, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def dir_sha256(path: str) -> str:
    """sha256 over (relative name, file sha256) of every file under `path`, sorted."""
    h = hashlib.sha256()
    for root, dirs, files in sorted(os.walk(path)):
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(root, name)
            h.update(f"{os.path.relpath(full, path)}\0{file_sha256(full)}\n".encode())
    return h.hexdigest()


def _probe_vocab(fn, device: str) -> int:
    with torch.inference_mode():
        return int(fn(torch.zeros(1, 1, dtype=torch.int64, device=device)).shape[-1])


def _hf_context(config) -> int | None:
    """Longest input of a model config (own GPTConfig or a transformers config), or None."""
    for name in ("context_len", "block_size", "n_positions", "max_position_embeddings",
                 "n_ctx", "seq_length"):
        if getattr(config, name, None):
            return int(getattr(config, name))
    return None


def _logits(out) -> torch.Tensor:
    """Logits (B, T, V) from a model output: a tensor, a tuple or an object with .logits."""
    if isinstance(out, torch.Tensor):
        return out
    return out.logits if hasattr(out, "logits") else out[0]


def _wrap_hf(model, device: str, dtype: str, kind: str, path: str, sha: str,
             device_map: str | None = None) -> ModelSource:
    if device_map is None:
        model = model.to(device=device, dtype=DTYPES[dtype])
    model = model.eval()
    first = model.get_input_embeddings().weight.device  # placed by accelerate if device_map

    def fn(idx: torch.Tensor) -> torch.Tensor:
        return model(input_ids=idx.to(first), use_cache=False).logits  # (B, T, V)

    return ModelSource(fn, _probe_vocab(fn, device), _hf_context(model.config),
                       {"kind": kind, "path": os.path.abspath(path), "sha256": sha})


def _load_message(path: str, device: str, dtype: str) -> ModelSource:
    from tokenbound.compression import decode  # the decoded model is the one scored

    model, cfg, info = decode(path)
    model = model.to(device=device, dtype=DTYPES[dtype]).eval()

    def fn(idx: torch.Tensor) -> torch.Tensor:
        return _logits(model(idx))  # (B, T, V)

    ident = {"kind": "message", "path": os.path.abspath(path), "sha256": file_sha256(path),
             "message_bytes": os.path.getsize(path)}
    tokenizer = info["extra"].get("tokenizer") if isinstance(info["extra"], dict) else None
    return ModelSource(fn, _probe_vocab(fn, device), _hf_context(cfg), ident,
                       tokenizer=str(tokenizer) if tokenizer else None)


ACCEPTED = ("a tokenbound message (.tbm, from tokenbound compress), a Hugging Face causal-LM "
            "directory (config.json + weights) or a .gguf file")


def _from_pretrained(source: str, **kwargs):
    """transformers' `AutoModelForCausalLM.from_pretrained`, its failures as one-line
    UserErrors naming SOURCE and what --model accepts (out of memory is re-raised)."""
    try:
        from transformers import AutoModelForCausalLM
    except ImportError:
        raise UserError(f"--model {source}: Hugging Face and GGUF models need transformers: "
                        "pip install 'tokenbound[hf]'") from None
    try:
        return AutoModelForCausalLM.from_pretrained(**kwargs)
    except (MemoryError, torch.cuda.OutOfMemoryError):
        raise
    except Exception as exc:  # transformers and gguf raise many types on files they reject
        why = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise UserError(f"--model {source}: cannot load it ({why}); --model takes {ACCEPTED}") \
            from None


def load_model_fn(source: str, device: str = "cpu", dtype: str = "fp32",
                  device_map: str | None = None) -> ModelSource:
    """Load SOURCE: a directory -> Hugging Face causal LM; `*.gguf` -> GGUF via transformers;
    any other file -> tokenbound message. `device_map` ("auto") is passed to
    `from_pretrained` for the Hugging Face and GGUF cases (then `device` is not used)."""
    if device_map not in (None, "auto"):
        raise UserError(f"--device-map must be auto (got {device_map!r})")
    if dtype not in DTYPES:
        raise UserError(f"--dtype must be one of {sorted(DTYPES)} (got {dtype!r})")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("--device cuda requested but no CUDA device is available; use --device cpu")
    if not os.path.exists(source):
        raise UserError(f"--model {source!r} does not exist; pass a message file, a Hugging Face "
                        "model directory or a .gguf file")
    if os.path.isdir(source):
        if not os.path.exists(os.path.join(source, "config.json")):
            raise UserError(f"--model {source!r} is a directory without config.json; pass a "
                            "Hugging Face model directory")
        from tokenbound.training.run import is_training_run

        if is_training_run(source):
            raise UserError(f"{source} is a tokenbound training run; compress it first: "
                            f"tokenbound compress {source} --levels 17 --out {source}/model.tbm, "
                            f"then pass --model {source}/model.tbm")
        model = _from_pretrained(source, pretrained_model_name_or_path=source,
                                 torch_dtype=DTYPES[dtype], device_map=device_map)
        return _wrap_hf(model, device, dtype, "hf", source, dir_sha256(source), device_map)
    if source.endswith(".gguf"):
        log.info("loading GGUF %s (dequantized by transformers; slow)", source)
        model = _from_pretrained(
            source, pretrained_model_name_or_path=os.path.dirname(os.path.abspath(source)),
            gguf_file=os.path.basename(source), torch_dtype=DTYPES[dtype], device_map=device_map)
        return _wrap_hf(model, device, dtype, "gguf", source, file_sha256(source), device_map)
    if device_map is not None:
        raise UserError("--device-map applies to Hugging Face and GGUF models; a tokenbound "
                        "message loads on one --device")
    return _load_message(source, device, dtype)
