"""Toy streams and a fast causal toy model for the evaluation tests."""

from types import SimpleNamespace

import numpy as np
import torch

V, EOT, START = 48, 47, 47


def make_stream(doc_lens, seed=0, vocab=V):
    """Documents of random tokens < EOT, each closed by EOT; start_id = EOT (like GPT-2)."""
    rng = np.random.default_rng(seed)
    docs = [np.append(rng.integers(0, EOT, size=n - 1), EOT) for n in doc_lens]
    tokens = np.concatenate(docs).astype(np.uint16)
    off = np.concatenate([[0], np.cumsum(doc_lens)]).astype(np.int64)
    return SimpleNamespace(tokens=tokens, doc_offsets=off, vocab_size=vocab, start_id=START,
                           eot_id=EOT)


def stream_from_docs(docs):
    tokens = np.concatenate(docs).astype(np.uint16)
    off = np.concatenate([[0], np.cumsum([len(d) for d in docs])]).astype(np.int64)
    return SimpleNamespace(tokens=tokens, doc_offsets=off, vocab_size=V, start_id=START,
                           eot_id=EOT)


class Bigram(torch.nn.Module):
    """Fast causal toy LM: logits_t = A[x_t] + B[x_{t-1}] (B term 0 at t = 0)."""

    def __init__(self, vocab=V, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.a = torch.randn(vocab, vocab, generator=g) * 2
        self.b = torch.randn(vocab, vocab, generator=g)

    def forward(self, idx):
        out = self.a[idx]  # (B, T, V)
        out[:, 1:] += self.b[idx[:, :-1]]
        return out
