"""Model sources: a message, a training run, a Hugging Face directory or a GGUF file -> a model.

The one place that turns a path into something evaluation can score (a `ModelSource`: any
(B, T) int64 -> (B, T, V) logits callable, position ids 0..T-1, no KV cache) or into a torch
model to compress. It sits above `evaluation`, `compression` and `training` (METHOD 5;
docs/ARCHITECTURE.md), so that evaluation imports neither.

- `load_model_fn(source, device, dtype, device_map)`: a message (scores exactly the model
  `tokenbound.compression.decode` returns, records the message sha256), a Hugging Face
  directory or a `.gguf` file (records the sha256 of the file(s) read). A training run is
  refused with the command that compresses it. With dtype "bf16" the weights are cast to
  bfloat16 (the per-token statistics still use an fp32 log-softmax); a Hugging Face or GGUF model
  is loaded in bf16 by transformers, which keeps the buffers it computes in fp32 (rotary
  `inv_freq`) in fp32, as a user loading it in bf16 gets. With `device_map="auto"`
  (Hugging Face and GGUF; needs accelerate) a model larger than one device is split over the
  visible devices (then CPU memory): the token ids go to the device of the input embedding, the
  logits come back from the last block's device.
- `load_run_fn(run_dir, device, dtype)`: the final model of a finished training run, unquantized.
- `load_hf_model(source, ...)`: the only `AutoModelForCausalLM.from_pretrained` of the package
  (a directory or a `.gguf` file), failures as one-line UserErrors.
- `base_identity(source)`, `load_base_module(ident)`: the base of a fine-tuned model (METHOD
  2.9; a Hugging Face directory, a GGUF file, a message or a run) as a torch module, and its
  identity (sha256 of its files) that delta messages record (`compression/delta.py`).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch

from tokenbound.errors import UserError
from tokenbound.evaluation.sources import DTYPES, ModelSource
from tokenbound.fileio import dir_sha256, file_sha256, files_bytes

log = logging.getLogger(__name__)

ACCEPTED = ("a tokenbound message (.tbm, from tokenbound compress), a Hugging Face causal-LM "
            "directory (config.json + weights) or a .gguf file")


def probe_vocab(fn, device: str) -> int:
    """Vocabulary size V of a (B, T) -> (B, T, V) callable, from one forward of one token."""
    with torch.inference_mode():
        return int(fn(torch.zeros(1, 1, dtype=torch.int64, device=device)).shape[-1])


def context_limit(config) -> int | None:
    """Longest input of a model config (own GPTConfig or a transformers config), or None."""
    for name in ("context_len", "block_size", "n_positions", "max_position_embeddings",
                 "n_ctx", "seq_length"):
        if getattr(config, name, None):
            return int(getattr(config, name))
    return None


def logits_of(out) -> torch.Tensor:
    """Logits (B, T, V) from a model output: a tensor, a tuple or an object with .logits."""
    if isinstance(out, torch.Tensor):
        return out
    return out.logits if hasattr(out, "logits") else out[0]


def _wrap_hf(model, device: str, kind: str, path: str, sha: str,
             device_map: str | None = None) -> ModelSource:
    """`model` was loaded by `from_pretrained` in the requested dtype, which keeps some buffers
    in fp32 (rotary `inv_freq`): it is only moved here, never cast again."""
    if device_map is None:
        model = model.to(device=device)
    model = model.eval()
    first = model.get_input_embeddings().weight.device  # placed by accelerate if device_map

    def fn(idx: torch.Tensor) -> torch.Tensor:
        return model(input_ids=idx.to(first), use_cache=False).logits  # (B, T, V)

    tokenizer, tokenizer_sha = _own_tokenizer(kind, path, sha)
    return ModelSource(fn, probe_vocab(fn, device), context_limit(model.config),
                       {"kind": kind, "path": os.path.abspath(path), "sha256": sha},
                       tokenizer=tokenizer, tokenizer_sha256=tokenizer_sha)


def own_tokenizer_spec(source: str) -> str | None:
    """The tokenizer a model file ships, as a spec, without loading it: `gguf:FILE` for a GGUF
    file (its embedded vocabulary; the file starts with the GGUF magic), `hf:DIR/tokenizer.json`
    for a Hugging Face directory that has one; None otherwise (a message, a directory without
    tokenizer.json, a file that is not GGUF: its loader says why)."""
    path = os.path.abspath(source)
    if source.endswith(".gguf") and os.path.isfile(source):
        with open(path, "rb") as f:
            return f"gguf:{path}" if f.read(4) == b"GGUF" else None
    tj = os.path.join(path, "tokenizer.json")
    return f"hf:{tj}" if os.path.isdir(source) and os.path.isfile(tj) else None


def _own_tokenizer(kind: str, path: str, sha: str) -> tuple[str | None, str | None]:
    """(spec, file sha256) of the tokenizer a Hugging Face directory or GGUF file ships
    (`own_tokenizer_spec`); (None, None) with a logged warning when the directory has none
    (then the stream's tokenizer is not checked)."""
    spec = own_tokenizer_spec(path)
    if spec is not None:
        return spec, (sha if kind == "gguf" else file_sha256(spec[len("hf:"):]))
    log.warning("%s has no tokenizer.json: the stream's tokenizer cannot be checked against "
                "the model's (make sure the data was prepared with the model's tokenizer)", path)
    return None, None


def _wrap_own(model, cfg, device: str, dtype: str, ident: dict,
              tokenizer: str | None = None) -> ModelSource:
    """A tokenbound GPT (decoded message or training run) as a ModelSource."""
    model = model.to(device=device, dtype=DTYPES[dtype]).eval()

    def fn(idx: torch.Tensor) -> torch.Tensor:
        return logits_of(model(idx))  # (B, T, V)

    return ModelSource(fn, probe_vocab(fn, device), context_limit(cfg), ident, tokenizer=tokenizer)


def _load_message(path: str, device: str, dtype: str) -> ModelSource:
    from tokenbound.compression import decode  # the decoded model is the one scored

    model, cfg, info = decode(path)
    ident = {"kind": "message", "path": os.path.abspath(path), "sha256": file_sha256(path),
             "message_bytes": os.path.getsize(path)}
    from tokenbound.compression.delta import prior_of

    if prior_of(info):  # a fine-tuned model: the base it is a delta from (METHOD 2.9)
        ident["prior"] = prior_of(info)
    tokenizer = info["extra"].get("tokenizer") if isinstance(info["extra"], dict) else None
    return _wrap_own(model, cfg, device, dtype, ident, str(tokenizer) if tokenizer else None)


def load_run_fn(run_dir, device: str = "cpu", dtype: str = "fp32") -> ModelSource:
    """The final (unquantized) model of a finished `tokenbound train` run as a ModelSource.

    Not a certificate's model (only a message's length is charged): for diagnostics such as the
    accuracy before quantization. `ident` records the run directory and its trained weights' sha256.
    """
    from tokenbound.training.run import MODEL, load_run

    model, cfg, _ = load_run(run_dir)
    weights = os.path.join(str(run_dir), MODEL)
    ident = {"kind": "run", "path": os.path.abspath(str(run_dir)), "sha256": file_sha256(weights)}
    return _wrap_own(model, cfg, device, dtype, ident)


def load_hf_model(source: str, *, torch_dtype=None, device_map: str | None = None,
                  flag: str = "--model"):
    """`AutoModelForCausalLM.from_pretrained` of a local directory or `.gguf` file, in eval mode.

    `torch_dtype` None keeps transformers' default; failures are one-line UserErrors naming
    `flag SOURCE` and what it accepts (out of memory is re-raised).
    """
    path = os.path.abspath(source)
    kwargs = {"pretrained_model_name_or_path": path, "local_files_only": True}
    if source.endswith(".gguf") and not os.path.isdir(source):
        log.info("loading GGUF %s (dequantized by transformers; slow)", source)
        kwargs.update(pretrained_model_name_or_path=os.path.dirname(path),
                      gguf_file=os.path.basename(path))
    if torch_dtype is not None:
        kwargs["torch_dtype"] = torch_dtype
    if device_map is not None:
        kwargs["device_map"] = device_map
    try:
        from transformers import AutoModelForCausalLM
    except ImportError:
        raise UserError(f"{flag} {source}: Hugging Face and GGUF models need transformers: "
                        "pip install 'tokenbound[hf]'") from None
    try:
        return AutoModelForCausalLM.from_pretrained(**kwargs).eval()
    except (MemoryError, torch.cuda.OutOfMemoryError):
        raise
    except Exception as exc:  # transformers and gguf raise many types on files they reject
        why = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise UserError(f"{flag} {source}: cannot load it ({why}); {flag} takes {ACCEPTED}") \
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
        model = load_hf_model(source, torch_dtype=DTYPES[dtype], device_map=device_map)
        return _wrap_hf(model, device, "hf", source, dir_sha256(source), device_map)
    if source.endswith(".gguf"):
        model = load_hf_model(source, torch_dtype=DTYPES[dtype], device_map=device_map)
        return _wrap_hf(model, device, "gguf", source, file_sha256(source), device_map)
    if device_map is not None:
        raise UserError("--device-map applies to Hugging Face and GGUF models; a tokenbound "
                        "message loads on one --device")
    return _load_message(source, device, dtype)


# ---- bases of fine-tuned models (METHOD 2.9) ----------------------------------------------
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
    """The identity of the base at SOURCE (`compression/delta.py`): kind (hf, gguf, message,
    run), absolute path, sha256 of its files, bytes, and its tokenizer (spec and file sha256)
    when the files name one; a run adds its training data's identity."""
    kind, p = base_kind(source), Path(source).absolute()
    ident = {"kind": kind, "path": str(p)}
    if kind in ("hf", "gguf"):
        sha = dir_sha256(str(p)) if p.is_dir() else file_sha256(str(p))
        ident.update(sha256=sha, bytes=files_bytes(p))
        spec, tok_sha = _own_tokenizer(kind, str(p), sha)
        if spec is not None:
            ident.update(tokenizer=spec, tokenizer_sha256=tok_sha)
    elif kind == "message":
        ident.update(sha256=file_sha256(str(p)), bytes=p.stat().st_size)
    else:
        ident.update(_run_identity(p))
    return ident


def _run_identity(p: Path) -> dict:
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
        model = load_hf_model(path, torch_dtype=torch.float32, flag="--base")
        ctx = getattr(model.config, "max_position_embeddings", None)
        return model, {"context_len": ctx}
    if kind == "message":
        from tokenbound.compression import decode

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
