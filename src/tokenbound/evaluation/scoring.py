"""Score evaluation windows with any causal LM callable `(B, T) int64 -> (B, T, V) logits`.

Every forward pass has the same shape `(batch_size, L)`: windows shorter than `L` (a
document's last window, short documents) are right-padded, and the last batch is filled up with
copies of its first window, whose outputs are discarded. Kernels choose their blocking by shape,
so a window run at another length or batch size can round differently in the last bits; with
one shape, each token's statistics are a function of its own context only, bitwise, whatever
the document's length and the batch composition (METHOD 3 and 7.1). The model runs under
`torch.inference_mode()`; per-token statistics use an fp32 log-softmax whatever the model dtype
(`token_stats`), float64 sums.
"""

from __future__ import annotations

import logging
from typing import Callable

import numpy as np
import torch

from tokenbound.bounds.grids import ALPHA_GRID, TOPK
from tokenbound.evaluation.fused import stats_fn
from tokenbound.evaluation.stats import WindowStats, betting_sums
from tokenbound.evaluation.token_stats import TokenStats
from tokenbound.evaluation.windows import Windows, padded_inputs

log = logging.getLogger(__name__)

ModelFn = Callable[[torch.Tensor], torch.Tensor]


def fixed_batches(idx: np.ndarray, batch_size: int) -> list[tuple[np.ndarray, int]]:
    """Split window indices `idx` (in order) into batches of exactly `batch_size` windows.

    Returns `(batch, n_real)` pairs: the last batch is filled up to `batch_size` with copies of
    its first window, and only its first `n_real` windows are scored.
    """
    idx = np.asarray(idx, dtype=np.int64)
    out = []
    for i in range(0, idx.size, batch_size):
        b = idx[i:i + batch_size]
        n_real = b.size
        if n_real < batch_size:
            b = np.concatenate([b, np.full(batch_size - n_real, b[0], dtype=np.int64)])
        out.append((b, n_real))
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
        return stats_fn(stats, flat.is_cuda, vocab_chunk)(flat, tgt, ALPHA_GRID, TOPK)


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
    parts = []
    for b, n_real in fixed_batches(idx, batch_size):
        inputs, targets = padded_inputs(tokens, doc_offsets, start_id, windows, b, start_id)
        b = b[:n_real]
        ts = _forward_scored(model_fn, inputs, targets, windows.score_offset[b],
                             windows.n_scored[b], device, vocab_chunk, vocab_size, stats)
        n_tok = int(windows.n_scored[b].sum())
        if ts.x.shape[0] != n_tok:
            raise RuntimeError("scored token count mismatch")
        parts.append(ts)
        if on_batch is not None:
            on_batch(n_tok)
    return TokenStats.concat(parts)


def score_windows(model_fn: ModelFn, tokens: np.ndarray, doc_offsets: np.ndarray,
                  start_id: int, windows: Windows, idx: np.ndarray, meta: dict, *,
                  batch_size: int = 8, device: str = "cpu", exact: bool = False,
                  vocab_chunk: int | None = None,
                  on_batch: Callable[[int], None] | None = None,
                  stats: str = "auto",
                  on_tokens: Callable[[TokenStats], None] | None = None) -> WindowStats:
    """Score windows `idx` (sorted ascending in the result) and return their WindowStats.

    With `exact=True` the shard-level betting sums and per-document sums are added (over the
    windows of `idx` only; the caller merges shards). `on_batch(n_tokens)` is called after each
    batch (progress bars). `meta` comes from `stats_meta` (its vocab size must be the model's).
    `on_tokens(ts)` receives the per-token statistics of the windows (`score_tokens` order;
    `ts.logp` is ln p(target), the per-token export of `export.py`).
    """
    idx = np.unique(np.asarray(idx, dtype=np.int64))
    ts = score_tokens(model_fn, tokens, doc_offsets, start_id, windows, idx,
                      batch_size=batch_size, device=device, vocab_chunk=vocab_chunk,
                      on_batch=on_batch, vocab_size=meta["vocab_size"], stats=stats)
    if on_tokens is not None:
        on_tokens(ts)
    if ts.x.shape[1] != len(meta["alphas"]):
        raise ValueError("meta grids do not match the scored grids")
    ws = WindowStats.from_tokens(ts, idx, windows.n_scored[idx], meta)
    if exact:
        ws.betting, ws.topk_betting = betting_sums(ts, meta)
        _add_doc_sums(ws, ts, windows.doc[idx], windows.n_scored[idx])
    return ws


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
