"""The registry of paper experiments run by `tokenbound experiment NAME`.

Each experiment module defines
    HELP: str                                   one line, shown by `tokenbound experiment --help`
    add_arguments(parser) -> None               optional, extra flags of that experiment
    run(out_dir: str, quick: bool, progress: bool, **kwargs) -> dict
                                                the results table (JSON-able); kwargs are the
                                                experiment's own flags as parsed
Modules are imported lazily (only the one that is run), so that listing never imports torch.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from tokenbound.errors import UserError

# experiment name -> module
EXPERIMENTS: dict[str, str] = {
    "compression": "tokenbound.experiments.exp_compression",
    "doc-vs-token": "tokenbound.experiments.exp_doc_vs_token",
    "quantization": "tokenbound.experiments.exp_quantization",
    "markov": "tokenbound.experiments.exp_markov",
    "memorization": "tokenbound.experiments.exp_memorization",
    "pretrained": "tokenbound.experiments.exp_pretrained",
    "sampling": "tokenbound.experiments.exp_sampling",
    "scaling": "tokenbound.experiments.exp_scaling",
    "finetune": "tokenbound.experiments.exp_finetune",
}


def list_experiments() -> list[str]:
    """The registered experiment names, in registry order."""
    return list(EXPERIMENTS)


def load(name: str) -> ModuleType:
    """Import the module of experiment `name`; UserError for an unknown name."""
    if name not in EXPERIMENTS:
        raise UserError(f"unknown experiment {name!r}; choose one of: "
                        + ", ".join(EXPERIMENTS))
    return importlib.import_module(EXPERIMENTS[name])
