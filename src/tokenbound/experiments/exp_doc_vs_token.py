"""Experiment `doc-vs-token`: the same models bounded at the document level and at the token level.

Prior work (Lotfi et al., ICML 2024, "SubLoRA") treats each document as one i.i.d. sample:
Hoeffding over `N` documents, `E[Y] <= mean(Y) + c sqrt(K / (2N))` (METHOD 2.3). The token-level
bound (Lotfi et al., NeurIPS 2024; METHOD 2.2, 2.4) uses every token as a data point through a
martingale, `m >> N` of them, so the same complexity `K` is divided by a far larger count. Here
the models are the variants of the `compression` experiment (same WORK directory, so they are
trained once and reused); scenes are the documents. The two bounds bound different quantities
(new documents drawn i.i.d. versus the next token given its training context): the comparison
is of how much each pays for the same code length, not of two estimates of one number.
"""

from __future__ import annotations

from pathlib import Path

from tokenbound.experiments import family
from tokenbound.experiments.report import figure, mark_references

HELP = "the compression variants bounded with scenes as i.i.d. documents vs tokens as data points"
COLUMNS = ["variant", "code bits", "documents N", "tokens m", "train bits/byte",
           "document-level bound", "doc complexity term", "token-level bound",
           "token complexity term"]


def add_arguments(parser) -> None:
    family.add_arguments(parser, variants=True)


def doc_token_row(name: str, rep: dict) -> dict:
    """One row from a pipeline report (exact mode: it holds the document-level certificate)."""
    doc = rep.get("document_level")
    best = rep["families"][rep["certified_family"]]
    return {"variant": name, "code bits": int(rep["code_bits"]),
            "documents N": None if doc is None else int(doc["m"]), "tokens m": int(rep["n_tokens"]),
            "train bits/byte": rep["empirical_bits_per_token"],
            "document-level bound": None if doc is None else doc["value"],
            "doc complexity term": None if doc is None else doc["complexity_term"],
            "token-level bound": rep["bound_bits_per_token"],
            "token complexity term": best["complexity_term"],
            "document alpha": None if doc is None else doc["alpha"],
            "document vacuous": None if doc is None else doc["vacuous"]}


def run(out_dir: str, quick: bool, progress: bool, variants=None, work: str = family.WORK,
        scale_override: dict | None = None, **_) -> dict:
    scale = family.get_scale(quick, scale_override)
    names = list(variants) if variants else list(family.VARIANTS)
    rows = [doc_token_row(n, family.variant_run(n, work, quick, scale, progress)) for n in names]
    plots = [plot(rows, Path(out_dir) / "doc_vs_token.png")]
    return {"title": "Document-level vs token-level bounds (Shakespeare bytes, scenes as "
                     "documents)", "columns": COLUMNS, "rows": rows, "plots": plots,
            "scale": scale, "notes": notes(rows)}


def notes(rows: list[dict]) -> list[str]:
    r = rows[0]
    return [f"Same models and messages as the `compression` experiment: N = {r['documents N']} "
            f"documents (scenes) versus m = {r['tokens m']:,} tokens (bytes); delta = 0.05 each.",
            "Document level: Hoeffding over N scenes assumed i.i.d.; bounds the expected "
            "per-scene mean loss on a new scene. Token level: martingale over every byte; "
            "bounds the expected next-byte loss given the training contexts.",
            "Both pay the same code length; the complexity term scales as sqrt(K/N) versus "
            "sqrt(K/m) (or K/m for the betting/Bernstein families), which is the whole difference.",
            "Values above 8 bits/byte (random guessing) are vacuous."]


def plot(rows: list[dict], path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    x = list(range(len(rows)))
    with figure(path, (7, 3.6)) as (fig, ax):
        w = 0.4
        ax.bar([i - w / 2 for i in x], [r["document-level bound"] or 0 for r in rows], w,
               label="document level", color="tab:red")
        ax.bar([i + w / 2 for i in x], [r["token-level bound"] for r in rows], w,
               label="token level", color="tab:green")
        mark_references(ax, random_guess=8.0, guess_label="random guess log2 256")
        ax.set_yscale("log")
        ax.set_xticks(x, [r["variant"] for r in rows], rotation=25, ha="right", fontsize=7)
        ax.set_ylabel("bound, bits per byte (log scale)")
        ax.legend(fontsize=7)
    return path.name
