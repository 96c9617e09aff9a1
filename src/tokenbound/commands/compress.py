"""`tokenbound compress`: quantize a trained model, write its message, count its bits exactly."""

from __future__ import annotations

import json
from pathlib import Path

from tokenbound.errors import UserError

HELP = "quantize + entropy-code a model into a message; report its exact bits"
DESCRIPTION = """Quantize the charged tensors of a trained run to an L-level float16 codebook,
entropy-code the symbols, write the message to --out and report its exact size by part, bits per
trained parameter and the loss change caused by quantization (estimate on the run's training
data). The message decodes to exactly the model that is evaluated.

A Hugging Face model (--hf) is quantized per group, as pretrained LLMs are: blocks of
--group-size weights along the input dim, each with its own fp16 scale and minimum (all charged),
--bits-bit codes entropy-coded; with --data STREAM the loss before and after is measured on a
fixed sample (--loss-windows windows of --loss-context tokens, seeded starts; a diagnostic, not
part of the certificate) and a warning is printed when quantization costs more than a bound can
afford. (--levels L quantizes an --hf model with one codebook per tensor or model instead, the older
scheme: it can cost a pretrained model many bits per token.)

With --gguf, report the code lengths of a pretrained GGUF checkpoint; with --out, also write
its message, decoded to exactly the tensors transformers loads from the file. Its length,
code_bits_certificate, is the certificate's C (evaluate --model MESSAGE, then bound --message
MESSAGE); the other numbers (stored_bits, entropy_coded_bits: tensor data only; file_bits: the
.gguf file, the C when the .gguf itself was evaluated) are not that C."""
EPILOG = """examples:
  tokenbound compress runs/tiny --levels 11 --out runs/tiny/message.tbq
  tokenbound compress runs/tiny --levels 7 --kmeans --grouping tensor --qat-steps 100 \
      --out m.tbq --json
  tokenbound compress --gguf SmolLM2-135M-Instruct.Q4_1.gguf --out smol.tbm --json
  tokenbound compress --hf path/to/hf_model_dir --bits 4 --group-size 32 --data DATA/train \
      --out hf.tbm
"""


def add_arguments(parser):
    from tokenbound.commands.flags import add_config_arguments
    from tokenbound.compression import QUANTIZERS, QuantConfig
    from tokenbound.experiments.steps import QATConfig

    parser.add_argument("run", nargs="?", help="training run directory (tokenbound train --out)")
    parser.add_argument("--gguf", metavar="PATH", help=(
        "a GGUF checkpoint: report its code lengths; with --out, write its message (the file's "
        "own 4/8-bit block codes entropy-coded, its fp16 scales stored) whose length, "
        "code_bits_certificate, is the C to certify with (evaluate --model MESSAGE, bound "
        "--message MESSAGE); stored_bits / entropy_coded_bits count tensor data only, file_bits "
        "is the .gguf file itself"))
    parser.add_argument("--hf", metavar="DIR", help="quantize a local Hugging Face causal LM")
    add_config_arguments(parser, QuantConfig, overrides={"method": {"choices": sorted(QUANTIZERS)}})
    parser.add_argument("--kmeans", action="store_true", help="same as --method kmeans")
    add_config_arguments(parser, QATConfig)
    g = parser.add_argument_group(
        "per-group quantization (--hf without --levels; the way pretrained LLMs are quantized)")
    g.add_argument("--bits", type=int, default=4, help="bits per code, 2..8 (default 4)")
    g.add_argument("--group-size", type=int, default=32,
                   help="weights per block along the input dim, each with its own fp16 scale "
                        "and minimum (default 32)")
    g.add_argument("--symmetric", action="store_true",
                   help="fp16 scale only per block (no minimum), codes centred on 0")
    g.add_argument("--bits-for", action="append", default=[], metavar="PATTERN=BITS",
                   help="other bits for tensors matching an fnmatch pattern (repeat), e.g. "
                        "'*embed_tokens*=8'")
    g.add_argument("--data", metavar="STREAM",
                   help="a prepared stream (the model's training data) for the loss before and "
                        "after quantization on a fixed seeded sample of windows")
    g.add_argument("--loss-windows", type=int, default=4,
                   help="windows in the loss sample (default 4)")
    g.add_argument("--loss-context", type=int, default=256,
                   help="tokens per window of the loss sample (default 256)")
    parser.add_argument("--out", metavar="FILE", help="where to write the message")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args) -> int:
    modes = [m for m in ("run", "gguf", "hf") if getattr(args, m)]
    if len(modes) != 1:
        raise UserError("give exactly one of RUN, --gguf PATH or --hf DIR")
    if args.gguf:
        return _show(_gguf_report(args), args.json)
    group = bool(args.hf) and args.levels is None  # --hf: per-group quantization by default
    if not args.out or (args.levels is None and not group):
        raise UserError("--levels L and --out FILE are required (e.g. --levels 11 --out m.tbq)")
    if args.levels is not None and args.levels < 1:
        raise UserError(f"--levels must be >= 1 (codebook size), got {args.levels}")
    if args.kmeans and args.method not in (None, "kmeans"):
        raise UserError(f"--kmeans conflicts with --method {args.method}; give one of them")
    if Path(args.out).is_dir():
        raise UserError(f"--out {args.out} is a directory; give the message's file name, e.g. "
                        f"--out {Path(args.out) / 'model.tbm'}")
    from tokenbound.fileio import file_lock

    with file_lock(args.out):
        report = _hf_group_report(args) if group else \
            _hf_report(args) if args.hf else _run_report(args)
    return _show(report.to_dict(), args.json)


def _configs(args):
    """(QuantConfig, QATConfig) from the flags given."""
    from tokenbound.commands.flags import given
    from tokenbound.compression import QuantConfig
    from tokenbound.experiments.steps import QATConfig

    quant = given(args, QuantConfig) | ({"method": "kmeans"} if args.kmeans else {})
    return QuantConfig(**quant), QATConfig(**given(args, QATConfig))


def _gguf_report(args) -> dict:
    from tokenbound.experiments.ptq import compress_gguf

    if not args.out:
        return compress_gguf(args.gguf, progress=not args.json)
    if Path(args.out).is_dir():
        raise UserError(f"--out {args.out} is a directory; give the message's file name")
    from tokenbound.fileio import file_lock

    with file_lock(args.out):
        return compress_gguf(args.gguf, args.out, progress=not args.json)


def _run_report(args) -> dict:
    from tokenbound.experiments.steps import compress_run

    return compress_run(args.run, args.out, *_configs(args))


def _hf_report(args) -> dict:
    from tokenbound.experiments.steps import compress_hf

    if args.qat_steps:
        raise UserError("--qat-steps is for tokenbound runs; drop it with --hf")
    _check_hf_dir(args)
    return compress_hf(args.hf, args.out, _configs(args)[0])


def _hf_group_report(args) -> dict:
    from tokenbound.compression.groupwise import GroupConfig
    from tokenbound.experiments.ptq import compress_hf_groupwise

    _check_hf_dir(args)
    overrides = []
    for item in args.bits_for:
        pattern, _, bits = item.rpartition("=")
        if not pattern or not bits.isdigit():
            raise UserError(f"--bits-for {item!r}: use PATTERN=BITS, e.g. '*embed_tokens*=8'")
        overrides.append((pattern, int(bits)))
    if args.loss_windows < 1 or args.loss_context < 1:
        raise UserError("--loss-windows and --loss-context must be >= 1")
    gcfg = GroupConfig(bits=args.bits, group_size=args.group_size, symmetric=args.symmetric,
                       exclude=tuple(args.exclude or ()), overrides=tuple(overrides))
    return compress_hf_groupwise(args.hf, args.out, gcfg, stream_dir=args.data,
                                 context_len=args.loss_context, n_windows=args.loss_windows,
                                 batch_size=1)


def _check_hf_dir(args) -> None:
    from tokenbound.experiments.steps import read_json
    from tokenbound.training.run import is_training_run

    d = Path(args.hf)
    if is_training_run(d):
        raise UserError(f"--hf {d} is a tokenbound training run; pass it as RUN: "
                        f"tokenbound compress {d} --levels {args.levels or 11} --out {args.out}")
    if "model_type" not in (read_json(d / "config.json") or {}):
        raise UserError(f"--hf {d}: not a Hugging Face model directory (a config.json with "
                        "model_type and the weights)")


def _show(report: dict, as_json: bool) -> int:
    import sys

    for w in report.get("warnings") or []:
        print(f"warning: {w}", file=sys.stderr)
    if as_json:
        print(json.dumps(report, indent=1, sort_keys=True))
        return 0
    for key, value in report.items():
        if isinstance(value, dict):
            print(f"{key}:")
            for k, v in value.items():
                print(f"  {k:<24} {_fmt(v)}")
        else:
            print(f"{key:<26} {_fmt(value)}")
    return 0


def _fmt(v) -> str:
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:,.4f}"
    return str(v) if not isinstance(v, dict) else json.dumps(v)
