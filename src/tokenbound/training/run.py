"""The run directory of `tokenbound train` and `load_run`.

    RUN/config.json        resolved TrainConfig (`model` = GPTConfig.to_dict()), data sha256s
                           and identities (tokens + boundaries + tokenizer),
                           provenance (package version, world size)
    RUN/model.safetensors  final `model.trained_state()` (written before train.json)
    RUN/train.json         summary: final train/held-out loss (bits per token), steps, tokens
                           seen, tokens/s, wall time, loss curve; its presence marks completion
    RUN/ckpt/              latest resumable checkpoint (`checkpoint.py`)
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tokenbound.errors import OutDirMismatch, UserError

CONFIG = "config.json"
MODEL = "model.safetensors"
SUMMARY = "train.json"
# keys of config.json that do not have to match for a rerun to resume the same run ("data" is
# a path: the data itself is compared by its sha256; "device" is compared by what it means)
_NOT_COMPARED = ("out", "provenance", "data", "device")
# keys added later: compared only when the run's config.json has them (older runs resume)
_IF_RECORDED = ("data_identity", "heldout_identity")


def models_api():
    """The `tokenbound.models` package (imported late: training sits above models)."""
    from tokenbound import models

    return models


def build_run_model(model_cfg):
    """The model a run trains, on the CPU: `build_model(GPTConfig)`, or a frozen base with
    adapters for an `AdapterConfig` (`tokenbound train --base`, `finetune.py`)."""
    from tokenbound.models.finetune import AdapterConfig

    if isinstance(model_cfg, AdapterConfig):
        from tokenbound.training.finetune import build_finetuned

        return build_finetuned(model_cfg)
    return models_api().build_model(model_cfg)


def model_config_from_dict(d: dict):
    """The model config recorded in a run's config.json: `GPTConfig` or `AdapterConfig`."""
    from tokenbound.models.finetune import AdapterConfig
    from tokenbound.training.finetune import is_adapter_config

    return AdapterConfig.from_dict(d) if is_adapter_config(d) else \
        models_api().GPTConfig.from_dict(d)


def open_data(data_dir: str):
    """`(train_stream, heldout_stream_or_None)` of a `tokenbound prepare` directory.

    DATA/train is the training stream when it exists, else DATA itself; DATA/heldout is
    returned when it exists.
    """
    from tokenbound.data import open_stream

    root = Path(data_dir)
    if not root.is_dir():
        raise UserError(f"--data {data_dir}: no such directory; run `tokenbound prepare` first")
    train_dir = root / "train" if (root / "train").is_dir() else root
    heldout_dir = root / "heldout"
    heldout = open_stream(str(heldout_dir)) if heldout_dir.is_dir() else None
    return open_stream(str(train_dir)), heldout


def resolved_config(cfg, train_stream, heldout) -> dict:
    """What config.json holds: `cfg.to_dict()` plus data hashes and provenance."""
    from tokenbound.provenance import package_info

    d = cfg.to_dict()
    d["data_sha256"] = train_stream.sha256
    d["heldout_sha256"] = heldout.sha256 if heldout is not None else None
    # tokens + document boundaries + tokenizer (the token hash alone misses a new layout)
    d["data_identity"] = getattr(train_stream, "identity", None)
    d["heldout_identity"] = getattr(heldout, "identity", None)
    d["provenance"] = package_info()
    return d


def check_run_dir(run_dir: Path, resolved: dict, force: bool) -> None:
    """Raise UserError if RUN holds a different run (unless `force`). Read-only."""
    path = Path(run_dir) / CONFIG
    if force or not path.exists():
        return
    from tokenbound.training.distributed import device_kind

    old = json.loads(path.read_text())
    diff = sorted(k for k in set(old) | set(resolved)
                  if k not in _NOT_COMPARED and old.get(k) != resolved.get(k)
                  and (k in old or k not in _IF_RECORDED))
    if device_kind(old.get("device", "auto")) != device_kind(resolved.get("device", "auto")):
        diff.append("device")
    if diff:
        raise OutDirMismatch(f"--out {run_dir} holds a run with a different configuration "
                             f"({', '.join(diff)}); use a new --out, or --force to overwrite it",
                             diff)


def reset_run_dir(run_dir: Path) -> None:
    """Remove the files a run writes (used by --force); other files are left alone."""
    run_dir = Path(run_dir)
    for name in (CONFIG, MODEL, SUMMARY):
        (run_dir / name).unlink(missing_ok=True)
    shutil.rmtree(run_dir / "ckpt", ignore_errors=True)


def is_training_run(path) -> bool:
    """True when `path` is a `tokenbound train` run directory (finished or not).

    Its config.json is a TrainConfig (a "model" dict, "data_sha256"), not a transformers
    config (which has "model_type"); train.json or ckpt/latest.json mark it as well."""
    path = Path(path)
    try:
        cfg = json.loads((path / CONFIG).read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(cfg, dict) or "model_type" in cfg:
        return False
    return (isinstance(cfg.get("model"), dict) and "data_sha256" in cfg) or any(
        (path / f).is_file() for f in (SUMMARY, "ckpt/latest.json"))


def is_complete(run_dir: Path) -> bool:
    """True when both the final weights and the summary have been written."""
    run_dir = Path(run_dir)
    return (run_dir / MODEL).exists() and (run_dir / SUMMARY).exists()


def load_run(run_dir):
    """Load the final model of a completed run: `(model, GPTConfig, info)`.

    `info` has `config` (config.json), `train` (train.json) and `run_dir`. Frozen tensors are
    regenerated by `build_model(cfg)`; the trained ones come from model.safetensors. The model
    is returned in eval mode on the CPU. Raises UserError if RUN is missing or incomplete.
    """
    from safetensors.torch import load_file

    run_dir = Path(run_dir)
    if not (run_dir / CONFIG).exists():
        raise UserError(f"{run_dir}: not a training run (no {CONFIG}); run `tokenbound train "
                        f"--out {run_dir}` first")
    if not is_complete(run_dir):
        raise UserError(f"{run_dir}: training has not finished; rerun the same `tokenbound "
                        "train` command to resume it")
    config = json.loads((run_dir / CONFIG).read_text())
    model_cfg = model_config_from_dict(config["model"])
    model = build_run_model(model_cfg)
    model.load_trained_state(load_file(str(run_dir / MODEL)))
    model.eval()
    info = {"config": config, "train": json.loads((run_dir / SUMMARY).read_text()),
            "run_dir": str(run_dir)}
    return model, model_cfg, info
