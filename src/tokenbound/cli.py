"""The `tokenbound` command: parse and dispatch only.

Each subcommand lives in `tokenbound.commands.<module>` and provides `HELP` (one line),
`DESCRIPTION` (optional, longer), `add_arguments(parser)` and `run(args) -> int`. Modules are
imported lazily so that `tokenbound calc` never imports torch.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from tokenbound.errors import UserError

# subcommand -> module under tokenbound.commands
COMMANDS: dict[str, str] = {
    "calc": "calc",
    "prepare": "prepare",
    "model-info": "model_info",
    "train": "train",
    "compress": "compress",
    "evaluate": "evaluate",
    "bound": "bound",
    "run": "run_recipe",
    "demo": "demo",
    "experiment": "experiment",
}

EPILOG = """quick start:
  tokenbound demo --quick                      # Shakespeare -> compressed GPT -> certified bound
  tokenbound calc --method azuma --mean 3.2 --tokens 4796184 --code-bits 128015 --vocab 256 --alpha 0.1
  tokenbound <command> --help                  # details of one command
"""


def _load(name: str):
    return importlib.import_module(f"tokenbound.commands.{COMMANDS[name]}")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The full parser; with `only`, import just that subcommand's module (fast path)."""
    parser = argparse.ArgumentParser(
        prog="tokenbound",
        description="Certified generalization bounds for language models, token by token.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        if only is not None and name != only:
            sub.add_parser(name, add_help=False)
            continue
        mod = _load(name)
        p = sub.add_parser(
            name,
            help=mod.HELP,
            description=getattr(mod, "DESCRIPTION", mod.HELP),
            epilog=getattr(mod, "EPILOG", None),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    first = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(only=first if first in COMMANDS else None)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if getattr(args, "_run", None) is None:
        parser.print_help()
        return 0 if not argv else 2
    try:
        return int(args._run(args) or 0)
    except UserError as exc:
        print(f"tokenbound {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"tokenbound {args.command}: interrupted; rerun the same command to resume",
              file=sys.stderr)
        return 130
