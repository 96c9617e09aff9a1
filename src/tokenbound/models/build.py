"""`build_model(cfg)`: the one way to construct a model, deterministic from the config.

All random tensors are drawn on the CPU inside `torch.random.fork_rng` seeded with `cfg.seed`
(frozen bases and projections from their own seeded generators), so two builds are bit for bit
equal and the caller's global RNG state is left untouched. Move the model to a device after
building (`build_model(cfg).to(device)`), never build on an accelerator: frozen tensors must
not depend on the device's RNG or QR kernels.
"""

from __future__ import annotations

import torch
from torch import nn

from tokenbound.models.config import GPTConfig
from tokenbound.models.gpt import GPT


def build_model(cfg: GPTConfig, device: str = "cpu") -> nn.Module:
    """A `GPT` (or a `SubspaceGPT` wrapping one when `cfg.subspace_dim` is set), on the CPU.

    `device="meta"` builds shapes only (no memory, no values: for counting parameters); the
    subspace wrapper needs real base weights, so it is refused there.
    """
    if device != "cpu" and cfg.subspace_dim:
        raise ValueError("a subspace model can only be built on the cpu")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        with torch.device(device):
            base = GPT(cfg.replace(subspace_dim=None) if cfg.subspace_dim else cfg)
    if cfg.subspace_dim is None:
        return base
    from tokenbound.models.subspace import SubspaceGPT

    return SubspaceGPT(base, cfg)
