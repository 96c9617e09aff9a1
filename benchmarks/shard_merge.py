"""Benchmark of the end-of-evaluation shard merge (issue 20): the pairwise fold that
`WindowStats.merge_all` used to do (quadratic: every step copies what was merged so far)
against the linear merge (one concatenation per field), on synthetic shards shaped like a
real run's (64 windows, 8 alphas x 2 centers, 3 top-k, 128 betting lambdas, 5 documents each,
one document shared with the next shard). Checks that both give identical arrays.

    PYTHONPATH=src .venv/bin/python benchmarks/shard_merge.py [--shards 200 800]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from tokenbound.evaluation.stats import WindowStats


def shard(rng, i: int, w: int = 64) -> WindowStats:
    ws = WindowStats(np.arange(w) + w * i, rng.integers(1, 1024, w),
                     *(rng.standard_normal((w,) + s) for s in
                       [(8,), (8,), (8, 2), (8, 2), (), (3,), (3,), (3,)]),
                     meta={"vocab_size": 256, "alphas": [0.1]})
    ws.betting = rng.standard_normal((8, 2, 128))
    ws.topk_betting = rng.standard_normal((3, 128))
    ids = np.arange(4 * i, 4 * i + 5)
    ws.doc_ids, ws.doc_n = ids, rng.integers(1, 9, 5)
    ws.doc_sum_x = rng.standard_normal((5, 8))
    ws.doc_sum_err = rng.standard_normal((5, 3))
    return ws


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shards", type=int, nargs="+", default=[200, 800])
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    for n in args.shards:
        parts = [shard(rng, i) for i in range(n)]
        t = time.perf_counter()
        fold = parts[0]
        for p in parts[1:]:
            fold = fold.merge(p)
        t_fold = time.perf_counter() - t
        t = time.perf_counter()
        lin = WindowStats.merge_all(parts)
        t_lin = time.perf_counter() - t
        same = all(np.array_equal(getattr(fold, f), getattr(lin, f))
                   for f in ("window_ids", "sum_x", "sum_dev2", "betting", "doc_ids",
                             "doc_sum_x", "doc_n"))
        print(f"| {n} | {t_fold:.3f} | {t_lin:.3f} | {'yes' if same else 'NO'} |")


if __name__ == "__main__":
    main()
