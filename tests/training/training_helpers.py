"""Small stand-ins shared by the training tests (no downloads, tiny sizes)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch
from torch import nn

# CLI flags of a tiny run: 4 steps of a 1-layer width-16 GPT on sequences of 12 tokens
TINY = ["--steps", "4", "--batch-size", "4", "--seq-len", "12", "--context-len", "16",
        "--n-layer", "1", "--n-head", "2", "--d-model", "16", "--eval-interval", "2",
        "--eval-batches", "1", "--ckpt-interval", "2", "--no-bf16", "--no-progress",
        "--device", "cpu"]


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


def write_toy_data(root, n_train: int = 60, n_heldout: int = 20, seed: int = 0):
    """DATA/train and DATA/heldout: cyclic sequences over ids 1..7, closed by EOT = 15."""
    from tokenbound.data import write_stream

    rng = np.random.default_rng(seed)
    docs = [np.array([1 + (i + j) % 7 for j in range(int(rng.integers(5, 30)))] + [15])
            for i in range(n_train + n_heldout)]
    meta = {"tokenizer": "toy", "vocab_size": 16, "eot_id": 15, "start_id": 15}
    write_stream(f"{root}/train", docs[:n_train], meta)
    write_stream(f"{root}/heldout", docs[n_train:], meta)
    return str(root)


def tiny_model_config(**kw):
    """A GPT small enough for a step to take about a millisecond."""
    from tokenbound.models import GPTConfig

    base = dict(vocab_size=16, context_len=16, n_layer=1, n_head=2, d_model=16)
    return GPTConfig(**(base | kw))


def tiny_train_config(data, out, **kw):
    from tokenbound.training import TrainConfig

    base = dict(data=data, out=str(out), model=tiny_model_config(), steps=6, batch_size=4,
                context_len=12, eval_interval=3, eval_batches=2, ckpt_interval=2, bf16=False,
                device="cpu")
    return TrainConfig(**(base | kw))
