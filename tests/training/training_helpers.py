"""Small stand-ins shared by the training tests (no downloads, tiny sizes)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch
from torch import nn


def toy_stream(docs: list[list[int]], vocab_size: int = 16, start_id: int = 0):
    """An in-memory object with the TokenStream attributes the training code reads."""
    lengths = [len(d) for d in docs]
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    tokens = np.concatenate([np.asarray(d, dtype=np.uint16) for d in docs])
    return SimpleNamespace(tokens=tokens, doc_offsets=offsets, vocab_size=vocab_size,
                           start_id=start_id, eot_id=None, sha256="toy", meta={})


def random_docs(seed: int, n_docs: int, max_len: int, vocab_size: int) -> list[list[int]]:
    """Documents of random lengths 1..max_len with tokens in [1, vocab_size)."""
    rng = np.random.default_rng(seed)
    return [list(rng.integers(1, vocab_size, size=int(rng.integers(1, max_len + 1))))
            for _ in range(n_docs)]


class TableModel(nn.Module):
    """Logits depend only on the current input token: `table[x]` (a bigram model), (B, T, V)."""

    def __init__(self, vocab_size: int, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.table = nn.Parameter(torch.randn(vocab_size, vocab_size, generator=g))

    def forward(self, idx, doc_ids=None):
        return self.table[idx]  # (B, T, V)
