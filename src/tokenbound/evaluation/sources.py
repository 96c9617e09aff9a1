"""What evaluation scores: a `ModelSource`, any (B, T) int64 -> (B, T, V) logits callable.

Evaluation imports neither `compression` nor `training`: loading a message, a training run, a
Hugging Face directory or a GGUF file into a `ModelSource` is `tokenbound.sources` (one layer
up). Here: the `ModelSource` record, the `DTYPES` it may be scored in, and the file hashes its
provenance records.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Callable

import torch

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
