"""Fixtures: a tiny GPT-2 built from a config object (no download), a fast toy model."""

import pytest
import torch

from tokenbound.evaluation.sources import ModelSource

from .helpers import V, Bigram

@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every evaluation test runs torch on one thread (tests/conftest.py `one_thread`)."""
    yield


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


@pytest.fixture
def bigram_source():
    m = Bigram()
    return ModelSource(m, V, None, {"kind": "test", "sha256": "bigram-0"})
