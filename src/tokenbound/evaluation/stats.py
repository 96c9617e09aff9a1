"""Mergeable per-window sums (METHOD 2.4, 2.5, 3): what the bounds consume.

Per scored window w (float64; A alphas, C centers, K top-k values):

    n_scored[w]                       tokens scored by the window
    sum_x[w, A]        sum_i X_i            X_i = clip(-log2 q(x_i) - a, 0, c)
    sum_x2[w, A]       sum_i X_i^2
    sum_center[w, A, C]                 sum_i Xhat_i   (centers "entropy", "expected")
    sum_dev2[w, A, C]  sum_i (X_i - Xhat_i)^2
    sum_bits[w]        sum_i -log2 p(x_i)   (unsmoothed, bits; may be inf)
    topk_err[w, K], topk_center[w, K], topk_dev2[w, K]: the same for top-k errors (c = 1)

Exact mode adds (summed over shards, not per window):

    betting[A, C, Lam]   sum_i ln1p(lam xi_i), xi_i = (Xhat_i - X_i) / c  (BETTING_LAMBDAS)
    topk_betting[K, Lam] sum_i ln1p(lam (center_i - err_i))
    doc_ids[Dt], doc_sum_x[Dt, A], doc_sum_err[Dt, K], doc_n[Dt]   per-document sums (for the
        document-level bound) of the Dt documents touched, ids ascending; a document split
        over shards is summed by `merge`. `doc_n` counts its scored tokens.

Sampled mode adds `draws` (n,): the window scoring each drawn position, in draw order, with
repeats; `sample_arrays()` gives Y[j, A] (window mean of X), W[j, A, C] (window mean of
(X - Xhat)^2) and their top-k equivalents, in draw order (the i.i.d. order; never sort them).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields

import numpy as np

from tokenbound.bounds.basics import LN2, smoothing
from tokenbound.evaluation.token_stats import TokenStats
from tokenbound.fileio import atomic_open

WINDOW_FIELDS = ("window_ids", "n_scored", "sum_x", "sum_x2", "sum_center", "sum_dev2",
                 "sum_bits", "topk_err", "topk_center", "topk_dev2")
OPTIONAL_FIELDS = ("betting", "topk_betting", "doc_ids", "doc_sum_x", "doc_sum_err", "doc_n",
                   "draws")
DOC_FIELDS = ("doc_sum_x", "doc_sum_err", "doc_n")


@dataclass
class WindowStats:
    """Per-window sums (see the module docstring); `meta` holds the grids and vocab size."""

    window_ids: np.ndarray
    n_scored: np.ndarray
    sum_x: np.ndarray
    sum_x2: np.ndarray
    sum_center: np.ndarray
    sum_dev2: np.ndarray
    sum_bits: np.ndarray
    topk_err: np.ndarray
    topk_center: np.ndarray
    topk_dev2: np.ndarray
    meta: dict = field(default_factory=dict)
    betting: np.ndarray | None = None
    topk_betting: np.ndarray | None = None
    doc_ids: np.ndarray | None = None
    doc_sum_x: np.ndarray | None = None
    doc_sum_err: np.ndarray | None = None
    doc_n: np.ndarray | None = None
    draws: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.window_ids.shape[0])

    # ---- construction -------------------------------------------------------------------
    @staticmethod
    def from_tokens(ts: TokenStats, window_ids: np.ndarray, n_scored: np.ndarray,
                    meta: dict) -> "WindowStats":
        """Sum per-token stats (tokens grouped by window, in window order) per window."""
        starts = np.concatenate([[0], np.cumsum(n_scored)[:-1]]).astype(np.int64)

        def red(a):  # (N, ...) -> (W, ...) float64 sums per window
            return np.add.reduceat(a, starts, axis=0) if len(starts) else a[:0]

        bits = -ts.logp / LN2
        dev = ts.x[:, :, None] - ts.center  # (N, A, C)
        kdev = ts.topk_err - ts.topk_center  # (N, K)
        return WindowStats(np.asarray(window_ids, np.int64), np.asarray(n_scored, np.int64),
                           red(ts.x), red(ts.x ** 2), red(ts.center), red(dev ** 2), red(bits),
                           red(ts.topk_err), red(ts.topk_center), red(kdev ** 2), dict(meta))

    def merge(self, other: "WindowStats") -> "WindowStats":
        """Concatenate windows and add the shard-level sums (self first: deterministic)."""
        if _grid_meta(self.meta) != _grid_meta(other.meta):
            raise ValueError("cannot merge WindowStats with different grids or vocabularies")
        kw = {f: np.concatenate([getattr(self, f), getattr(other, f)]) for f in WINDOW_FIELDS}
        for f in ("betting", "topk_betting"):
            a, b = getattr(self, f), getattr(other, f)
            kw[f] = b if a is None else (a if b is None else a + b)
        kw["draws"] = self.draws if self.draws is not None else other.draws
        kw.update(_merge_docs(self, other))
        return WindowStats(meta=dict(self.meta), **kw)

    @staticmethod
    def merge_all(parts: list["WindowStats"]) -> "WindowStats":
        """`parts[0].merge(parts[1]).merge(parts[2])...` in linear time: one concatenation per
        field; the shard-level and per-document sums are added in the same left-to-right
        order, so the result is bitwise that of the pairwise merges."""
        first = parts[0]
        if any(_grid_meta(p.meta) != _grid_meta(first.meta) for p in parts[1:]):
            raise ValueError("cannot merge WindowStats with different grids or vocabularies")
        kw = {f: np.concatenate([getattr(p, f) for p in parts]) for f in WINDOW_FIELDS}
        for f in ("betting", "topk_betting"):
            acc = None
            for p in parts:
                b = getattr(p, f)
                acc = b if acc is None else (acc if b is None else acc + b)
            kw[f] = acc
        kw["draws"] = next((p.draws for p in parts if p.draws is not None), None)
        kw.update(_merge_docs_all(parts))
        return WindowStats(meta=dict(first.meta), **kw)

    # ---- results --------------------------------------------------------------------------
    def totals(self) -> dict:
        """Float64 totals over all windows (each window counted once, not per draw)."""
        n = int(self.n_scored.sum())
        out = {"n_tokens": n, "n_windows": len(self)}
        for f in WINDOW_FIELDS[2:]:
            out[f] = getattr(self, f).sum(axis=0)
        out["mean_x"] = out["sum_x"] / max(n, 1)
        out["mean_loss_bits"] = out["mean_x"] + np.array(self.meta.get("a", 0.0))
        out["mean_bits"] = out["sum_bits"] / max(n, 1)
        out["topk_mean_err"] = out["topk_err"] / max(n, 1)
        return out

    def sample_arrays(self) -> dict:
        """Per-draw arrays in draw order (sampled mode): Y (n, A), W (n, A, C), Yk, Wk (n, K)."""
        if self.draws is None:
            raise ValueError("sample_arrays needs a sampled-mode WindowStats (draws is None)")
        order = np.argsort(self.window_ids, kind="stable")
        pos = order[np.searchsorted(self.window_ids[order], self.draws)]
        if not np.array_equal(self.window_ids[pos], self.draws):
            raise ValueError("some drawn windows were not scored")
        k = self.n_scored[pos].astype(np.float64)
        return {"Y": self.sum_x[pos] / k[:, None], "W": self.sum_dev2[pos] / k[:, None, None],
                "Yk": self.topk_err[pos] / k[:, None], "Wk": self.topk_dev2[pos] / k[:, None],
                "window": self.draws.copy(), "n_scored": self.n_scored[pos]}

    # ---- files ----------------------------------------------------------------------------
    def save(self, path: str) -> None:
        """Atomic write of one .npz (arrays + a JSON `meta_json` string; no pickles)."""
        arrays = {f: getattr(self, f) for f in WINDOW_FIELDS + OPTIONAL_FIELDS
                  if getattr(self, f) is not None}
        arrays["meta_json"] = np.array(json.dumps(self.meta, sort_keys=True))
        with atomic_open(path, "wb") as f:
            np.savez(f, **arrays)

    @staticmethod
    def load(path: str) -> "WindowStats":
        with np.load(path, allow_pickle=False) as z:
            kw = {f.name: z[f.name] for f in fields(WindowStats)
                  if f.name != "meta" and f.name in z.files}
            meta = json.loads(str(z["meta_json"]))
        return WindowStats(meta=meta, **kw)


def _merge_docs(x: WindowStats, y: WindowStats) -> dict:
    """Union of the per-document sums of x and y (documents split over shards are added)."""
    if x.doc_ids is None or y.doc_ids is None:
        src = x if x.doc_ids is not None else y
        return {f: getattr(src, f) for f in ("doc_ids",) + DOC_FIELDS}
    ids, inv = np.unique(np.concatenate([x.doc_ids, y.doc_ids]), return_inverse=True)
    out = {"doc_ids": ids}
    for f in DOC_FIELDS:
        vals = np.concatenate([getattr(x, f), getattr(y, f)])
        acc = np.zeros((ids.size,) + vals.shape[1:], dtype=vals.dtype)
        np.add.at(acc, inv, vals)
        out[f] = acc
    return out


def _merge_docs_all(parts: list[WindowStats]) -> dict:
    """`_merge_docs` folded over `parts`: one `np.unique` and one unbuffered `np.add.at` in
    concatenation order (each document's values are added left to right, as by the folds)."""
    have = [p for p in parts if p.doc_ids is not None]
    if len(have) <= 1:
        src = have[0] if have else parts[0]
        return {f: getattr(src, f) for f in ("doc_ids",) + DOC_FIELDS}
    ids, inv = np.unique(np.concatenate([p.doc_ids for p in have]), return_inverse=True)
    out = {"doc_ids": ids}
    for f in DOC_FIELDS:
        vals = np.concatenate([getattr(p, f) for p in have])
        acc = np.zeros((ids.size,) + vals.shape[1:], dtype=vals.dtype)
        np.add.at(acc, inv, vals)
        out[f] = acc
    return out


def _grid_meta(meta: dict) -> tuple:
    return tuple(json.dumps(meta.get(k), sort_keys=True)
                 for k in ("alphas", "topk", "centers", "betting_lambdas", "vocab_size"))


def stats_meta(vocab_size: int, alphas, topk, centers, lambdas) -> dict:
    """Grid description stored with every WindowStats (a and c per alpha included)."""
    ac = [smoothing(vocab_size, al) for al in alphas]
    return {"vocab_size": int(vocab_size), "alphas": [float(a) for a in alphas],
            "topk": [int(k) for k in topk], "centers": list(centers),
            "betting_lambdas": [float(x) for x in lambdas],
            "a": [x[0] for x in ac], "c": [x[1] for x in ac]}


def betting_sums(ts: TokenStats, meta: dict) -> tuple[np.ndarray, np.ndarray]:
    """(A, C, Lam) sums of ln1p(lam (Xhat - X) / c) and (K, Lam) for top-k (c = 1)."""
    lam = np.asarray(meta["betting_lambdas"])  # (Lam,)
    c = np.asarray(meta["c"])  # (A,)
    xi = (ts.center - ts.x[:, :, None]) / c[None, :, None]  # (N, A, C) in [-1, 1]
    A, C = xi.shape[1:]
    bet = np.empty((A, C, lam.size))
    for i in range(A):
        for j in range(C):
            bet[i, j] = np.log1p(xi[:, i, j][:, None] * lam[None, :]).sum(axis=0)
    kxi = ts.topk_center - ts.topk_err  # (N, K)
    kbet = np.stack([np.log1p(kxi[:, i][:, None] * lam[None, :]).sum(axis=0)
                     for i in range(kxi.shape[1])]) if kxi.shape[1] else np.empty((0, lam.size))
    return bet, kbet
