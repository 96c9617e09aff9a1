"""Fine-tuning throughput: tokenbound's adapters on a frozen base vs a plain transformers + PEFT
loop on the same batches (issue 18 target: within 1.3x).

Both sides: the same base (loaded once, copied), LoRA rank r on PEFT's default targets,
AdamW, float32, the same packed batches (`training.batches.make_batch`). Steps alternate
(plain, ours, plain, ours, ...) so that a busy machine slows both alike; the first step of each
is a warm-up and is not timed. The plain loop feeds `input_ids` only (attention across the
documents of a packed row); ours feeds position ids that restart at each document, as training
does (no attention across documents).

    .venv/bin/python benchmarks/finetune_speed.py --base PATH.gguf|HF_DIR --data DATA \
        [--steps 6] [--batch-size 2] [--seq-len 128] [--rank 4]

Prints one markdown row to paste into benchmarks/results/finetune_speed.md.
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import time

import torch
import torch.nn.functional as F


def _plain(base, rank: int):
    from peft import LoraConfig, get_peft_model

    from tokenbound.models.finetune import default_targets

    cfg = LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0,
                     target_modules=list(default_targets(base)))
    model = get_peft_model(base, cfg)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)

    def step(x, y, doc_ids):
        logits = model(input_ids=x, use_cache=False).logits  # (B, T, V)
        loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), ignore_index=-100)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def _ours(base, ident: dict, rank: int):
    from tokenbound.models.finetune import AdapterConfig, attach_adapters
    from tokenbound.training.batches import token_losses_nats
    from tokenbound.training.config import TrainConfig
    from tokenbound.training.loop import make_optimizer

    model = attach_adapters(base, AdapterConfig(base=ident, rank=rank, alpha=2.0 * rank))
    model.train()
    opt = make_optimizer(model, TrainConfig(data="-", out="-", model=model.cfg, context_len=8,
                                            lr=1e-3))

    def step(x, y, doc_ids):
        nll = token_losses_nats(model, x, y, doc_ids)
        (nll.sum() / (y != -100).sum()).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--rank", type=int, default=4)
    a = ap.parse_args()

    from tokenbound.compression.delta import base_identity, open_base
    from tokenbound.training.batches import make_batch
    from tokenbound.training.run import open_data

    stream, _ = open_data(a.data)
    ident = base_identity(a.base)
    base, _ = open_base(ident)
    fns = {"plain": _plain(copy.deepcopy(base), a.rank), "ours": _ours(base, ident, a.rank)}
    seconds = dict.fromkeys(fns, 0.0)
    for t in range(a.steps + 1):
        x, y, doc_ids = make_batch(stream, a.seq_len, a.batch_size, 0, t)
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn(x, y, doc_ids)
            if t:  # step 0 warms up
                seconds[name] += time.perf_counter() - t0
    tokens = a.steps * a.batch_size * a.seq_len
    tps = {k: tokens / v for k, v in seconds.items()}
    print("| base | B x T | steps | plain tok/s | ours tok/s | plain/ours | threads | machine |")
    print(f"| {os.path.basename(a.base.rstrip('/'))} | {a.batch_size} x {a.seq_len} | "
          f"{a.steps} | {tps['plain']:,.1f} | {tps['ours']:,.1f} | "
          f"{tps['plain'] / tps['ours']:.2f} | {torch.get_num_threads()} | "
          f"{platform.processor() or platform.machine()}, load {os.getloadavg()[0]:.1f} |")


if __name__ == "__main__":
    main()
