"""`tokenbound experiment NAME`: rerun one of the paper's experiments, write its table and plot.

Each experiment (registry `tokenbound.experiments.registry`) returns a JSON-able results dict.
Conventions understood here (all optional): `title` (str), `columns` (list of str), `rows`
(list of dicts keyed by column, or lists in column order), `notes` (list of str), `plots`
(PNG file names written into the output directory). Anything else is kept in results.json.
"""

from __future__ import annotations

import datetime
import os
import platform
import shlex
import sys

HELP = "rerun one of the paper's experiments (table + plot) at laptop scale"
EPILOG = """examples:
  tokenbound experiment markov --quick
  tokenbound experiment memorization --out runs/exp-memorization
"""


def _description() -> str:
    from tokenbound.experiments.registry import EXPERIMENTS, load

    lines = ["Runs one experiment and writes OUT/results.json, OUT/results.md and its PNG plot.",
             "", "experiments:"]
    for name in EXPERIMENTS:
        lines.append(f"  {name:<14} {load(name).HELP}")
    return "\n".join(lines)


def add_arguments(parser) -> None:
    from tokenbound.experiments.registry import EXPERIMENTS, load

    parser.description = _description()
    sub = parser.add_subparsers(dest="experiment", metavar="NAME")
    for name in EXPERIMENTS:
        mod = load(name)
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP)
        if hasattr(mod, "add_arguments"):
            mod.add_arguments(p)
        p.add_argument("--out", help="output directory (default runs/exp-NAME[-quick])")
        p.add_argument("--quick", action="store_true", help="the short version (minutes)")
        p.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args) -> int:
    from tokenbound.errors import UserError
    from tokenbound.experiments.registry import load
    from tokenbound.experiments.report import write_results
    from tokenbound.fileio import dir_lock

    if not getattr(args, "experiment", None):
        raise UserError("name an experiment: tokenbound experiment NAME (see --help)")
    mod = load(args.experiment)
    out = args.out or f"runs/exp-{args.experiment}" + ("-quick" if args.quick else "")
    skip = {"command", "verbose", "_run", "experiment", "out", "quick", "no_progress"}
    kwargs = {k: v for k, v in vars(args).items() if k not in skip}
    started = datetime.datetime.now(datetime.timezone.utc)
    with dir_lock(out):
        res = mod.run(out, args.quick, not args.no_progress, **kwargs)
        text = write_results(args.experiment, res, out, run_info(started))
    print(text)
    print(f"written: {out}/results.json, {out}/results.md"
          + "".join(f", {out}/{p}" for p in res.get("plots", [])))
    return 0


def run_info(started) -> dict:
    """The command line, machine, date and wall time printed beside every table."""
    return {"command": "tokenbound " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
            "machine": f"{platform.platform()}, {platform.processor() or platform.machine()}, "
                       f"{os.cpu_count()} CPUs, Python {platform.python_version()}",
            "date": started.strftime("%Y-%m-%d %H:%M UTC"),
            "wall_s": round((datetime.datetime.now(datetime.timezone.utc)
                             - started).total_seconds(), 1)}
