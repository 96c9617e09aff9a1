"""Models: a small GPT with structured linear layers and random-subspace training.

    cfg = GPTConfig(vocab_size=256, context_len=256, n_layer=4, n_head=4, d_model=128)
    model = build_model(cfg)               # deterministic from cfg (incl. cfg.seed), on CPU
    logits = model(idx, doc_ids=None)      # (B, T) int64 -> (B, T, V)
    model.trained_state()                  # ordered dict: exactly the charged tensors
    model.load_trained_state(state)        # strict
    model.trainable_parameters()           # what the optimizer updates

This package never imports `tokenbound.data` or `tokenbound.bounds`.
"""

from tokenbound.models.build import build_model
from tokenbound.models.config import GPTConfig, near_square_factors
from tokenbound.models.counts import param_counts
from tokenbound.models.gpt import GPT
from tokenbound.models.linear import (DenseLinear, KroneckerLinear, LoRALinear, MonarchLinear,
                                      monarch_param_count)
from tokenbound.models.subspace import KroneckerProjection, SubspaceGPT

__all__ = [
    "GPT", "GPTConfig", "build_model",
    "DenseLinear", "LoRALinear", "KroneckerLinear", "MonarchLinear", "monarch_param_count",
    "near_square_factors", "param_counts", "SubspaceGPT", "KroneckerProjection",
]
