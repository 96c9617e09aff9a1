"""Fixtures shared by every test package (no downloads: models are built from config objects)."""

import pytest


@pytest.fixture
def tiny_llama():
    """Factory of a seeded 2-layer Llama (V = 64, width 32, 4 heads / 2 KV heads), in eval mode;
    keywords override the LlamaConfig (e.g. tie_word_embeddings=True)."""
    transformers = pytest.importorskip("transformers")
    import torch

    def make(seed: int = 0, **overrides):
        cfg = transformers.LlamaConfig(**{
            "vocab_size": 64, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 64,
            **overrides})
        torch.manual_seed(seed)
        return transformers.LlamaForCausalLM(cfg).eval()

    return make


@pytest.fixture
def one_thread():
    """Torch on one thread for the test (tiny models run fastest single-threaded on the shared
    CPU); the thread count restored afterwards."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
