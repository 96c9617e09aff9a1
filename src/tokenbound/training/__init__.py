"""Training of tokenbound GPTs: packed seeded batches, a resumable AdamW loop, DDP, run dirs.

Public API:
    batch_iterator(stream, context_len, batch_size, seed, start_step=0) -> (x, y, doc_ids)
    estimate_loss(model, stream, context_len, n_batches, batch_size, seed) -> bits per token
    TrainConfig, lr_at(step, cfg)
    train(cfg, progress=True, *, force=False) -> summary dict
    load_run(run_dir) -> (model, GPTConfig, info)
"""

from tokenbound.training.batches import (IGNORE_INDEX, batch_iterator, estimate_loss,
                                         make_batch, target_count)
from tokenbound.training.config import TrainConfig, lr_at
from tokenbound.training.loop import make_optimizer, train
from tokenbound.training.run import load_run

__all__ = ["IGNORE_INDEX", "TrainConfig", "batch_iterator", "estimate_loss", "load_run",
           "lr_at", "make_batch", "make_optimizer", "target_count", "train"]
