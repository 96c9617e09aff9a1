"""`tokenbound train`: train a (compressed-parametrization) GPT on a prepared token stream."""

from __future__ import annotations

import os

from tokenbound.errors import UserError

FINETUNE_SEQ_LEN = 256  # default --seq-len with --base (a base's own context may be 8,192)

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
  tokenbound prepare --corpus notes.txt --tokenizer gguf:smollm2 --out data/notes
  tokenbound train --base SmolLM2.gguf --data data/notes --out runs/ft --lora-rank 4 \
      --subspace-dim 20000 --seq-len 256      # adapters on a frozen base (METHOD 2.9)
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
    f = parser.add_argument_group("fine-tuning (--base)")
    f.add_argument("--base", metavar="SOURCE", default=None,
                   help="fine-tune this base instead of training a GPT from scratch: a Hugging "
                        "Face causal-LM directory, a .gguf file, a tokenbound message or run; "
                        "only LoRA adapters (--lora-rank, --lora-targets; SubLoRA with "
                        "--subspace-dim) are trained, seeded by --seed; the data must be "
                        "tokenized with the base's tokenizer")
    f.add_argument("--lora-alpha", type=float, default=None,
                   help="LoRA scale alpha of the adapters (default: 2 x rank)")
    f.add_argument("--lora-targets", nargs="+", default=None, metavar="NAME",
                   help="linear maps that get adapters (name suffixes, e.g. q_proj v_proj; "
                        "default: PEFT's for the base's model_type, attn.qkv mlp.fc for ours)")


FINETUNE_MODEL_FLAGS = ("lora_rank", "subspace_dim", "seed")
"""Model flags that keep their meaning with --base; every other model flag is refused."""


def _finetune_model(args, stream):
    """`AdapterConfig` of `--base` and the adapter flags; UserError for GPT-only flags."""
    from tokenbound.commands.flags import given
    from tokenbound.models import GPTConfig
    from tokenbound.training.finetune import adapter_config

    others = sorted(set(given(args, GPTConfig)) - set(FINETUNE_MODEL_FLAGS))
    for name in others + (["arch"] if getattr(args, "arch", None) else []):
        raise UserError(f"--{name.replace('_', '-')} does not apply with --base (the base "
                        "fixes the architecture); drop it")
    rank = args.lora_rank if args.lora_rank is not None else GPTConfig().lora_rank
    return adapter_config(args.base, rank=rank,
                          alpha=args.lora_alpha if args.lora_alpha is not None else 2.0 * rank,
                          targets=args.lora_targets or (), subspace_dim=args.subspace_dim,
                          seed=args.seed or 0, stream=stream)


def build_config(args):
    """`TrainConfig` from parsed flags; the model's vocab_size defaults to the data's."""
    from pathlib import Path

    from tokenbound.commands.flags import config_from_args, given
    from tokenbound.models import GPTConfig
    from tokenbound.training import TrainConfig
    from tokenbound.training.run import open_data

    train_stream, _ = open_data(args.data)
    settings = given(args, TrainConfig) | {"data": str(Path(args.data).resolve())}
    if getattr(args, "base", None):
        model = _finetune_model(args, train_stream)
        if "context_len" not in settings and model.context_len:
            settings["context_len"] = min(model.context_len, FINETUNE_SEQ_LEN)
    elif args.lora_alpha is not None or args.lora_targets:
        raise UserError("--lora-alpha and --lora-targets apply to --base fine-tuning; for a GPT "
                        "trained from scratch use --arch lora --lora-rank R")
    else:
        model = config_from_args(args, base=GPTConfig(vocab_size=train_stream.vocab_size))
    return TrainConfig(**settings, model=model)


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
