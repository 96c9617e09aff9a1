"""Sampled mode (DESIGN 2.5): positions drawn uniformly with replacement -> scoring windows.

`n` positions are drawn from `[0, m)` with `numpy.random.default_rng([seed, SAMPLE_STREAM])`,
a random stream of its own (the seed and `n` must be fixed before training). Each position is
mapped to the window that SCORES it (never a window that only uses it as context); repeated
draws are kept in draw order. A window w is therefore drawn with probability `n_scored[w] / m`,
so the window mean `Y_j` of a drawn window satisfies `E[Y_j] = (1/m) sum_i X_i` exactly.
"""

from __future__ import annotations

import numpy as np

from tokenbound.errors import UserError
from tokenbound.evaluation.windows import scoring_window

#: Fixed tag of the sampling stream: `default_rng([seed, SAMPLE_STREAM])` (never reused).
SAMPLE_STREAM = 0x70B0_5A3D

#: Tag of the stream that assigns shards to ranks (distributed evaluation).
SHARD_STREAM = 0x70B0_D157


def draw_positions(n_samples: int, n_tokens: int, seed: int) -> np.ndarray:
    """int64 (n,): n positions uniform on [0, m), with replacement, in draw order."""
    if n_samples < 1:
        raise UserError(f"--samples must be >= 1 in sampled mode (got {n_samples})")
    if n_tokens < 1:
        raise UserError("the stream has no tokens to sample from")
    rng = np.random.default_rng([int(seed), SAMPLE_STREAM])
    return rng.integers(0, n_tokens, size=int(n_samples), dtype=np.int64)


def draw_windows(n_samples: int, doc_offsets: np.ndarray, context_len: int, stride: int,
                 seed: int) -> np.ndarray:
    """int64 (n,): the scoring window of each drawn position, in draw order, repeats kept."""
    off = np.asarray(doc_offsets, dtype=np.int64)
    pos = draw_positions(n_samples, int(off[-1]), seed)
    return scoring_window(pos, off, context_len, stride)
