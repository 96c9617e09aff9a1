"""Scored tokens/s on this CPU: window scoring (s = L) vs one token per forward pass (s = 1),
and full scoring vs the bare forward pass at the same batch (issue 7: within 1.5x).

Same small GPT (tokenbound.models, untrained, seeded), same context L, same per-token statistics
(8 alphas x 2 centers, top-k), same batch size. s = 1 is the paper's exact sliding context: one
forward pass of L tokens per scored token. Writes benchmarks/results/scoring.md.

    .venv/bin/python benchmarks/cpu_scoring.py [--context 256] [--seconds 20]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import numpy as np
import torch

from tokenbound.evaluation.scoring import score_tokens
from tokenbound.evaluation.windows import make_windows, window_inputs
from tokenbound.models import GPTConfig, build_model

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from llm_scoring import peak_rss, write_results  # noqa: E402  (a sibling script)


def _rate(model, tokens, off, L, s, batch, budget_s):
    """Scored tokens/s over as many windows as fit in about budget_s seconds."""
    w = make_windows(off, L, s)
    done, t0, chunk = 0, time.perf_counter(), max(batch, 8)
    for i in range(0, len(w), chunk):
        idx = np.arange(i, min(i + chunk, len(w)))
        ts = score_tokens(model, tokens, off, 0, w, idx, batch_size=batch)
        done += ts.x.shape[0]
        if time.perf_counter() - t0 > budget_s:
            break
    return done / (time.perf_counter() - t0), done


def _forward_vs_scoring(model, tokens, off, L, batch, budget_s, stats="auto", rss=None):
    """(bare forward tokens/s, full scoring tokens/s): the same windows (s = L), same batch.

    Bare: `model(inputs)` only. Full: `score_tokens` (inputs, forward, per-token statistics,
    float64 results per window). Alternating rounds over all windows until budget_s is spent.
    With a dict `rss`, rss["bare"] and rss["scoring"] get the peak RSS sampled in each.
    """
    w = make_windows(off, L, L)
    idx = np.arange(len(w))
    batches = [idx[i:i + batch] for i in range(0, len(w), batch)]
    t_fwd = t_score = 0.0
    n = 0
    rss = {} if rss is None else rss
    t_end = time.perf_counter() + budget_s
    while time.perf_counter() < t_end or n == 0:
        t0 = time.perf_counter()
        with torch.inference_mode(), peak_rss(rss, "b"):
            for b in batches:
                model(torch.from_numpy(window_inputs(tokens, off, 0, w, b)[0]))
        t1 = time.perf_counter()
        with peak_rss(rss, "s"):
            score_tokens(model, tokens, off, 0, w, idx, batch_size=batch, stats=stats)
        t_fwd, t_score, n = t_fwd + t1 - t0, t_score + time.perf_counter() - t1, n + 1
        rss["bare"] = max(rss.get("bare", 0), rss.pop("b"))
        rss["scoring"] = max(rss.get("scoring", 0), rss.pop("s"))
    n_tok = int(w.n_scored.sum()) * n
    return n_tok / t_fwd, n_tok / t_score


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--context", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seconds", type=float, default=20.0, help="budget per mode")
    p.add_argument("--threads", type=int, default=1, help="torch threads (the CPU is shared)")
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results",
                                                 "scoring.md"))
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    load = os.getloadavg()[0]
    cfg = GPTConfig(vocab_size=256, context_len=a.context, n_layer=4, n_head=4, d_model=128)
    model = build_model(cfg).eval()
    L = a.context
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 256, size=L * 64).astype(np.uint16)  # one 64-window document
    off = np.array([0, tokens.size])
    rate_block, n_block = _rate(model, tokens, off, L, L, a.batch_size, a.seconds)
    rate_one, n_one = _rate(model, tokens, off, L, 1, a.batch_size, a.seconds)
    ratio = rate_block / rate_one
    rss: dict = {}
    fwd, full = _forward_vs_scoring(model, tokens, off, L, a.batch_size, a.seconds, rss=rss)
    _, fused = _forward_vs_scoring(model, tokens, off, L, a.batch_size, a.seconds / 2, "fused")
    n_win = len(make_windows(off, L, L))
    cmd = ".venv/bin/python benchmarks/cpu_scoring.py " + " ".join(sys.argv[1:])
    text = f"""# CPU scoring throughput: window scoring vs one token per forward pass

Command: `{cmd.strip()}`
Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs
(1-min load average {load:.1f} at start; it includes the tail of any job just finished), torch {torch.__version__}, {torch.get_num_threads()}
threads, {platform.platform()}.
Model: tokenbound GPT, 4 layers, d_model 128, 4 heads, V = 256 (untrained, seed 0);
context L = {L}; batch size {a.batch_size}; all statistics of `token_stats` (8 alphas x 2
centers, top-1/10/100) per scored token.

| evaluation | scored tokens | scored tokens/s |
|---|---:|---:|
| windows, s = L = {L} (block) | {n_block:,} | {rate_block:,.0f} |
| one token per forward pass (s = 1, the paper's sampling) | {n_one:,} | {rate_one:,.1f} |

Ratio: window scoring is **{ratio:,.0f}x** faster per scored token (ideal: about L = {L};
the per-token statistics cost is the same in both modes, the forward passes differ).

## Full scoring vs the bare forward pass (issue 7: within 1.5x)

Same model, same {n_win} windows (s = L), batch size {a.batch_size}; bare = `model(inputs)` only;
scoring = `score_tokens` (inputs, forward, all per-token statistics, float64 sums).

| pass | tokens/s | time relative to the bare forward |
|---|---:|---:|
| bare forward | {fwd:,.0f} | 1.00x |
| full scoring (default CPU statistics, `token_stats`) | {full:,.0f} | **{fwd / full:.2f}x** |
| full scoring (`--stats fused`: `token_stats_online`) | {fused:,.0f} | {fwd / fused:.2f}x |

Peak RSS sampled while running (the process, model included): bare forward
{rss["bare"] / 2**20:,.0f} MB, full scoring {rss["scoring"] / 2**20:,.0f} MB
({rss["scoring"] / rss["bare"]:.2f}x).
"""
    write_results(a.out, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
