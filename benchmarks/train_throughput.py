"""Training throughput (tokens/s) of the GPT parametrizations at the same width.

Trains the default byte-level GPT (4 layers, d_model 128, context 256, batch 32) with
`tokenbound.training.train` in 3 interleaved rounds of 10 steps per parametrization (the best
round kept) -- dense, LoRA, Kronecker, Monarch, dense + random subspace; bf16 autocast as
by default, plus dense in float32 for reference -- and writes a Markdown table with the
machine and the command to `benchmarks/results/training.md`.

    .venv/bin/python benchmarks/train_throughput.py [--steps 10] [--rounds 3] [--data DIR]

Without --data the tokens are random bytes (throughput does not depend on their values).
tokens/s counts every input position of every step (batch x seq-len), timed over the
optimizer steps only (the first steps' warm-up included), excluding evaluation.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from tokenbound.models import GPTConfig, build_model, param_counts
from tokenbound.training import TrainConfig, train

VARIANTS = [  # (label, GPTConfig changes, bf16)
    ("dense", {}, True),
    ("dense (float32)", {}, False),
    ("LoRA r=4", {"linear": "attn=lora,mlp=lora"}, True),
    ("Kronecker", {"linear": "attn=kronecker,mlp=kronecker"}, True),
    ("Monarch 4 blocks", {"linear": "attn=monarch,mlp=monarch"}, True),
    ("dense + subspace d=20,000", {"subspace_dim": 20_000}, True),
]


def synthetic_data(root: Path, n_tokens: int = 400_000, seed: int = 0) -> str:
    """A byte stream of random documents (lengths 200..5,000) in ROOT/train."""
    from tokenbound.data import write_stream

    rng = np.random.default_rng(seed)
    docs, total = [], 0
    while total < n_tokens:
        n = int(rng.integers(200, 5000))
        docs.append(rng.integers(0, 256, size=n))
        total += n
    meta = {"tokenizer": "bytes", "vocab_size": 256, "eot_id": None, "start_id": 10}
    write_stream(root / "train", docs, meta)
    return str(root)


def measure(label: str, changes: dict, bf16: bool, data: str, steps: int, work: Path) -> dict:
    """Train `steps` steps of one variant in a fresh run; return tokens/s and ms/step."""
    model_cfg = GPTConfig(**changes)
    out = work / f"{label.replace(' ', '_')}-{time.monotonic_ns()}"
    cfg = TrainConfig(data=data, out=str(out), model=model_cfg, steps=steps, eval_batches=0,
                      ckpt_interval=0, bf16=bf16, device="cpu")
    summary = train(cfg, progress=False)
    counts = param_counts(build_model(model_cfg))
    return {"label": label, "trained": counts["trained"], "total": counts["total"],
            "tokens_per_s": summary["tokens_per_s"],
            "step_ms": 1000 * summary["train_seconds"] / steps}


def best_of_rounds(variants, data: str, steps: int, rounds: int, work: Path) -> list[dict]:
    """Run the variants interleaved `rounds` times and keep each one's fastest round.

    On a shared machine the load of other jobs changes from minute to minute; interleaving
    and taking the best round compares the variants under similar (least-loaded) conditions.
    """
    best: dict[str, dict] = {}
    for r in range(rounds):
        for label, changes, bf16 in variants:
            row = measure(label, changes, bf16, data, steps, work)
            print(f"round {r + 1}: {label:28s} {row['tokens_per_s']:>9,.0f} tokens/s",
                  flush=True)
            if label not in best or row["tokens_per_s"] > best[label]["tokens_per_s"]:
                best[label] = row
    return [best[label] for label, _, _ in variants]


def markdown(rows: list[dict], steps: int, rounds: int, data_note: str, command: str) -> str:
    lines = [
        "# Training throughput",
        "",
        f"Machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads "
        "(2 CPU cores shared with other jobs: expect run-to-run noise of tens of percent).",
        f"Model: default GPTConfig (4 layers, d_model 128, 4 heads, context 256, vocab 256); "
        f"batch 32 x 256 tokens; best of {rounds} interleaved rounds of {steps} steps (each "
        f"round a fresh run, its first step's warm-up included); data: {data_note}.",
        f"Command: `{command}`",
        "",
        "| parametrization | trained params | total params | tokens/s | ms/step |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['label']} | {r['trained']:,} | {r['total']:,} | "
                     f"{r['tokens_per_s']:,.0f} | {r['step_ms']:,.0f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=10, help="steps per round (default 10)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    p.add_argument("--data", default=None, help="prepared stream directory (default: random)")
    p.add_argument("--out", default="benchmarks/results/training.md")
    p.add_argument("--only", default=None, help="comma-separated label prefixes to run")
    args = p.parse_args(argv)
    variants = [v for v in VARIANTS
                if not args.only or any(v[0].startswith(s) for s in args.only.split(","))]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = args.data or synthetic_data(work / "data")
        rows = best_of_rounds(variants, data, args.steps, args.rounds, work)
    note = args.data or "random bytes (synthetic)"
    command = "python " + " ".join(["benchmarks/train_throughput.py", *sys.argv[1:]])
    text = markdown(rows, args.steps, args.rounds, note, command)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text + TARGET_NOTE)
    print(f"wrote {args.out}")
    return 0


TARGET_NOTE = """
## Target (issue 3): not run here

"The default small byte-level model trained for 2,000 steps on Shakespeare reaches held-out loss
below 2.8 bits/byte, dense and Monarch both." The training defaults are the ones for this
target (GPTConfig: 4 layers, d_model 128, context 256; TrainConfig: 2,000 steps, batch 32,
lr 2e-3 with 5% warmup and cosine to 2e-4, AdamW (0.9, 0.95), weight decay 0.1 on matrices,
clip 1.0, bf16 autocast). The 2,000-step runs were not made on this shared 2-core machine; to
check the target:

    tokenbound prepare --corpus shakespeare --out data/shakespeare-bytes
    tokenbound train --data data/shakespeare-bytes --out runs/dense
    tokenbound train --data data/shakespeare-bytes --out runs/monarch --arch monarch
    # held-out bits/byte: "heldout_bits" in runs/*/train.json (estimate on fixed windows)

At the dense bf16 rate above, one run takes 2,000 x 32 x 256 tokens / (tokens/s).
"""


if __name__ == "__main__":
    raise SystemExit(main())
