"""`tokenbound evaluate`: per-token losses of a model on a token stream -> per-window sums."""

from __future__ import annotations

import argparse
import os
import sys

from tokenbound.errors import UserError

HELP = "score every token (or a seeded sample) of a stream with a model; resumable"
DESCRIPTION = """Score a token stream with a model and write per-window sums for the bounds.

Every token of every document is scored exactly once, in windows of --context tokens advanced
by --stride (later windows score their last --stride tokens; METHOD 3). --mode exact scores all
windows (no sampling term in the bound); --mode sampled draws --samples positions uniformly
with replacement (seeded) and scores the window that scores each one (METHOD 2.5).
Finished shards are kept under OUT/shards/: rerunning the same command resumes. Under
`torchrun --nproc-per-node N -m tokenbound evaluate ...` each rank scores a seeded share of
the shards (OUT must be on a shared filesystem)."""
EPILOG = """examples:
  tokenbound evaluate --model out/model.tbm --data data/shakespeare --out out/eval
  tokenbound evaluate --model hf/gpt2 --data data/owt --out out/eval-gpt2 --context 1024 \\
      --stride 512 --mode sampled --samples 10000 --device cuda --dtype bf16
"""


def add_arguments(parser) -> None:
    from tokenbound.commands.flags import add_config_arguments
    from tokenbound.evaluation import EvalConfig

    a = parser.add_argument
    a("--model", required=True, metavar="SOURCE",
      help="tokenbound message file, Hugging Face model directory, or .gguf file")
    a("--data", required=True, metavar="STREAM_DIR", help="token stream (tokenbound prepare)")
    a("--out", required=True, metavar="OUT", help="output directory (resumed if it exists)")
    add_config_arguments(parser, EvalConfig, overrides={"batch_size": {"type": _batch_size}})
    a("--device-map", choices=("auto",), default=None,
      help="split a Hugging Face/GGUF model larger than one device over the devices (accelerate)")
    a("--export-tokens", default=None, metavar="FILE",
      help="also write FILE (.npz) from the same scoring pass: logp (float32, natural log of "
           "p(target), unsmoothed), token_ids, positions, window, doc (int64), in scored order "
           "(exact mode: stream order), draws in sampled mode, meta_json; for recomputing "
           "bounds with other inequalities (format: tokenbound/evaluation/export.py)")
    a("--verify-data", action="store_true", help="recompute the stream's sha256 first")
    a("--no-progress", action="store_true", help="no progress bar")
    a("--base", metavar="SOURCE", default=None,
      help="for a fine-tuned (delta) message: where its base is now, when it moved from the "
           "path recorded in the message (its sha256 must match)")


def _batch_size(text: str):
    """argparse type of --batch-size: a positive integer or "auto"."""
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer or auto, got {text!r}") from None


def _check_not_prepared_root(data: str) -> None:
    """UserError naming the split when DATA is a `tokenbound prepare` output directory (its
    streams are DATA/train and DATA/heldout) rather than a stream itself."""
    if os.path.exists(os.path.join(data, "meta.json")):
        return
    splits = [s for s in ("train", "heldout")
              if os.path.isfile(os.path.join(data, s, "meta.json"))]
    if splits:
        alt = f" (or {os.path.join(data, splits[1])})" if len(splits) > 1 else ""
        raise UserError(f"{data} holds prepared splits; pass --data "
                        f"{os.path.join(data, splits[0])}{alt}")


def _distributed(device: str) -> tuple[int, int, str]:
    """(rank, world, device) under torchrun; (0, 1, device) otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, device
    import torch.distributed as dist

    cuda = device.startswith("cuda")
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    if cuda:
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return dist.get_rank(), dist.get_world_size(), device


def _summary(res: dict) -> str:
    t, man = res["totals"], res["manifest"]
    lines = [f"scored {t['n_tokens']:,} tokens in {t['n_windows']:,} windows "
             f"({man['mode']}, L={man['context_len']}, s={man['stride']}, V={man['vocab_size']:,})",
             f"  unsmoothed loss: {t['mean_bits']:.4f} bits/token"]
    for al, v in zip(man["grids"]["alphas"], t["mean_loss_bits"]):
        lines.append(f"  alpha={al:<7g} smoothed loss {v:.4f} bits/token")
    for k, e in zip(man["grids"]["topk"], t["topk_mean_err"]):
        lines.append(f"  top-{k} error {e:.4f}")
    if "sample" in res:
        smp = res["sample"]
        lines.append(f"  sampled: {smp['n_draws']:,} draws, {smp['n_distinct_windows']:,} "
                     "distinct windows; the lines above are over distinct windows, the "
                     "bounds use the per-draw means in eval.json['sample']")
    tps = res["timing"]["tokens_per_s"]
    lines.append(f"  this run: {res['timing']['tokens_scored_this_run']:,} tokens"
                 + (f", {tps:,.0f} tokens/s" if tps else " (all shards were already done)"))
    return "\n".join(lines)


def _mtime(path: str) -> int | None:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


def _context(given: int | None, max_context: int | None, device: str, rank: int) -> int:
    """--context, else `estimate.default_context` (said on stderr when the CPU cap applies)."""
    from tokenbound.evaluation.estimate import default_context

    if given is not None:
        return given
    context = default_context(max_context, device)
    if context is None:
        raise UserError("the model does not state its maximum context; pass --context L")
    if context != max_context and rank == 0:
        print(f"--context {context} (CPU default; the model accepts up to {max_context}: pass "
              f"--context {max_context} to use it all)", file=sys.stderr)
    return context


def run(args) -> int:
    import torch

    from tokenbound.commands.flags import given
    from tokenbound.data import open_stream
    from tokenbound.evaluation import EvalConfig, evaluate
    from tokenbound.evaluation.sampling import check_sample_size
    from tokenbound.sources import load_model_fn
    from tokenbound.evaluation.tokenizer_check import check_file_tokenizer
    from tokenbound.sources import own_tokenizer_spec

    if args.mode == "sampled" and args.samples:
        check_sample_size(args.samples)  # before the stream and the model are loaded
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    rank, world, device = _distributed(device)
    _check_not_prepared_root(args.data)
    stream = open_stream(args.data, verify=args.verify_data)
    settings = given(args, EvalConfig)
    own = own_tokenizer_spec(args.model)
    if own:  # a byte/chars stream with an HF/GGUF model: refused before the model loads
        check_file_tokenizer(stream, own, None)
    from tokenbound.compression.delta import using_base

    with using_base(args.base):
        model = load_model_fn(args.model, device=device,
                              dtype=settings.get("dtype", EvalConfig.dtype),
                              device_map=args.device_map)
    context = _context(args.context, model.max_context, device, rank)
    cfg = EvalConfig(**settings | {"context_len": context, "device": device})
    before = _mtime(os.path.join(args.out, "eval.json"))
    res = evaluate(model, stream, args.out, cfg, rank=rank, world=world,
                   progress=not args.no_progress, export_tokens=args.export_tokens,
                   on_estimate=lambda est: print(est.describe(context, device),
                                                 file=sys.stderr, flush=True))
    if rank == 0:
        print(_summary(res))
        result = os.path.join(args.out, "eval.json")
        if before is not None and _mtime(result) == before:
            print(f"{args.out} was already finished; nothing written (results in {result})")
        else:
            print(f"wrote {os.path.join(args.out, 'stats.npz')} and {result}")
        if args.export_tokens:
            print(f"wrote {args.export_tokens}: per-token ln p(target) in nats (float32), "
                  "token ids and positions, in scored order")
    if world > 1:
        import torch.distributed as dist

        dist.destroy_process_group()
    return 0
