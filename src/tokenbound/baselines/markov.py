"""k-th order Markov chain baseline, bounded like a GPT (METHOD 4, last bullet).

Hypothesis (everything but the counts is fixed before the data is seen):
* context of position i of a document: the last k tokens of `[start_id] * k + doc[:i]` (never
  crosses a document boundary; the start token pads the beginning, like the evaluation's
  start token); k = 0 is the unigram model;
* prediction `p(y | ctx) = (n(ctx, y) + beta) / (n(ctx) + beta V)`, counts `n` taken on the
  training tokens themselves, additive smoothing `beta` a constant fixed in advance;
* then the usual prediction smoothing `q = (1 - alpha) p + alpha / V` over the alpha grid,
  applied by `tokenbound.evaluation.token_stats` exactly as for a GPT.

The counts are learned from the training data, so they are charged: `encode_counts` writes them
as an Elias-gamma bit stream (sparse: context gaps, symbol gaps, counts); the code length is
`C = 8 * len(message)` bits and `decode_counts` reads them back exactly.

Context ids: `ctx = sum_j tok_j V^(k-1-j)` (oldest token most significant); joint key
`ctx * V + y`. Both fit in int64 when `V^(k+1) < 2^62`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from tokenbound.errors import UserError

log = logging.getLogger(__name__)

BETA = 0.1  # additive smoothing of the counts, fixed in advance (not tuned on the data)


@dataclass(frozen=True)
class MarkovCounts:
    """Sparse counts of (context, next token) pairs, sorted by key = ctx * V + y.

    keys (P,) int64 ascending, counts (P,) int64 >= 1; P = number of distinct pairs seen.
    """

    order: int
    vocab_size: int
    keys: np.ndarray
    counts: np.ndarray

    @property
    def n_pairs(self) -> int:
        return int(self.keys.size)

    @property
    def n_contexts(self) -> int:
        return int(np.unique(self.keys // self.vocab_size).size)


def check_order(order: int, vocab_size: int) -> None:
    if order < 0:
        raise UserError(f"Markov order k must be >= 0 (got {order})")
    if (order + 1) * math.log2(vocab_size) >= 62:
        raise UserError(f"Markov order {order} with vocabulary {vocab_size} overflows int64 "
                        "context ids; use a smaller order")


def context_ids(tokens: np.ndarray, doc_offsets: np.ndarray, order: int, vocab_size: int,
                start_id: int) -> np.ndarray:
    """Context id (m,) int64 of every position of the stream (see the module docstring)."""
    tokens = np.asarray(tokens).astype(np.int64)  # (m,)
    m = tokens.size
    ctx = np.zeros(m, dtype=np.int64)
    if order == 0:
        return ctx
    doc_start = np.repeat(doc_offsets[:-1], np.diff(doc_offsets))  # (m,)
    pos = np.arange(m, dtype=np.int64)
    for back in range(1, order + 1):  # token `back` positions before, most recent last
        src = pos - back
        tok = np.where(src >= doc_start, tokens[np.maximum(src, 0)], start_id)
        ctx += tok * vocab_size ** (back - 1)
    return ctx


def fit_counts(tokens: np.ndarray, doc_offsets: np.ndarray, order: int, vocab_size: int,
               start_id: int) -> MarkovCounts:
    """Count every (context, next token) pair of the stream."""
    check_order(order, vocab_size)
    ctx = context_ids(tokens, doc_offsets, order, vocab_size, start_id)
    keys, counts = np.unique(ctx * vocab_size + np.asarray(tokens, np.int64), return_counts=True)
    return MarkovCounts(order, vocab_size, keys.astype(np.int64), counts.astype(np.int64))


def log_probs(counts: MarkovCounts, ctx: np.ndarray, beta: float = BETA) -> np.ndarray:
    """ln p(. | ctx) (N, V) float64 for context ids ctx (N,)."""
    V = counts.vocab_size
    uniq, inv = np.unique(np.asarray(ctx, np.int64), return_inverse=True)
    lo = np.searchsorted(counts.keys, uniq * V)
    hi = np.searchsorted(counts.keys, uniq * V + V)
    n = hi - lo  # (U,) nonzero entries per context
    dense = np.full((uniq.size, V), float(beta))  # (U, V)
    rows = np.repeat(np.arange(uniq.size), n)
    entry = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n) + np.repeat(lo, n)
    dense[rows, counts.keys[entry] % V] += counts.counts[entry]
    dense /= dense.sum(axis=1, keepdims=True)
    return np.log(dense)[inv]  # (N, V)


def train_bits(counts: MarkovCounts, tokens, doc_offsets, start_id: int,
               beta: float = BETA) -> float:
    """Mean -log2 p(x_i | ctx_i) over the stream (unsmoothed by alpha), bits per token."""
    V = counts.vocab_size
    ctx = context_ids(tokens, doc_offsets, counts.order, V, start_id)
    key = ctx * V + np.asarray(tokens, np.int64)
    n_xy = counts.counts[np.searchsorted(counts.keys, key)]  # every pair was counted
    lo = np.searchsorted(counts.keys, ctx * V)
    hi = np.searchsorted(counts.keys, ctx * V + V)
    csum = np.concatenate([[0], np.cumsum(counts.counts)])
    n_ctx = csum[hi] - csum[lo]
    return float(np.mean(np.log2(n_ctx + beta * V) - np.log2(n_xy + beta)))


# ---- the message: Elias-gamma bit stream --------------------------------------------------------
def gamma_bits(values: np.ndarray) -> np.ndarray:
    """Elias-gamma codes of positive integers, concatenated: (total bits,) uint8 of 0/1.

    The code of v with L = bit_length(v) is L - 1 zeros then v in L bits, i.e. v written
    MSB-first in 2L - 1 bits.
    """
    v = np.asarray(values, dtype=np.int64)
    if v.size and v.min() < 1:
        raise ValueError("Elias-gamma codes positive integers only")
    L = np.floor(np.log2(np.maximum(v, 1))).astype(np.int64) + 1
    L += (v >> np.minimum(L, 62)) > 0  # guard against float rounding of log2
    L -= (v >> np.maximum(L - 1, 0)) == 0
    w = 2 * L - 1
    total = int(w.sum())
    start = np.repeat(np.cumsum(w) - w, w)
    shift = np.repeat(w, w) - 1 - (np.arange(total) - start)
    return ((np.repeat(v, w) >> shift) & 1).astype(np.uint8)


class _GammaReader:
    def __init__(self, data: bytes):
        self.s = "".join(f"{b:08b}" for b in data)
        self.p = 0

    def read(self) -> int:
        q = self.s.find("1", self.p)
        if q < 0:
            raise ValueError("truncated Markov message")
        n = q - self.p + 1
        v = int(self.s[q:q + n], 2)
        self.p = q + n
        return v


def encode_counts(counts: MarkovCounts) -> bytes:
    """The counts as bytes: gamma(k+1), gamma(V), gamma(#contexts + 1), context gaps,
    symbols per context, symbol gaps within each context, counts (all Elias-gamma)."""
    V = counts.vocab_size
    ctx, sym = counts.keys // V, counts.keys % V
    uctx, first, per = np.unique(ctx, return_index=True, return_counts=True)
    prev_ctx = np.concatenate([[-1], uctx[:-1]])
    prev_sym = np.concatenate([[-1], sym[:-1]])
    prev_sym[first] = -1  # symbol gaps restart in each context
    parts = [np.array([counts.order + 1, V, uctx.size + 1]), uctx - prev_ctx, per,
             sym - prev_sym, counts.counts]
    return np.packbits(gamma_bits(np.concatenate(parts))).tobytes()


def decode_counts(data: bytes) -> MarkovCounts:
    """Inverse of `encode_counts`."""
    r = _GammaReader(data)
    order, V, n_ctx = r.read() - 1, r.read(), r.read() - 1
    uctx = np.cumsum([r.read() for _ in range(n_ctx)]) - 1
    per = np.array([r.read() for _ in range(n_ctx)], dtype=np.int64)
    sym = np.empty(int(per.sum()), dtype=np.int64)
    i = 0
    for n in per:
        prev = -1
        for _ in range(n):
            prev += r.read()
            sym[i] = prev
            i += 1
    cnt = np.array([r.read() for _ in range(sym.size)], dtype=np.int64)
    keys = np.repeat(np.asarray(uctx, np.int64), per) * V + sym
    return MarkovCounts(order, V, keys, cnt)


# ---- the bound ----------------------------------------------------------------------------------
def markov_token_sums(counts: MarkovCounts, tokens, doc_offsets, start_id: int, *,
                      beta: float = BETA, chunk: int = 8192, progress: bool = False) -> dict:
    """Exact-mode sums over every position, computed by `evaluation.token_stats` on the
    chain's log-probabilities (used as logits), exactly as the evaluator does for a GPT.

    Returns m, sum_x (A,), sum_center (A, C), sum_dev2 (A, C), betting (A, C, Lam),
    topk_err / topk_center / topk_dev2 (K,), sum_bits (unsmoothed -log2 p, float).
    """
    import torch
    from tqdm import tqdm

    from tokenbound.bounds.basics import LN2
    from tokenbound.bounds.grids import ALPHA_GRID, BETTING_LAMBDAS, CENTERS, TOPK
    from tokenbound.evaluation import token_stats
    from tokenbound.evaluation.stats import betting_sums, stats_meta

    V = counts.vocab_size
    meta = stats_meta(V, ALPHA_GRID, TOPK, CENTERS, BETTING_LAMBDAS)
    tokens = np.asarray(tokens, np.int64)
    ctx = context_ids(tokens, doc_offsets, counts.order, V, start_id)
    acc: dict = {}
    for s in tqdm(range(0, tokens.size, chunk), disable=not progress,
                  desc=f"markov k={counts.order}"):
        lp = torch.from_numpy(log_probs(counts, ctx[s:s + chunk], beta))  # (n, V)
        ts = token_stats(lp, torch.from_numpy(tokens[s:s + chunk]))
        bet, _ = betting_sums(ts, meta)
        dev = ts.x[:, :, None] - ts.center  # (n, A, C)
        part = {"sum_x": ts.x.sum(0), "sum_center": ts.center.sum(0),
                "sum_dev2": (dev ** 2).sum(0), "betting": bet,
                "topk_err": ts.topk_err.sum(0), "topk_center": ts.topk_center.sum(0),
                "topk_dev2": ((ts.topk_err - ts.topk_center) ** 2).sum(0),
                "sum_bits": float(-ts.logp.sum() / LN2)}
        for k, v in part.items():
            acc[k] = v if k not in acc else acc[k] + v
    acc["m"] = int(tokens.size)
    return acc


def certify_markov(sums: dict, vocab_size: int, code_bits: int, delta: float = 0.05) -> dict:
    """Token-level loss and top-1 error certificates (same functions as for a GPT)."""
    from tokenbound import bounds as B
    from tokenbound.bounds.grids import TOPK

    m = sums["m"]
    tok = B.certify_exact(m, sums["sum_x"], sums["sum_center"], sums["sum_dev2"],
                          sums["betting"], vocab_size=vocab_size, code_bits=int(code_bits),
                          delta=delta)
    i1 = TOPK.index(1)
    top1 = B.certify_topk_exact(m, sums["topk_err"][i1], sums["topk_center"][i1],
                                sums["topk_dev2"][i1], k=1, vocab_size=vocab_size,
                                code_bits=int(code_bits), delta=delta)
    return {"token": tok.best.to_dict(), "top1": top1.best.to_dict(),
            "mean_bits": sums["sum_bits"] / m, "top1_error": float(sums["topk_err"][i1] / m)}
