"""Process-group helpers for data-parallel training (`torchrun`, gloo on CPU, nccl on GPU).

`train` works in three settings: one process (nothing to do), under `torchrun` (WORLD_SIZE > 1
in the environment: the group is initialized here), or inside a caller that already initialized
a group (tests use a FileStore with `torch.multiprocessing`).
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def dist_info() -> tuple[int, int]:
    """`(rank, world_size)`; initializes the default group from torchrun's environment."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def resolve_device(name: str, world: int) -> torch.device:
    """`auto` -> cuda (this rank's local GPU under DDP) if available, else cpu.

    UserError for cuda on a machine without a usable GPU."""
    from tokenbound.errors import UserError

    if name == "auto":
        name = device_kind(name)
    if name == "cuda" and world > 1:
        name = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    dev = torch.device(name)  # the name was checked by TrainConfig
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name}: no CUDA GPU is usable here; use --device cpu (or auto)")
    return dev


def device_kind(name: str) -> str:
    """The device type `name` means on this machine ("auto" resolved; "cuda:1" -> "cuda")."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return str(name).split(":", 1)[0]


def barrier(world: int) -> None:
    """Wait for all ranks (no-op in one process)."""
    if world > 1:
        dist.barrier()


def all_reduce_sum(value: float, world: int, device: torch.device) -> float:
    """Sum a float over ranks, in float64 (identity in one process)."""
    if world == 1:
        return float(value)
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return float(t.item())

