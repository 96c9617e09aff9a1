"""`tokenbound run RECIPE.yaml`: the whole pipeline, each step skipped when already done."""

from __future__ import annotations

HELP = "run a recipe: prepare -> train -> compress -> evaluate -> bound -> report (resumable)"
DESCRIPTION = """Run every step of a recipe (a YAML file, or the name of a shipped recipe in
tokenbound/recipes/: demo and demo-quick (what `tokenbound demo` runs), shakespeare-60min (the
demo's model trained 5.4x longer: under an hour on 2 CPU cores) and
hf-own-model (a template for your own Hugging Face model)). Each step is skipped when its output
exists and is valid, so rerunning the same command after an interruption resumes where it
stopped. Outputs: OUT/report.json, OUT/report.md, OUT/*.png, and each step's files."""
EPILOG = """examples:
  tokenbound run src/tokenbound/recipes/demo.yaml --out runs/demo
  tokenbound run shakespeare-60min    # a shipped recipe by name (about 50 min on 2 CPU cores)
  tokenbound run my_model.yaml        # out: taken from the recipe (default runs/<name>)
"""


def add_arguments(parser):
    parser.add_argument("recipe", help="recipe YAML file (or the name of a shipped recipe)")
    parser.add_argument("--out", help="output directory (overrides the recipe's out:)")
    parser.add_argument("--json", action="store_true", help="print report.json instead of a summary")


def run(args) -> int:
    from tokenbound.experiments.pipeline import Recipe
    from tokenbound.experiments.recipes import recipe_path

    recipe = Recipe.load(recipe_path(args.recipe), out=args.out)
    return execute(recipe, as_json=args.json)


def execute(recipe, as_json: bool = False) -> int:
    """Run `recipe` with progress bars and print the summary (shared with `tokenbound demo`)."""
    import json

    from tokenbound.experiments.pipeline import run as run_pipeline

    from tokenbound.fileio import dir_lock

    say = (lambda m: None) if as_json else print
    with dir_lock(recipe.out):
        rep = run_pipeline(recipe, progress=not as_json, say=say)
    if as_json:
        print(json.dumps(rep, indent=2))
    else:
        print_summary(rep, recipe.out)
    return 0


def print_summary(rep: dict, out: str) -> None:
    unit = rep["unit"]
    fam = rep["families"][rep["certified_family"]]
    print()
    from tokenbound.bounds import value_label

    print(f"certified bound: {value_label(rep['bound_bits_per_token'], rep.get('trivial', False))}"
          f" {unit}  "
          f"({rep['certified_family']}, alpha = {fam['alpha']}, probability >= "
          f"{1 - rep['delta']:.2f}; {'VACUOUS' if rep['vacuous'] else 'non-vacuous'}, random "
          f"guess {rep['random_guess_bits_per_token']:.2f})")
    print(f"  = training loss (smoothed) {fam['empirical']:.4f} + complexity "
          f"{fam['complexity_term']:.4f} + sampling {fam['sampling_term']:.4f}")
    for name, f in rep["families"].items():
        print(f"  {name:28s} {value_label(f['bound'], f.get('trivial', False))}")
    if rep.get("heldout_bits_per_token") is not None:
        print(f"training loss {rep['empirical_bits_per_token']:.4f}, held-out loss "
              f"{rep['heldout_bits_per_token']:.4f} {unit} (unsmoothed)")
    elif "heldout: false" not in rep.get("heldout_status", "heldout: false"):
        print(f"training loss {rep['empirical_bits_per_token']:.4f} {unit} (unsmoothed); "
              f"held-out loss {rep['heldout_status']}")
    for k, t in rep.get("topk", {}).items():
        print(f"top-{k} error bound {t['bound']:.4f} (empirical {t['empirical']:.4f})")
    print(f"message: {rep['code_bits']:,} bits for {rep['trained_parameters']:,} trained "
          f"parameters; {rep['n_tokens']:,} tokens; {time_line(rep)}")
    print(f"report: {out}/report.md")


def time_line(rep: dict) -> str:
    """The steps' seconds, saying which were spent by earlier runs of the same command."""
    t, reused = rep["timings_s"], rep.get("steps_reused", [])
    if not reused:
        return f"{t['total']:.0f} s"
    return (f"{t['total']:.0f} s of computing in all (this run {t['this_run']:.0f} s; "
            f"done by an earlier run: {', '.join(reused)})")
