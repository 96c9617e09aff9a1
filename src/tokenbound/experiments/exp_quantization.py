"""Experiment `quantization`: one trained model quantized at 3, 5, 7, 9, 11, 15 levels.

The bound trades the empirical loss against the code length (METHOD 2.1-2.2): fewer levels mean
fewer bits per parameter (a smaller complexity term) but a coarser model (a larger training
loss). The paper (Lotfi et al. 2024) quantizes post-training with a small codebook; here the
same trained model (by default the `compression` experiment's "dense + subspace" variant: a
dense GPT whose weights are trained in a random subspace) is quantized with a k-means codebook
of L levels (post-training, no QAT), entropy-coded, every training byte scored, and certified
(`certify_exact`) once per L, each row its own certificate at delta = 0.05. Choosing the best L
afterwards is paid for in the last row: the best level recertified with ceil(log2 6) = 3 extra
bits (the union bound over the 6 levels).
"""

from __future__ import annotations

import math
from pathlib import Path

from tokenbound.experiments import family
from tokenbound.experiments import steps
from tokenbound.experiments.report import figure, mark_references

HELP = "one model quantized at 3..15 levels: code bits, loss and bound; where the optimum lies"
LEVELS = (3, 5, 7, 9, 11, 15)
COLUMNS = ["levels", "code bits", "bits/param", "quant loss increase", "train bits/byte",
           "bound bits/byte", "complexity term", "family", "top-1 err bound"]


def add_arguments(parser) -> None:
    family.add_arguments(parser, variant="to quantize ")


def level_certificate(run_dir: Path, scale: dict, levels: int, progress: bool) -> dict:
    """Quantize RUN/train at `levels`, score every training byte, certify; cached."""
    from tokenbound.compression import QuantConfig

    qdir = run_dir / "quantization" / f"L{levels}"
    cache = qdir / "result.json"
    got = steps.read_json(cache)
    if got is not None:
        return got
    comp = steps.compress_run(run_dir / "train", qdir / "model.tbm",
                              QuantConfig(levels=levels, method="kmeans", grouping="model"),
                              steps.QATConfig(eval_batches=5))
    L = scale["context_len"]
    steps.evaluate(qdir / "model.tbm", run_dir / "data" / "train", qdir / "eval",
                   {"context_len": L, "stride": L, "mode": "exact",
                    "batch_size": scale["eval_batch"], "dtype": "fp32"}, progress=progress)
    cert = steps.certify(qdir / "eval", comp.total_bits, delta=family.DELTA)
    got = {"levels": levels, "compress": comp.to_dict(), "cert": cert.to_dict()}
    steps.atomic_json(cache, got)
    return got


def level_row(res: dict) -> dict:
    """A table row from one level's result (compress report + certificate)."""
    comp, cert = res["compress"], res["cert"]
    best = cert["token"]["best"]
    inc = comp.get("loss_increase")
    return {"levels": res["levels"], "code bits": int(comp["total_bits"]),
            "bits/param": comp["total_bits"] / max(comp["trained_parameters"], 1),
            "quant loss increase": None if inc is None else inc,
            "train bits/byte": cert["mean_bits"], "bound bits/byte": best["value"],
            "complexity term": best["complexity_term"], "family": best["family"],
            "top-1 err bound": cert["topk"]["1"]["best"]["value"], "vacuous": best["vacuous"]}


def best_level_paid(run_dir: Path, best: dict, n_levels: int) -> dict:
    """The best row recertified with ceil(log2 n_levels) extra bits (selection paid)."""
    extra = math.ceil(math.log2(n_levels))
    qdir = run_dir / "quantization" / f"L{best['levels']}"
    cert = steps.certify(qdir / "eval", best["code bits"], delta=family.DELTA, extra_bits=extra)
    b = cert.best
    return {**best, "levels": f"best ({best['levels']}), +{extra} bits paid",
            "bound bits/byte": b["value"], "complexity term": b["complexity_term"],
            "family": b["family"], "vacuous": b["vacuous"]}


def run(out_dir: str, quick: bool, progress: bool, variant: str = "dense + subspace",
        work: str = family.WORK, levels=LEVELS, scale_override: dict | None = None, **_) -> dict:
    scale = family.get_scale(quick, scale_override)
    rep = family.variant_run(variant, work, quick, scale, progress)
    run_dir = Path(rep["provenance"]["recipe"]["out"])
    rows = [level_row(level_certificate(run_dir, scale, L, progress)) for L in levels]
    best = min(rows, key=lambda r: r["bound bits/byte"])
    rows.append(best_level_paid(run_dir, best, len(levels)))
    plots = [plot(rows[:-1], Path(out_dir) / "quantization.png", paid=rows[-1])]
    return {"title": f"Quantization levels vs bound ({variant}, Shakespeare bytes)",
            "columns": COLUMNS, "rows": rows, "plots": plots, "variant": variant,
            "best_levels": best["levels"], "scale": scale,
            "trained_parameters": rep["trained_parameters"],
            "notes": notes(variant, rep, best)}


def notes(variant: str, rep: dict, best: dict) -> list[str]:
    return [f"Model: the `{variant}` run of the compression experiment "
            f"({rep['trained_parameters']:,} trained parameters), k-means codebook of L levels "
            "over all of them (codebook charged at 16 bits per level), entropy-coded; no QAT.",
            "quant loss increase: bits/byte after minus before quantization on 5 fixed seeded "
            "batches (an estimate). train bits/byte: exact, every training byte.",
            f"Optimum: L = {best['levels']} ({best['bound bits/byte']:.3f} bits/byte). Each row "
            "is its own certificate; the last row pays for picking the best of the 6 levels.",
            "Bounds are in bits per byte; random guessing = 8."]


def plot(rows: list[dict], path: Path, paid: dict | None = None) -> str:
    """Bound and train loss per level L (code bits on a second axis); `paid`, the best row
    recertified with the selection paid, is the chosen point, drawn at the best L."""
    path.parent.mkdir(parents=True, exist_ok=True)
    L = [r["levels"] for r in rows]
    with figure(path, (5.5, 3.6)) as (fig, ax):
        ax.plot(L, [r["bound bits/byte"] for r in rows], "o-", label="bound")
        ax.plot(L, [r["train bits/byte"] for r in rows], "s--", label="train loss")
        best = min(rows, key=lambda r: r["bound bits/byte"])
        mark_references(ax, random_guess=8.0, guess_label="random guess log2 256",
                        chosen=paid and (best["levels"], paid["bound bits/byte"]),
                        chosen_label=f"chosen L = {best['levels']}, selection paid")
        ax2 = ax.twinx()
        ax2.plot(L, [r["code bits"] for r in rows], "^:", color="gray", label="code bits")
        ax2.set_ylabel("code bits")
        ax.set_xlabel("quantization levels L")
        ax.set_ylabel("bits per byte")
        ax.legend(fontsize=7, loc="upper center")
    return path.name
