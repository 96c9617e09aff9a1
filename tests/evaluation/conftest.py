"""Tiny fixtures: a GPT-2 built from a config object (no download) and toy token streams."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from tokenbound.evaluation.sources import ModelSource

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


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models run fastest single-threaded on the shared CPU; restored afterwards."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=V, n_positions=16, n_embd=16, n_layer=2, n_head=2,
                     attn_implementation="eager")
    model = GPT2LMHeadModel(cfg).eval()
    with torch.no_grad():  # larger logits than the default init: sharper distributions
        model.lm_head.weight.mul_(20.0)
    return model


@pytest.fixture(scope="session")
def gpt2_source(gpt2):
    def fn(idx):
        return gpt2(input_ids=idx, use_cache=False).logits  # (B, T, V)

    return ModelSource(fn, V, 16, {"kind": "test", "sha256": "tiny-gpt2"})
