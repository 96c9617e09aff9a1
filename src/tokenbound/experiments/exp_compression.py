"""Experiment `compression`: which compressed parametrization certifies the best token-level bound?

Paper (Lotfi et al. 2024, NeurIPS, table of parametrizations on token-level bounds): at a
comparable training budget, LoRA, Kronecker, Monarch and subspace (SubLoRA) parametrizations
are trained, quantized, coded and bounded; the paper found Monarch best at the token level. Here,
on Shakespeare bytes (V = 256), each variant is trained with the same steps / batch / context,
then run through the pipeline (`tokenbound.experiments.pipeline.run`: 17-level k-means codebook,
entropy-coded message, exact scoring of every training byte, `certify_exact`), plus

* a sampled evaluation (n = 10,000 draws, one evaluation window per draw, stride = L, seed 0)
  whose sample gives the `paper` column: the published arithmetic (METHOD 2.7, best over alpha,
  not a certificate) with `Rhat_n` = the mean over the drawn windows;
* the held-out bits/byte (exact scoring of the held-out scenes; a reference, not a bound).

Every variant is its own certificate at delta = 0.05 (variants are not selected on the data
inside one certificate; picking the best row afterwards would cost ln(#variants) nats more).
The data directory, scales, variants and cached per-variant runs it shares with the other
experiments of this family (`doc-vs-token`, `quantization`, `sampling`, `scaling`) are in
`tokenbound.experiments.family`.
"""

from __future__ import annotations

import logging
from pathlib import Path

from tokenbound.experiments import family
from tokenbound.experiments.family import (PAPER_SAMPLES, VARIANTS, WORK, get_scale,
                                           sample_from_exact, variant_run)
from tokenbound.experiments.report import figure, mark_references

log = logging.getLogger(__name__)

HELP = "compressed parametrizations (dense+PTQ, LoRA, Kronecker, Monarch, SubLoRA, ...) bounded"
COLUMNS = ["variant", "trained params", "code bits", "train bits/byte", "held-out bits/byte",
           "paper*", "azuma", "bernstein", "betting", "certified", "top-1 err bound",
           "top-10 err bound"]


def add_arguments(parser) -> None:
    family.add_arguments(parser, variants=True)


# ---- table ------------------------------------------------------------------------------------
def family_bound(rep: dict, family: str):
    f = rep["families"].get(family)
    return None if f is None else f["bound"]


def compression_row(name: str, rep: dict, paper: dict | None) -> dict:
    """One table row from a pipeline report and the paper-arithmetic result (or None)."""
    return {"variant": name, "trained params": int(rep["trained_parameters"]),
            "code bits": int(rep["code_bits"]),
            "train bits/byte": rep["empirical_bits_per_token"],
            "held-out bits/byte": rep.get("heldout_bits_per_token"),
            "paper*": None if paper is None else paper["value"],
            "azuma": family_bound(rep, "azuma"), "bernstein": family_bound(rep, "bernstein"),
            "betting": family_bound(rep, "betting"), "certified": rep["bound_bits_per_token"],
            "certified family": rep["certified_family"], "vacuous": rep["vacuous"],
            "top-1 err bound": rep.get("top1_error_bound"),
            "top-10 err bound": rep.get("top10_error_bound")}


def best_row(rows: list[dict]) -> dict:
    """The row with the smallest certified bound (ties: the first)."""
    return min(rows, key=lambda r: r["certified"])


def run(out_dir: str, quick: bool, progress: bool, variants=None, work: str = WORK,
        scale_override: dict | None = None, **_) -> dict:
    """Every variant through the pipeline + the paper column; returns the results table."""
    scale = get_scale(quick, scale_override)
    names = list(variants) if variants else list(VARIANTS)
    rows, sampled = [], {}
    for name in names:
        rep = variant_run(name, work, quick, scale, progress)
        run_dir = Path(rep["provenance"]["recipe"]["out"])
        s = sample_from_exact(run_dir, scale)
        sampled[name] = {"certified": s["sampled"]["value"], "n": s["n"],
                         "sampling_term": s["sampled"]["sampling_term"]}
        rows.append(compression_row(name, rep, s["paper"]))
    plots = [plot(rows, Path(out_dir) / "compression.png")]
    return {"title": "Compressed parametrizations on Shakespeare bytes: token-level bounds",
            "columns": COLUMNS, "rows": rows, "plots": plots, "sampled_certificates": sampled,
            "best": best_row(rows)["variant"], "scale": scale, "variants": VARIANTS,
            "notes": notes(scale, rows)}


def notes(scale: dict, rows: list[dict]) -> list[str]:
    b = best_row(rows)
    return [f"Population: the first {scale['docs']} training scenes of Shakespeare (bytes); every "
            "byte scored (exact mode); delta = 0.05 per row; bits per byte, random guess = 8.",
            f"Same budget for every variant: {scale['steps']} steps x batch {scale['batch']} x "
            f"{scale['context_len']} bytes; {scale['n_layer']} layers, d_model "
            f"{scale['d_model']}; 17-level k-means codebook, no QAT; subspace dim "
            f"{scale['subspace_dim']} where used.",
            "azuma / bernstein / betting: the best candidate of each family, each already paying "
            "ln(3 families) in its complexity; `certified` is their minimum.",
            f"paper*: the published arithmetic on a sample of n = {PAPER_SAMPLES:,} windows "
            "(stride = L, one window per draw, seed 0; each window's mean looked up in the exact "
            "per-window statistics), best over alpha, NOT a certificate.",
            f"Held-out bits/byte: mean loss on {scale['heldout_samples']} windows drawn from the "
            "held-out scenes (seed 0), an estimate for reference, not bounded.",
            f"Best certified here: {b['variant']} ({b['certified']:.3f} bits/byte); picking it "
            "after the fact would cost ln(#variants) more nats."]


def plot(rows: list[dict], path: Path) -> str:
    """Stacked bars per variant: train loss and bound (certified), held-out loss as a marker."""
    path.parent.mkdir(parents=True, exist_ok=True)
    names = [r["variant"] for r in rows]
    x = range(len(rows))
    with figure(path, (7, 3.6)) as (fig, ax):
        ax.bar(x, [r["certified"] for r in rows], color="tab:orange", label="certified bound")
        ax.bar(x, [r["train bits/byte"] for r in rows], color="tab:blue", label="train loss")
        ax.plot(x, [r["held-out bits/byte"] or float("nan") for r in rows], "kD",
                label="held-out loss")
        b = rows.index(best_row(rows))
        mark_references(ax, random_guess=8.0, guess_label="random guess log2 256",
                        chosen=(b, rows[b]["certified"]), chosen_label="best certified")
        ax.set_xticks(list(x), names, rotation=25, ha="right", fontsize=7)
        ax.set_ylabel("bits per byte")
        ax.legend(fontsize=7)
    return path.name
