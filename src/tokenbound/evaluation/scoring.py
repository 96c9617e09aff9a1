"""Score evaluation windows with any causal LM callable `(B, T) int64 -> (B, T, V) logits`.

Windows are batched only with windows of the SAME input length (sorted by length, no padding),
so every logits row is exactly what the model gives for that window alone, up to the model's
own batch-size numerics. The model runs under `torch.inference_mode()`; per-token statistics
use an fp32 log-softmax whatever the model dtype (`token_stats`), float64 sums.
"""

from __future__ import annotations

import contextlib

import logging
from typing import Callable

import numpy as np
import torch

from tokenbound.bounds.grids import ALPHA_GRID, TOPK
from tokenbound.evaluation.fused import stats_fn
from tokenbound.evaluation.stats import WindowStats, betting_sums
from tokenbound.evaluation.token_stats import TokenStats
from tokenbound.evaluation.windows import Windows, window_inputs

log = logging.getLogger(__name__)

ModelFn = Callable[[torch.Tensor], torch.Tensor]


def length_batches(windows: Windows, idx: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Split window indices `idx` into batches of equal input length, deterministic order.

    Sorted by (input length descending, window index); each batch holds <= batch_size windows.
    """
    idx = np.asarray(idx, dtype=np.int64)
    order = np.lexsort((idx, -windows.input_len[idx]))
    idx = idx[order]
    lens = windows.input_len[idx]
    cuts = np.flatnonzero(np.diff(lens)) + 1
    out = []
    for group in np.split(idx, cuts):
        out.extend(group[i:i + batch_size] for i in range(0, group.size, batch_size))
    return out


def _forward_scored(model_fn: ModelFn, inputs: np.ndarray, targets: np.ndarray,
                    offsets: np.ndarray, counts: np.ndarray, device: str,
                    vocab_chunk: int | None, vocab_size: int | None,
                    stats: str = "auto") -> TokenStats:
    """Token stats of the scored predictions of one equal-length batch, in window order."""
    with torch.inference_mode():
        logits = model_fn(torch.from_numpy(inputs).to(device))  # (B, T, V)
        B, T, V = logits.shape
        if vocab_size is not None and V != vocab_size:
            raise ValueError(f"model returned {V} logits per token, expected {vocab_size}")
        rows = np.concatenate([b * T + np.arange(o, o + k)
                               for b, (o, k) in enumerate(zip(offsets, counts))])  # (N,)
        flat = logits.reshape(B * T, V)  # (B * T, V); a view: no copy when all rows count
        if rows.size != B * T:
            flat = flat[torch.from_numpy(rows).to(logits.device)]  # (N, V)
        tgt = torch.from_numpy(targets.reshape(-1)[rows])  # (N,)
        with _flush_denormals(not flat.is_cuda):
            return stats_fn(stats, flat.is_cuda, vocab_chunk)(flat, tgt, ALPHA_GRID, TOPK)


@contextlib.contextmanager
def _flush_denormals(on: bool):
    """Flush subnormal floats to zero on the CPU while computing statistics.

    A confident model puts probabilities below 1e-38 on most tokens; arithmetic on such
    subnormal float32 values is ~10x slower on x86 and made the statistics cost more than the
    forward pass. Flushing changes probabilities by less than 1.2e-38 each (the centers by far
    less than their float32 rounding); the target's loss comes from the log-softmax in log space
    and is unaffected. The previous mode (off by default) is restored afterwards.
    """
    if not on:
        yield
        return
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


def score_tokens(model_fn: ModelFn, tokens: np.ndarray, doc_offsets: np.ndarray,
                 start_id: int, windows: Windows, idx: np.ndarray, *, batch_size: int = 8,
                 device: str = "cpu", vocab_chunk: int | None = None,
                 on_batch: Callable[[int], None] | None = None,
                 vocab_size: int | None = None, stats: str = "auto") -> TokenStats:
    """Per-token statistics of the tokens scored by windows `idx` (unique, ascending).

    Tokens come window by window in ascending window order, each window's in stream order
    (positions `first_scored[w] + arange(n_scored[w])`). If `vocab_size` is given, the logits
    width must equal it (the smoothing range c depends on V). `stats` picks the statistics
    implementation (`fused.stats_fn`: "auto" = fused kernel on CUDA, `token_stats` on CPU).
    """
    idx = np.unique(np.asarray(idx, dtype=np.int64))
    if idx.size == 0:
        raise ValueError("score_tokens needs at least one window")
    parts: dict[int, TokenStats] = {}
    for b in length_batches(windows, idx, batch_size):
        inputs, targets = window_inputs(tokens, doc_offsets, start_id, windows, b)
        ts = _forward_scored(model_fn, inputs, targets, windows.score_offset[b],
                             windows.n_scored[b], device, vocab_chunk, vocab_size, stats)
        starts = np.concatenate([[0], np.cumsum(windows.n_scored[b])])
        if ts.x.shape[0] != starts[-1]:
            raise RuntimeError("scored token count mismatch")
        for w, s0, s1 in zip(b, starts[:-1], starts[1:]):
            parts[int(w)] = _slice(ts, s0, s1)
        if on_batch is not None:
            on_batch(int(starts[-1]))
    return TokenStats.concat([parts[int(w)] for w in idx])


def score_windows(model_fn: ModelFn, tokens: np.ndarray, doc_offsets: np.ndarray,
                  start_id: int, windows: Windows, idx: np.ndarray, meta: dict, *,
                  batch_size: int = 8, device: str = "cpu", exact: bool = False,
                  vocab_chunk: int | None = None,
                  on_batch: Callable[[int], None] | None = None,
                  stats: str = "auto") -> WindowStats:
    """Score windows `idx` (sorted ascending in the result) and return their WindowStats.

    With `exact=True` the shard-level betting sums and per-document sums are added (over the
    windows of `idx` only; the caller merges shards). `on_batch(n_tokens)` is called after each
    batch (progress bars). `meta` comes from `stats_meta` (its vocab size must be the model's).
    """
    idx = np.unique(np.asarray(idx, dtype=np.int64))
    ts = score_tokens(model_fn, tokens, doc_offsets, start_id, windows, idx,
                      batch_size=batch_size, device=device, vocab_chunk=vocab_chunk,
                      on_batch=on_batch, vocab_size=meta["vocab_size"], stats=stats)
    if ts.x.shape[1] != len(meta["alphas"]):
        raise ValueError("meta grids do not match the scored grids")
    ws = WindowStats.from_tokens(ts, idx, windows.n_scored[idx], meta)
    if exact:
        ws.betting, ws.topk_betting = betting_sums(ts, meta)
        _add_doc_sums(ws, ts, windows.doc[idx], windows.n_scored[idx])
    return ws


def _slice(ts: TokenStats, s0: int, s1: int) -> TokenStats:
    return TokenStats(ts.logp[s0:s1], ts.x[s0:s1], ts.center[s0:s1], ts.topk_err[s0:s1],
                      ts.topk_center[s0:s1])


def _add_doc_sums(ws: WindowStats, ts: TokenStats, doc: np.ndarray,
                  n_scored: np.ndarray) -> None:
    """Sums of X (Dt, A), top-k errors (Dt, K) and counts (Dt,) of the documents touched."""
    ids, inv = np.unique(np.repeat(doc, n_scored), return_inverse=True)  # inv: (N,)
    ws.doc_ids = ids
    ws.doc_n = np.bincount(inv, minlength=ids.size).astype(np.int64)
    ws.doc_sum_x = np.zeros((ids.size, ts.x.shape[1]))
    ws.doc_sum_err = np.zeros((ids.size, ts.topk_err.shape[1]))
    np.add.at(ws.doc_sum_x, inv, ts.x)
    np.add.at(ws.doc_sum_err, inv, ts.topk_err)
