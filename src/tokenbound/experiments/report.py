"""Reports and provenance: the only module that renders results files.

`tokenbound run`: `build_report` turns the steps' typed results (`results.RunResults`) into the
report dictionary, `write_report` writes `report.json` (every number, for recomputation),
`report.md` (a ten-second read) and PNG plots (bound decomposition; bound versus alpha).
`tokenbound experiment NAME`: `write_results` writes `results.json` and `results.md`.
Every one of them carries the package version and git commit (`provenance`). Numbers are
copied, never recomputed or rounded before being stored in JSON.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from tokenbound.experiments.plotting import figure, mark_references  # noqa: F401 (re-exported)
from tokenbound.experiments.results import Certified, RunResults
from tokenbound.fileio import READ_ONLY, atomic_write_json, atomic_write_text, refresh_text
from tokenbound.provenance import package_info


def provenance(**extra: Any) -> dict:
    """Package version, git commit (`tokenbound.provenance.package_info`) and whatever the
    caller adds (configs, seeds, sha256s)."""
    return {**package_info(), **extra}


# ---- the report of `tokenbound run` ------------------------------------------------------------
def build_report(recipe, res: RunResults) -> dict:
    """The report dictionary (report.json) of a `tokenbound run`: every number copied from the
    steps' typed results (`res`), never recomputed; `recipe` is the run's `Recipe`."""
    from tokenbound.data import open_stream
    from tokenbound.experiments.steps import LOSS_SEED, QAT_SEED

    cert, comp, ev, held = res.certified, res.compressed, res.evaluated, res.heldout
    stream = open_stream(str(Path(recipe.out).resolve() / "data" / "train"))
    tok = stream.meta.get("tokenizer")
    unit = "bits per byte" if tok == "bytes" else "bits per token"
    best = cert.best
    rep = {
        "name": recipe.name, "unit": unit,
        "bound_bits_per_token": best["value"], "certified_family": best["family"],
        "families": _families(cert),
        "what_is_bounded": _statement(unit),
        "empirical_bits_per_token": cert.mean_bits if cert.mean_bits is not None
        else ev.totals.get("mean_bits"),
        "heldout_bits_per_token": None if held is None else held.totals.get("mean_bits"),
        "random_guess_bits_per_token": math.log2(cert.vocab_size),
        "vacuous": best["vacuous"], "trivial": best.get("trivial", False), "delta": recipe.delta,
        "code_bits": comp.total_bits, "prefix_free_bits": comp.prefix_free_bits,
        "extra_bits": recipe.extra_bits,
        "bits_by_part": comp.bits_by_part, "trained_parameters": comp.trained_parameters,
        "quantization": {k: getattr(comp, k) for k in ("quant", "loss_before", "loss_after",
                                                       "loss_increase", "qat_steps")},
        "n_tokens": cert.m, "n_scored": ev.totals.get("n_tokens"),
        "mode": cert.mode,
        "bound_vs_alpha": _curve(cert),
        "topk": {k: {"bound": t["best"]["value"], "trivial": t["best"].get("trivial", False),
                     "empirical": t["best"]["empirical"],
                     "family": t["best"]["family"], "random_guess": t["best"]["random_guess"]}
                 for k, t in cert.topk.items()} if cert.mode == "exact" else {},
        "document_level": cert.token.get("document"),
        "per_byte": _per_byte(stream, cert, unit),
        "train": res.trained, "timings_s": res.timings,
        "notes": _notes(stream, cert, recipe.heldout, res.heldout_status),
        "bound": cert.to_dict(),
        "provenance": provenance(
            recipe=recipe.to_dict(), data_sha256=stream.sha256, data_meta_request=stream.meta.get(
                "request"), message_sha256=comp.sha256, eval_model_sha256=ev.model_sha256,
            seeds={"model": (recipe.model or {}).get("seed", 0),
                   "data_order": recipe.train.get("seed", 0),
                   "eval_sampling": recipe.evaluate.get("seed", 0),
                   "quant_loss_estimate": LOSS_SEED, "qat": QAT_SEED}),
    }
    for k in ("1", "10", "100"):
        if k in rep["topk"]:
            rep[f"top{k}_error_bound"] = rep["topk"][k]["bound"]
    rep["heldout_status"] = res.heldout_status
    rep["steps_reused"] = list(res.steps_reused)
    return rep


def _families(cert: Certified) -> dict:
    """Best candidate of each family (all were paid for in the union bound) + paper mode."""
    from tokenbound.bounds import best_per_family

    fams = {f: {"bound": c["value"], "empirical": c["empirical"],
                "complexity_term": c["complexity_term"], "sampling_term": c["sampling_term"],
                "alpha": c["alpha"], "center": c["center"], "lam": c["lam"],
                "k_nats": c["k_nats"], "certificate": c["certificate"],
                "trivial": c.get("trivial", False)}
            for f, c in best_per_family(cert.token["candidates"]).items()}
    if cert.paper:
        p = cert.paper
        fams["paper (not a certificate)"] = {
            "bound": p["value"], "empirical": p["empirical"],
            "complexity_term": p["complexity_term"], "sampling_term": p["sampling_term"],
            "alpha": p["alpha"], "center": None, "lam": None, "k_nats": p["k_nats"],
            "certificate": False, "trivial": p.get("trivial", False)}
    return fams


def _curve(cert: Certified) -> dict:
    """Per family, the best bound at each alpha (for the bound-versus-alpha plot)."""
    from tokenbound.bounds import best_per_family

    curve: dict = {}
    for (f, a), c in best_per_family(cert.token["candidates"], by_alpha=True).items():
        curve.setdefault(f, {})[a] = c["value"]
    return {f: [{"alpha": a, "bound": v} for a, v in sorted(p.items())] for f, p in curve.items()}


def _statement(unit: str) -> str:
    return (f"What is bounded: the model's expected next-token loss ({unit}, prediction-smoothed), "
            "averaged over the training positions, where the expectation is over the true "
            "distribution of each next token **given its training context**. It is not the "
            "loss on new documents.")


def _notes(stream, cert: Certified, heldout_wanted: bool, heldout_status: str) -> list[str]:
    notes = []
    if not stream.meta.get("eot_delimited", False):
        notes.append("Documents are delimited without an end-of-text token: the risk is "
                     "conditional on the document layout (where each document starts).")
    if cert.mode == "exact":
        notes.append("Exact mode: every training token was scored, so there is no sampling term.")
        notes.append("Top-k error bounds and the document-level bound are separate certificates, "
                     "each at the same delta.")
    else:
        notes.append(f"Sampled mode: n = {cert.n:,} positions drawn uniformly with replacement; "
                     "the sampling terms pay for every candidate compared on the sample.")
    doc = cert.token.get("document")
    if doc:
        notes.append(f"Document-level bound (documents assumed i.i.d., N = {doc['m']:,}): "
                     f"{doc['value']:.4f} (alpha = {doc['alpha']}).")
    if heldout_status != "measured" and heldout_wanted:
        notes.append(f"Held-out loss {heldout_status}" + (
            " (no document fell in the held-out split; a single text file is one document "
            "unless `doc_separator:` under `data:` splits it)." if "empty" in heldout_status
            else "."))
    return notes


# ---- rendering ---------------------------------------------------------------------------------
def fmt_cell(x: Any, digits: int = 4, compact: bool = False) -> str:
    """One table cell: None -> "—", bools yes/no, ints with thousands separators, floats with
    `digits` decimals (`compact`: |x| >= 1e4 or 0 < |x| < 1e-3 in 4 significant digits, for
    experiment tables whose columns mix bit counts, bounds and tiny p-values)."""
    if x is None:
        return "—"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return f"{x:,}"
    if isinstance(x, float):
        if compact and (abs(x) >= 1e4 or (x != 0 and abs(x) < 1e-3)):
            return f"{x:,.4g}"
        return f"{x:.{digits}f}"
    return str(x)


def _bound_cell(value, trivial) -> str:
    """A bound for a table: `fmt_cell`'s text, labelled when it was capped at the trivial a + c."""
    from tokenbound.bounds import TRIVIAL_LABEL

    return fmt_cell(value) + (f" {TRIVIAL_LABEL}" if trivial else "")


def _per_byte(stream, cert, unit: str) -> dict | None:
    """The bound and the training loss in bits per UTF-8 byte, for tokenizers other than bytes.

    The bound holds for the mean over the `m` scored tokens, so it holds for their sum `m * B`,
    and so for `m * B / n_bytes` bits per byte of the text those tokens cover (end-of-text tokens
    cover no byte): a fixed rescaling, no new inequality. Bytes compare across tokenizers; tokens
    do not. None when the stream does not record `n_bytes` or is not the certified population.
    """
    n_bytes = getattr(stream, "n_bytes", None)
    if unit == "bits per byte" or not n_bytes or len(stream) != cert.m:
        return None
    scale = cert.m / n_bytes
    mean = cert.mean_bits
    return {"n_bytes": int(n_bytes), "tokens_per_byte": scale,
            "bound_bits_per_byte": cert.best["value"] * scale,
            "empirical_bits_per_byte": None if mean is None else mean * scale}


def render_markdown(rep: dict) -> str:
    """The human summary: certified bound, its terms, the references, then the top-k bounds."""
    unit = rep.get("unit", "bits per token")
    best = rep["families"][rep["certified_family"]]
    lines = [
        f"# tokenbound certificate: {rep.get('name', 'run')}",
        "",
        f"**Certified bound: {_bound_cell(rep['bound_bits_per_token'], rep.get('trivial'))} "
        f"{unit}** "
        f"(probability >= {1 - rep['delta']:.2f}; {'VACUOUS' if rep['vacuous'] else 'non-vacuous'}: "
        f"random guessing is {fmt_cell(rep['random_guess_bits_per_token'])}).",
        "",
        rep.get("what_is_bounded", ""),
        "",
        "| quantity | value |",
        "|---|---|",
        f"| certified bound ({rep['certified_family']}, alpha = {best['alpha']}) | "
        f"{_bound_cell(best['bound'], best.get('trivial'))} |",
        f"| = smoothed training loss (offset included) | {fmt_cell(best['empirical'])} |",
        f"| + complexity term | {fmt_cell(best['complexity_term'])} |",
        f"| + sampling term | {fmt_cell(best['sampling_term'])} |",
        f"| training loss, unsmoothed | {fmt_cell(rep['empirical_bits_per_token'])} |",
        f"| held-out loss, unsmoothed | {fmt_cell(rep.get('heldout_bits_per_token'))} |",
        f"| random guess | {fmt_cell(rep['random_guess_bits_per_token'])} |",
        f"| message length C (bits) | {fmt_cell(rep['code_bits'])} |",
        *([f"| + bits paid for choices made on the data | {fmt_cell(rep['extra_bits'])} |"]
          if rep.get("extra_bits") else []),
        f"| tokens m / scored | {fmt_cell(rep['n_tokens'])} / {fmt_cell(rep['n_scored'])} |",
        *([f"| certified bound in bits per byte ({fmt_cell(pb['n_bytes'])} bytes of text) | "
           f"{fmt_cell(pb['bound_bits_per_byte'])} |",
           f"| training loss in bits per byte, unsmoothed | "
           f"{fmt_cell(pb['empirical_bits_per_byte'])} |"] if (pb := rep.get("per_byte")) else []),
        "",
        "## Every family (the certified value is their minimum, with ln(#families) paid)",
        "",
        "| family | certificate | bound | empirical | complexity | sampling | alpha | center |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, f in rep["families"].items():
        lines.append(f"| {name} | {fmt_cell(f.get('certificate', True))} | "
                     f"{_bound_cell(f['bound'], f.get('trivial'))} | {fmt_cell(f['empirical'])} | "
                     f"{fmt_cell(f['complexity_term'])} | {fmt_cell(f['sampling_term'])} | "
                     f"{f.get('alpha')} | {f.get('center') or '—'} |")
    topk = rep.get("topk", {})
    if topk:
        lines += ["", "## Top-k error bounds (each at the same delta)", "",
                  "| k | bound | empirical error | random guess (1 - k/V) |", "|---|---|---|---|"]
        for k, t in topk.items():
            lines.append(f"| {k} | {_bound_cell(t['bound'], t.get('trivial'))} | "
                         f"{fmt_cell(t['empirical'])} | "
                         f"{fmt_cell(t['random_guess'])} |")
    notes = rep.get("notes", [])
    if notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    lines += ["", f"Full numbers and provenance: `report.json`. tokenbound "
              f"{rep['provenance'].get('tokenbound_version')}, commit "
              f"{rep['provenance'].get('git_commit')}.", ""]
    return "\n".join(lines)


def plot_report(rep: dict, out_dir: Path) -> list[str]:
    """bound_decomposition.png (stacked terms per family) and bound_vs_alpha.png."""
    written = []
    fams = rep["families"]
    names = list(fams)
    emp = [fams[n]["empirical"] for n in names]
    comp = [fams[n]["complexity_term"] for n in names]
    samp = [fams[n]["sampling_term"] for n in names]
    with figure(out_dir / "bound_decomposition.png") as (fig, ax):
        ax.bar(names, emp, label="smoothed training loss")
        ax.bar(names, comp, bottom=emp, label="complexity")
        ax.bar(names, samp, bottom=[e + c for e, c in zip(emp, comp)], label="sampling")
        mark_references(ax, random_guess=rep["random_guess_bits_per_token"])
        ax.set_ylabel(rep.get("unit", "bits per token"))
        ax.set_title("bound decomposition")
        ax.legend(fontsize=7)
    written.append("bound_decomposition.png")

    curve = rep.get("bound_vs_alpha", {})
    if curve:
        with figure(out_dir / "bound_vs_alpha.png") as (fig, ax):
            for fam, pts in curve.items():
                xs = [p["alpha"] for p in pts]
                ax.plot(xs, [p["bound"] for p in pts], marker="o", label=fam)
            best = fams[rep["certified_family"]]
            mark_references(ax, random_guess=rep["random_guess_bits_per_token"],
                            chosen=(best["alpha"], best["bound"]),
                            chosen_label=f"certified ({rep['certified_family']})")
            ax.set_xscale("log")
            ax.set_xlabel("prediction smoothing alpha")
            ax.set_ylabel(rep.get("unit", "bits per token"))
            ax.set_title("bound versus alpha (all paid for in the union bound)")
            ax.legend(fontsize=7)
        written.append("bound_vs_alpha.png")
    return written


def write_report(rep: dict, out_dir: str | Path, plots: bool = True) -> dict:
    """Write report.json, report.md and plots into `out_dir`; return {name: path}."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    refresh_text(out / "report.json", json.dumps(rep, indent=2, sort_keys=False) + "\n")
    refresh_text(out / "report.md", render_markdown(rep))
    paths = {"report.json": str(out / "report.json"), "report.md": str(out / "report.md")}
    if plots:
        try:
            names = plot_report(rep, out)
        except OSError as exc:  # a finished run in a read-only directory keeps its plots
            if exc.errno not in READ_ONLY:
                raise
            names = [p.name for p in out.glob("*.png")]
        for name in names:
            paths[name] = str(out / name)
    return paths


# ---- the results of `tokenbound experiment NAME` -----------------------------------------------
def write_results(name: str, res: dict, out_dir: str | Path, run_info: dict) -> str:
    """Write OUT/results.json and OUT/results.md of experiment `name`; return the markdown.

    `res` is the experiment's results dict (optional keys: `title`, `columns`, `rows` (dicts
    keyed by column, or lists in column order), `notes`, `plots`); `run_info` (command line,
    machine, date, wall seconds) and `provenance()` are added under `provenance`.
    """
    res = dict(res)
    res["provenance"] = {**res.get("provenance", {}), **provenance(**run_info)}
    out = Path(out_dir)
    atomic_write_json(out / "results.json", res, indent=2, default=str)
    text = render_results(name, res)
    atomic_write_text(out / "results.md", text)
    return text


def format_table(columns: list, rows: list) -> str:
    """A markdown table of rows (dicts keyed by column, or lists in column order)."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        vals = [r.get(c) for c in columns] if isinstance(r, dict) else list(r)
        lines.append("| " + " | ".join(fmt_cell(v, compact=True) for v in vals) + " |")
    return "\n".join(lines)


def render_results(name: str, res: dict) -> str:
    """results.md: title, table, notes, plots, then command / machine / date / version."""
    parts = [f"## {res.get('title', name)}", ""]
    if res.get("columns") and res.get("rows") is not None:
        parts += [format_table(res["columns"], res["rows"]), ""]
    else:
        body = {k: v for k, v in res.items() if k not in ("provenance", "title")}
        parts += ["```json", json.dumps(body, indent=2, default=str), "```", ""]
    parts += [f"- {n}" for n in res.get("notes", [])]
    parts += [f"![{p}]({p})" for p in res.get("plots", [])]
    p = res.get("provenance", {})
    parts += ["", f"Command: `{p.get('command')}`  ", f"Machine: {p.get('machine')}  ",
              f"Date: {p.get('date')} (wall time {p.get('wall_s')} s)  ",
              f"tokenbound {p.get('tokenbound_version')}, commit {p.get('git_commit')}", ""]
    return "\n".join(parts)
