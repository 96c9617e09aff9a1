"""The `tokenbound` command: parse and dispatch only.

Each subcommand lives in `tokenbound.commands.<module>` and provides `HELP` (one line),
`DESCRIPTION` (optional, longer), `add_arguments(parser)` and `run(args) -> int`. Modules are
imported lazily so that `tokenbound calc` never imports torch.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import os
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
        # also accepted after the subcommand; SUPPRESS keeps a -v given before it
        p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                       help="log progress details")
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
        print(f"\ntokenbound {args.command}: interrupted; rerun the same command to resume",
              file=sys.stderr)  # the newline ends a progress bar's line
        return 130
    except BrokenPipeError:  # output piped into `head` etc.: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no flush error at exit
        return 0
    except OSError as exc:  # a path that is a directory, under a file, not writable, ...
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            from tokenbound.fileio import disk_error

            print(f"tokenbound {args.command}: error: "
                  f"{disk_error(exc.filename or 'the output', exc)}", file=sys.stderr)
            return 2
        what = f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc)
        print(f"tokenbound {args.command}: error: {what}; check the path (an --out that "
              f"exists as the wrong kind, a missing or read-only directory)", file=sys.stderr)
        return 2
