"""How big and how long an evaluation is, before it starts (issue 17: defaults that fit a CPU).

`engine.evaluate(..., on_estimate=f)` calls `f(est)` after its checks and before it scores,
with the run's own plan (windows, shards, fixed batches; finished shards skipped), and again
after the first batch with its time (every batch has the same shape `(batch_size, L)`, so it
times the others; no extra pass), so that a command says "N forward passes, about T" early. `CPU_CONTEXT` is the default
window length of `tokenbound evaluate` on a CPU (the model's maximum on CUDA).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

from typing import Callable

import numpy as np

from tokenbound.evaluation.windows import Windows

log = logging.getLogger(__name__)

CPU_CONTEXT = 1024
"""Default --context on a CPU: min(model maximum, CPU_CONTEXT) (a forward pass grows ~L^2)."""
LONG_S = 600.0
"""An evaluation estimated longer than this (seconds) is worth a warning on a CPU."""


def default_context(max_context: int | None, device: str) -> int | None:
    """The window length used when none is given: the model's maximum on CUDA, at most
    `CPU_CONTEXT` elsewhere; None when the model does not state its maximum."""
    if max_context is None or str(device).startswith("cuda"):
        return max_context
    return min(int(max_context), CPU_CONTEXT)


@dataclass
class Estimate:
    """Counts of one evaluation: windows and tokens scored, fixed-shape forward passes of
    `batch_size` windows, what is left (`todo_*`), and seconds of one timed pass (or None)."""

    n_windows: int
    n_tokens: int
    n_passes: int
    todo_tokens: int
    todo_passes: int
    batch_size: int
    seconds_per_pass: float | None = None

    @property
    def seconds(self) -> float | None:
        """Estimated seconds of what is left (None if not timed)."""
        if self.seconds_per_pass is None:
            return None
        return self.todo_passes * self.seconds_per_pass

    def describe(self, context_len: int, device: str) -> str:
        """One line for the user (the command prints it on stderr): the counts before scoring,
        the time once the first batch is timed."""
        if self.seconds is not None:
            return (f"evaluate: first forward pass {self.seconds_per_pass:.2f} s on {device}: "
                    f"about {_duration(self.seconds)} for the {self.todo_passes:,} passes")
        text = (f"evaluate: {self.n_tokens:,} tokens in {self.n_windows:,} windows of "
                f"L={context_len}, {self.n_passes:,} forward passes of {self.batch_size}")
        if self.todo_passes < self.n_passes:
            text += f" ({self.todo_passes:,} left; finished shards are kept)"
        return text


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def estimate(windows: Windows, shards: list[np.ndarray], todo: list[int],
             batch_size: int) -> Estimate:
    """Counts of a planned evaluation (`engine.plan`: windows, shards of window ids; `todo`
    the shards left to score) in fixed batches of `batch_size`; not timed yet."""
    passes = [math.ceil(len(s) / batch_size) for s in shards]
    return Estimate(n_windows=int(sum(len(s) for s in shards)),
                    n_tokens=int(sum(windows.n_scored[s].sum() for s in shards)),
                    n_passes=sum(passes), todo_passes=sum(passes[i] for i in todo),
                    todo_tokens=int(sum(windows.n_scored[shards[i]].sum() for i in todo)),
                    batch_size=int(batch_size))


def timed_batches(est: Estimate | None, on_estimate: Callable[[Estimate], None] | None,
                  on_batch: Callable[[int], None] | None) -> Callable[[int], None] | None:
    """The scoring loop's per-batch callback: `on_batch(n_tokens)` (a progress bar) and, after
    the first batch, `on_estimate(est)` with `est.seconds_per_pass` = that batch's time (forward
    pass and statistics; no extra pass is run)."""
    if est is None or on_estimate is None:
        return on_batch
    t0, first = time.perf_counter(), [True]

    def tick(n_tokens: int) -> None:
        if on_batch is not None:
            on_batch(n_tokens)
        if first[0]:
            first[0] = False
            est.seconds_per_pass = time.perf_counter() - t0
            on_estimate(est)
    return tick


def warn_if_long(est: Estimate, context_len: int, device: str,
                 what: str = "evaluation") -> None:
    """Log a warning with the estimate when it exceeds `LONG_S` on a CPU."""
    if est.seconds is not None and est.seconds > LONG_S and not str(device).startswith("cuda"):
        log.warning("%s: about %s on %s (%s tokens, %s forward passes of %d x %d); fewer "
                    "n_samples or a shorter context_len finish sooner", what,
                    _duration(est.seconds), device, f"{est.todo_tokens:,}",
                    f"{est.todo_passes:,}", est.batch_size, context_len)
