"""`tokenbound model-info`: parameter counts of a GPT config (trained, frozen, by part)."""

from __future__ import annotations

import json

HELP = "parameter counts of a model config: total, trained (charged), frozen, by part"
DESCRIPTION = """Build the model of a config (nothing is trained or downloaded) and print how many
parameters it has: trained ones are charged in the code length, frozen ones (LoRA bases, the
random-subspace origin and projection) are regenerated from the seed and free."""
EPILOG = """examples:
  tokenbound model-info                                   # 4 x 128 byte-level GPT
  tokenbound model-info --arch monarch --monarch-blocks 4
  tokenbound model-info --arch lora --lora-rank 4 --subspace-dim 32400 --json
"""


def add_arguments(parser) -> None:
    from tokenbound.commands.flags import add_model_arguments

    parser.add_argument("--json", action="store_true", help="print the counts as JSON")
    add_model_arguments(parser)


def run(args) -> int:
    from tokenbound.commands.flags import config_from_args
    from tokenbound.models import build_model
    from tokenbound.models.counts import param_counts

    cfg = config_from_args(args)
    # shapes only (any size is counted without allocating it), except for a subspace model,
    # whose wrapper needs the base weights
    counts = param_counts(build_model(cfg, device="cpu" if cfg.subspace_dim else "meta"))
    if args.json:
        print(json.dumps({"config": cfg.to_dict(), "counts": counts}, indent=2))
        return 0
    arch = ", ".join(f"{g}={k}" for g, k in cfg.linear.items())
    print(f"GPT {cfg.n_layer} layers x d_model {cfg.d_model}, {cfg.n_head} heads, "
          f"context {cfg.context_len}, vocab {cfg.vocab_size:,}; linear: {arch}"
          + (f"; subspace d={cfg.subspace_dim:,} of D={counts['ambient_dim']:,}"
             if cfg.subspace_dim else ""))
    print(f"{'part':<12}{'trained':>14}{'frozen':>14}")
    for part, c in counts["parts"].items():
        print(f"{part:<12}{c['trained']:>14,}{c['frozen']:>14,}")
    print(f"{'total':<12}{counts['trained']:>14,}{counts['frozen']:>14,}"
          f"   ({counts['total']:,} in all)")
    return 0
