"""Experiment `sampling`: what a bound costs in forward passes, and what sampling costs in bits.

The paper (Lotfi et al. 2024) estimates the empirical risk from n = 10,000 positions, each
scored with its own forward pass over the full context window ending at it (one token per
forward pass), and pays a Hoeffding sampling term `c sqrt(ln(1/delta_2) / (2n))`. METHOD 2.5
allows scoring the whole evaluation window that scores a drawn position (window sampling: up to
L tokens per forward pass, same unbiasedness), and exact mode scores every token with no
sampling term at all. For one model (the `compression` experiment's "dense + subspace" variant):

* one-token sampling: stride 1 (each window scores its last token; the first window of a scene
  scores all of its L predictions), n = 10,000 draws, seed 0;
* window sampling with the same number of draws: stride L, n = 10,000 draws (repeated draws
  share a forward pass, so it needs far fewer forward passes: at most the number of windows);
* window sampling at a tenth of the budget (n = 1,000);
* exact scoring, stride L (what the other experiments certify).

Each row is its own certificate (betting sampling estimator, Fan/Azuma families) at delta =
0.05; `paper*` is the published arithmetic on the same sample (not a certificate). Note the
stride is part of the hypothesis (it fixes each token's context), so stride-1 and stride-L rows
bound slightly different predictors. Wall-clock times are of this shared 2-core machine.
"""

from __future__ import annotations

import time
from pathlib import Path

from tokenbound.errors import UserError
from tokenbound.experiments import family
from tokenbound.experiments import steps
from tokenbound.experiments.report import figure, mark_references

HELP = "one-token sampling (paper, n=10,000) vs window sampling vs exact scoring, with times"
COLUMNS = ["method", "draws n", "forward passes", "tokens scored", "wall s",
           "train bits/byte (estimate)", "sampling term", "bound bits/byte", "paper*"]


def add_arguments(parser) -> None:
    family.add_arguments(parser, variant="")
    parser.add_argument("--samples", type=int, default=family.PAPER_SAMPLES,
                        help="n of the one-token and same-budget window samples (default 10000)")


def sampled_row(method: str, s: dict) -> dict:
    """A row from `family.sampled_certificate`'s result (sampled-mode certificate + eval.json)."""
    cert, ev = s["cert"], s["eval"]
    best = cert["token"]["best"]
    samp = ev["sample"]
    return {"method": method, "draws n": int(cert["n"]),
            "forward passes": int(samp["n_distinct_windows"]),
            "tokens scored": int(ev["totals"]["n_tokens"]), "wall s": s["wall_s"],
            "train bits/byte (estimate)": best["empirical"], "sampling term": best["sampling_term"],
            "bound bits/byte": best["value"], "paper*": (cert.get("paper") or {}).get("value"),
            "family": best["family"], "alpha": best["alpha"]}


def exact_row(rep: dict, wall_s: float | None) -> dict:
    """The exact-mode row from a pipeline report (its evaluate step's time)."""
    best = rep["families"][rep["certified_family"]]
    return {"method": "exact, stride L", "draws n": None, "forward passes": rep["n_windows"],
            "tokens scored": int(rep["n_scored"]), "wall s": wall_s,
            "train bits/byte (estimate)": best["empirical"], "sampling term": 0.0,
            "bound bits/byte": rep["bound_bits_per_token"], "paper*": None,
            "family": rep["certified_family"], "alpha": best["alpha"]}


def exact_timing(run_dir: Path, scale: dict, progress: bool) -> dict:
    """Time a fresh exact evaluation (stride L) of RUN's message; cached."""
    cache = run_dir / "exact_timing.json"
    got = steps.read_json(cache)
    if got is not None:
        return got
    L = scale["context_len"]
    t = time.perf_counter()
    ev = steps.evaluate(run_dir / "model.tbm", run_dir / "data" / "train",
                        run_dir / "eval_exact_timed", {"context_len": L, "stride": L,
                                                       "mode": "exact",
                                                       "batch_size": scale["eval_batch"],
                                                       "dtype": "fp32"}, progress=progress)
    got = {"wall_s": round(time.perf_counter() - t, 2), "n_windows": int(ev.totals["n_windows"])}
    steps.atomic_json(cache, got)
    return got


def run(out_dir: str, quick: bool, progress: bool, variant: str = "dense + subspace",
        work: str = family.WORK, samples: int = family.PAPER_SAMPLES,
        scale_override: dict | None = None, **_) -> dict:
    if int(samples) < 10:
        raise UserError(f"--samples {samples}: use 10 or more (the last row draws --samples/10 "
                        f"positions; default {family.PAPER_SAMPLES:,})")
    scale = family.get_scale(quick, scale_override)
    rep = family.variant_run(variant, work, quick, scale, progress)
    run_dir = Path(rep["provenance"]["recipe"]["out"])
    L, n = scale["context_len"], int(samples)
    rows = []
    for method, stride, k in ((f"one token per pass (stride 1), n = {n:,}", 1, n),
                              (f"windows (stride L), n = {n:,}", L, n),
                              (f"windows (stride L), n = {n // 10:,}", L, n // 10)):
        s = family.sampled_certificate(run_dir, scale, stride=stride, n=k, progress=progress)
        rows.append(sampled_row(method, s))
    t = exact_timing(run_dir, scale, progress)
    rows.append(exact_row({**rep, "n_windows": t["n_windows"]}, t["wall_s"]))
    plots = [plot(rows, Path(out_dir) / "sampling.png")]
    return {"title": f"Sampling vs exact scoring ({variant}, Shakespeare bytes, L = {L})",
            "columns": COLUMNS, "rows": rows, "plots": plots, "scale": scale,
            "m": int(rep["n_tokens"]), "notes": notes(rows, int(rep["n_tokens"]), L)}


def notes(rows: list[dict], m: int, L: int) -> list[str]:
    return [f"Population m = {m:,} training bytes, context L = {L}; delta = 0.05 per row; "
            "bits per byte (random guess 8).",
            "forward passes: distinct windows run through the model (repeated draws reuse one); "
            "tokens scored: predictions whose statistics were computed.",
            "train bits/byte (estimate): the smoothed empirical term of the certified "
            "candidate (sample mean for sampled rows, exact mean for the exact row).",
            "sampling term: the betting upper confidence bound minus the sample mean, paying "
            "for every alpha x center compared on the sample; 0 in exact mode.",
            "paper*: the published arithmetic (Hoeffding, alpha chosen on the sample without "
            "paying for it): not a certificate.",
            "When the population has fewer windows than the draws, window sampling already "
            "scores every window, and exact scoring is the cheaper, tighter choice."]


def plot(rows: list[dict], path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    with figure(path, (6, 3.6)) as (fig, ax):
        for r in rows:
            ax.scatter(r["wall s"] or 0.0, r["bound bits/byte"], s=40)
            ax.annotate(r["method"], (r["wall s"] or 0.0, r["bound bits/byte"]), fontsize=6,
                        xytext=(4, 4), textcoords="offset points")
        best = min(rows, key=lambda r: r["bound bits/byte"]) if rows else None
        mark_references(ax, random_guess=8.0, guess_label="random guess log2 256",
                        chosen=best and (best["wall s"] or 0.0, best["bound bits/byte"]),
                        chosen_label="lowest bound")
        ax.set_xlabel("wall-clock seconds (shared 2-core CPU)")
        ax.set_ylabel("certified bound, bits per byte")
        ax.legend(fontsize=7)
    return path.name
