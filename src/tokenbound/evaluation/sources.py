"""What evaluation scores: a `ModelSource`, any (B, T) int64 -> (B, T, V) logits callable.

Evaluation imports neither `compression` nor `training`: loading a message, a training run, a
Hugging Face directory or a GGUF file into a `ModelSource` is `tokenbound.sources` (one layer
up). Here: the `ModelSource` record and the `DTYPES` it may be scored in (the file hashes its
provenance records are `tokenbound.fileio`'s).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


@dataclass
class ModelSource:
    """A loaded model: `fn` (B, T) -> (B, T, V); `vocab_size` = V (logits width);
    `max_context` the longest input it accepts (None if unknown); `ident` provenance
    (kind, path, sha256) recorded in the manifest; `tokenizer` the spec it was trained with
    (a message records it; a Hugging Face directory's `tokenizer.json` and a GGUF file are
    `hf:`/`gguf:` specs; None if unknown), checked against the stream's (`engine.check_tokenizer`);
    `tokenizer_sha256` the sha256 of that tokenizer's file (None for a message)."""

    fn: Callable[[torch.Tensor], torch.Tensor]
    vocab_size: int
    max_context: int | None
    ident: dict
    tokenizer: str | None = None
    tokenizer_sha256: str | None = None
