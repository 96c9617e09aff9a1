"""Benchmark of tokenbound.compression (issue 4).

1. Speed: quantize (uniform, k-means) and ANS-encode/decode 10 million values at 11 levels;
   coded bits vs the empirical entropy.
2. With --run RUN (a finished `tokenbound train` run): the table of bits per trained parameter
   and training-loss increase (bits/token, estimate_loss on fixed seeded windows) for
   levels 3..17, uniform and k-means, model grouping, no QAT.

    .venv/bin/python benchmarks/compression_speed.py [--n 10000000] [--run RUN]

Prints markdown rows to paste into benchmarks/results/compression.md.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np


def _timed(fn, *a):
    t = time.perf_counter()
    out = fn(*a)
    return out, time.perf_counter() - t


def speed(n: int, levels: int = 11, seed: int = 0) -> None:
    from tokenbound.compression import QuantConfig
    from tokenbound.compression.entropy import (decode_symbols, empirical_entropy_bits,
                                                encode_symbols, symbol_counts)
    from tokenbound.compression.quantize import kmeans_quantizer, uniform_quantizer

    values = np.random.default_rng(seed).standard_normal(n)  # (n,) float64, weight-like
    print(f"machine: {platform.processor() or platform.machine()}, python "
          f"{platform.python_version()}, n = {n:,} values, L = {levels}\n")
    print("| step | seconds | values/s |\n|---|---|---|")
    (cb, sym), t_u = _timed(uniform_quantizer, values, QuantConfig(levels=levels))
    print(f"| uniform quantize | {t_u:.2f} | {n / t_u:,.0f} |")
    _, t_k = _timed(kmeans_quantizer, values, QuantConfig(levels=levels, method="kmeans"))
    print(f"| k-means quantize (<= 50 Lloyd iterations) | {t_k:.2f} | {n / t_k:,.0f} |")
    counts = symbol_counts(sym, levels)
    words, t_e = _timed(encode_symbols, sym, counts)
    print(f"| ANS encode | {t_e:.2f} | {n / t_e:,.0f} |")
    dec, t_d = _timed(decode_symbols, words, counts)
    print(f"| ANS decode | {t_d:.2f} | {n / t_d:,.0f} |")
    assert np.array_equal(dec, sym)
    ideal = empirical_entropy_bits(counts)
    coded = 32 * len(words)
    print(f"\ncoded {coded:,} bits = {coded / n:.6f} bits/value; empirical entropy "
          f"{ideal:,.0f} bits ({ideal / n:.6f}); overhead {100 * (coded / ideal - 1):.4f} %")


def table(run: str, eval_batches: int, batch_size: int) -> None:
    from tokenbound.compression import QuantConfig, decode, encode, quantize_
    from tokenbound.training import estimate_loss, load_run
    from tokenbound.training.run import open_data

    model, cfg, info = load_run(run)
    stream, _ = open_data(info["config"]["data"])
    ctx = int(info["config"].get("context_len") or cfg.context_len)
    base = estimate_loss(model, stream, ctx, eval_batches, batch_size, 1234)
    print(f"\nrun {run}: unquantized loss {base:.4f} bits/token\n")
    print("| method | L | total bits | bits/param | loss after | increase |")
    print("|---|---|---|---|---|---|")
    for method in ("uniform", "kmeans"):
        for levels in range(3, 18):
            model, cfg, _ = load_run(run)
            qstate = quantize_(model, QuantConfig(levels=levels, method=method))
            msg = encode(model, cfg, qstate)
            model, _, dinfo = decode(msg)  # score the decoded model
            after = estimate_loss(model, stream, ctx, eval_batches, batch_size, 1234)
            n = dinfo["trained_parameters"]
            print(f"| {method} | {levels} | {8 * len(msg):,} | {8 * len(msg) / n:.4f} | "
                  f"{after:.4f} | {after - base:+.4f} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=10_000_000, help="values for the speed test")
    p.add_argument("--run", help="training run for the levels 3..17 table")
    p.add_argument("--eval-batches", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=8)
    args = p.parse_args()
    speed(args.n)
    if args.run:
        table(args.run, args.eval_batches, args.batch_size)


if __name__ == "__main__":
    main()
