"""Sampled mode (METHOD 2.5): positions drawn uniformly with replacement -> scoring windows.

`n` positions are drawn from `[0, m)` with `numpy.random.default_rng([seed, SAMPLE_STREAM])`,
a random stream of its own (the seed and `n` must be fixed before training). Each position is
mapped to the window that SCORES it (never a window that only uses it as context); repeated
draws are kept in draw order. A window w is therefore drawn with probability `n_scored[w] / m`,
so the window mean `Y_j` of a drawn window satisfies `E[Y_j] = (1/m) sum_i X_i` exactly.
"""

from __future__ import annotations

import os

import numpy as np

from tokenbound.errors import UserError
from tokenbound.evaluation.windows import scoring_window

#: Fixed tag of the sampling stream: `default_rng([seed, SAMPLE_STREAM])` (never reused).
SAMPLE_STREAM = 0x70B0_5A3D

#: Tag of the stream that assigns shards to ranks (distributed evaluation).
SHARD_STREAM = 0x70B0_D157


#: Bytes of memory per drawn position: positions, windows and their sorted unique copy (int64).
BYTES_PER_DRAW = 24


def memory_bytes() -> int | None:
    """Physical memory of this machine in bytes (None where the OS does not say)."""
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def check_sample_size(n_samples: int) -> None:
    """UserError, before anything is allocated, when n draws need more than half of this
    machine's memory (`BYTES_PER_DRAW` each)."""
    mem = memory_bytes()
    need = BYTES_PER_DRAW * int(n_samples)
    if mem is not None and need > mem // 2:
        raise UserError(f"--samples {int(n_samples):,} needs about {need / 2**30:,.0f} GiB of "
                        f"memory for the draws (this machine has {mem / 2**30:,.0f} GiB); use "
                        f"at most {mem // 2 // BYTES_PER_DRAW:,} (the sampling term shrinks "
                        "like 1/sqrt(n): 10^5 to 10^7 draws are typical) or --mode exact")


def draw_positions(n_samples: int, n_tokens: int, seed: int) -> np.ndarray:
    """int64 (n,): n positions uniform on [0, m), with replacement, in draw order."""
    if n_samples < 1:
        raise UserError(f"--samples must be >= 1 in sampled mode (got {n_samples})")
    check_sample_size(n_samples)
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
