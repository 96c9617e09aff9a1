"""`tokenbound train`: train a (compressed-parametrization) GPT on a prepared token stream."""

from __future__ import annotations

import os

HELP = "train a GPT (dense, LoRA, Kronecker, Monarch, subspace) on a prepared token stream"
DESCRIPTION = """Train a GPT on DATA/train (from `tokenbound prepare`), evaluating on DATA/heldout
when it exists, and write RUN/config.json, RUN/model.safetensors, RUN/train.json (losses in bits
per token: estimates on fixed seeded windows, not bounds) and RUN/ckpt/ (latest checkpoint).

Interrupt it and rerun the same command to resume from the last checkpoint: the final weights
are the same as those of an uninterrupted run. Rerunning a finished run prints its summary. A
different configuration for an existing RUN is refused (use a new --out, or --force).
Data parallel: `torchrun --nproc-per-node N -m tokenbound train ...` (gloo on CPU, nccl on GPU);
each process gets batch-size/N rows of every batch, so N processes see the same data in the same
order as one and average the same gradients, but not bitwise: the sums are taken in another
order, and the float rounding differences grow with the steps (after 4 steps of a tiny model the
weights agree to 1e-6; after 60 steps they were seen to differ by about 0.5%). The certificate
is for whatever model the message encodes, so either run gives a valid one."""
EPILOG = """examples:
  tokenbound prepare --corpus shakespeare --out data/shakespeare-bytes
  tokenbound train --data data/shakespeare-bytes --out runs/dense
  tokenbound train --data data/shakespeare-bytes --out runs/monarch --arch monarch
  tokenbound train --data data/shakespeare-bytes --out runs/sublora --arch lora --subspace-dim 5000
"""


def add_arguments(parser) -> None:
    from tokenbound.commands.flags import add_config_arguments, add_model_arguments
    from tokenbound.training.config import TrainConfig

    g = parser.add_argument_group("training")
    add_config_arguments(g, TrainConfig, show_defaults=True)
    g.add_argument("--force", action="store_true",
                   help="overwrite an existing RUN that has a different configuration")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_model_arguments(parser, defaults={"vocab_size": "the training data's vocab_size"})


def build_config(args):
    """`TrainConfig` from parsed flags; the model's vocab_size defaults to the data's."""
    from pathlib import Path

    from tokenbound.commands.flags import config_from_args, given
    from tokenbound.models import GPTConfig
    from tokenbound.training import TrainConfig
    from tokenbound.training.run import open_data

    train_stream, _ = open_data(args.data)
    model = config_from_args(args, base=GPTConfig(vocab_size=train_stream.vocab_size))
    settings = given(args, TrainConfig) | {"data": str(Path(args.data).resolve()), "model": model}
    return TrainConfig(**settings)


def format_summary(summary: dict, run_dir: str) -> str:
    """A few human lines from train.json."""
    def bits(v):
        return "n/a" if v is None else f"{v:.4f}"

    return "\n".join([
        f"run {run_dir}: {summary['steps']:,} steps, {summary['tokens_seen']:,} tokens, "
        f"{summary['tokens_per_s']:,.0f} tokens/s, wall {summary['wall_seconds']:,.1f} s "
        f"({summary['world_size']} process(es))",
        f"loss (bits/token, estimate on fixed windows): train {bits(summary['train_bits'])}, "
        f"held-out {bits(summary['heldout_bits'])}",
    ])


def run(args) -> int:
    from tokenbound.training import train
    from tokenbound.training.run import is_complete

    cfg = build_config(args)
    was_complete = is_complete(cfg.out) and not args.force
    summary = train(cfg, progress=not args.no_progress, force=args.force)
    if int(os.environ.get("RANK", "0")) == 0:
        if was_complete:
            print(f"{cfg.out} is already complete; nothing to do")
        print(format_summary(summary, cfg.out))
    return 0
