"""Atomic files and resumable checkpoints of a training run.

A checkpoint is `RUN/ckpt/state-<step>.safetensors` (the model's trained tensors under `model.`,
AdamW state under `optim.<param index>.<name>`) plus `RUN/ckpt/latest.json` (step, the file name,
optimizer param groups, progress counters, the RNG scheme). The tensors are written first, then
the JSON by rename (the commit point), then older tensor files are removed; a crash at any moment
leaves a consistent checkpoint or none.

RNG: the data order is a function of `(seed, step)` (`batches.make_batch`) and the torch RNG is
reseeded at every step from `(seed, step, rank)` (`step_seed`), so nothing else needs saving for
an exact resume; the JSON records this scheme.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from tokenbound.fileio import atomic_path, atomic_write_json

CKPT_DIR = "ckpt"
LATEST = "latest.json"
RNG_SCHEME = ("torch.manual_seed(step_seed(seed, step, rank)) before each step; "
              "data from (seed, step)")


def step_seed(seed: int, step: int, rank: int) -> int:
    """A 63-bit torch seed derived from `(seed, step, rank)` by numpy's SeedSequence."""
    state = np.random.SeedSequence([int(seed), int(step), int(rank), 0x7B]).generate_state(2)
    return int((int(state[0]) << 31) ^ int(state[1])) & ((1 << 63) - 1)


def atomic_save_tensors(path: Path, tensors: dict, metadata: dict | None = None) -> None:
    """`safetensors.torch.save_file` through `fileio.atomic_path` (temporary name, fsync,
    rename), so a pointer written after it, like ckpt/latest.json, never names a file a power
    loss truncated."""
    clean = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(clean, str(tmp), metadata=metadata)


def optimizer_to_flat(optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    """Split `optimizer.state_dict()` into tensors `optim.<i>.<name>` and a JSON-ready rest."""
    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for idx, state in sd["state"].items():
        for name, value in state.items():
            if torch.is_tensor(value):
                tensors[f"optim.{idx}.{name}"] = value
            else:
                scalars[f"{idx}.{name}"] = value
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()}
              for g in sd["param_groups"]]
    return tensors, {"param_groups": groups, "scalars": scalars}


def optimizer_from_flat(tensors: dict, rest: dict) -> dict:
    """Inverse of `optimizer_to_flat`: a state dict for `optimizer.load_state_dict`."""
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = value
    for key, value in rest["scalars"].items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = value
    groups = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()}
              for g in rest["param_groups"]]
    return {"state": state, "param_groups": groups}


def save_checkpoint(run_dir: Path, step: int, trained: dict, optimizer, progress: dict) -> None:
    """Write the checkpoint taken after `step` optimizer steps (see module docstring)."""
    ckpt = Path(run_dir) / CKPT_DIR
    name = f"state-{step:08d}.safetensors"
    opt_tensors, opt_rest = optimizer_to_flat(optimizer)
    tensors = {f"model.{k}": v for k, v in trained.items()} | opt_tensors
    atomic_save_tensors(ckpt / name, tensors, metadata={"step": str(step)})
    atomic_write_json(ckpt / LATEST, {"step": step, "tensors": name, "rng": RNG_SCHEME,
                                      "optimizer": opt_rest, "progress": progress})
    for old in ckpt.glob("state-*.safetensors"):
        if old.name != name:
            old.unlink(missing_ok=True)


def load_checkpoint(run_dir: Path) -> tuple[dict, dict, dict] | None:
    """`(trained, optimizer_state_dict, info)` of the latest checkpoint, or None if there is none.

    `info` is the JSON (`step`, `progress`, ...).
    """
    ckpt = Path(run_dir) / CKPT_DIR
    latest = ckpt / LATEST
    if not latest.exists():
        return None
    info = json.loads(latest.read_text())
    tensors = load_file(str(ckpt / info["tensors"]))
    trained = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    return trained, optimizer_from_flat(tensors, info["optimizer"]), info
