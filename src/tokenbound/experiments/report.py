"""Reports: `report.json` (every number, for recomputation), `report.md` (a ten-second read) and
PNG plots (bound decomposition; bound versus alpha).

The report dictionary is built by the pipeline from `BoundResult.to_dict()` values; this module
only formats it. Numbers are copied, never recomputed or rounded before being stored in JSON.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
from pathlib import Path
from typing import Any

from tokenbound import __version__
from tokenbound.fileio import READ_ONLY, atomic_path, refresh_text


def git_commit() -> str | None:
    """The commit of the tokenbound checkout in use (None outside a git checkout)."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                           capture_output=True, text=True, timeout=5).stdout.strip()
    return out.stdout.strip() + ("+dirty" if dirty else "")


def provenance(**extra: Any) -> dict:
    """Package version, git commit and whatever the caller adds (configs, seeds, sha256s)."""
    return {"tokenbound_version": __version__, "git_commit": git_commit(), **extra}


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


def render_markdown(rep: dict) -> str:
    """The human summary: certified bound, its terms, the references, then the top-k bounds."""
    unit = rep.get("unit", "bits per token")
    best = rep["families"][rep["certified_family"]]
    lines = [
        f"# tokenbound certificate: {rep.get('name', 'run')}",
        "",
        f"**Certified bound: {fmt_cell(rep['bound_bits_per_token'])} {unit}** "
        f"(probability >= {1 - rep['delta']:.2f}; {'VACUOUS' if rep['vacuous'] else 'non-vacuous'}: "
        f"random guessing is {fmt_cell(rep['random_guess_bits_per_token'])}).",
        "",
        rep.get("what_is_bounded", ""),
        "",
        "| quantity | value |",
        "|---|---|",
        f"| certified bound ({rep['certified_family']}, alpha = {best['alpha']}) | "
        f"{fmt_cell(best['bound'])} |",
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
        "",
        "## Every family (the certified value is their minimum, with ln(#families) paid)",
        "",
        "| family | certificate | bound | empirical | complexity | sampling | alpha | center |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, f in rep["families"].items():
        lines.append(f"| {name} | {fmt_cell(f.get('certificate', True))} | "
                     f"{fmt_cell(f['bound'])} | {fmt_cell(f['empirical'])} | "
                     f"{fmt_cell(f['complexity_term'])} | {fmt_cell(f['sampling_term'])} | "
                     f"{f.get('alpha')} | {f.get('center') or '—'} |")
    topk = rep.get("topk", {})
    if topk:
        lines += ["", "## Top-k error bounds (each at the same delta)", "",
                  "| k | bound | empirical error | random guess (1 - k/V) |", "|---|---|---|---|"]
        for k, t in topk.items():
            lines.append(f"| {k} | {fmt_cell(t['bound'])} | {fmt_cell(t['empirical'])} | "
                         f"{fmt_cell(t['random_guess'])} |")
    notes = rep.get("notes", [])
    if notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    lines += ["", f"Full numbers and provenance: `report.json`. tokenbound "
              f"{rep['provenance'].get('tokenbound_version')}, commit "
              f"{rep['provenance'].get('git_commit')}.", ""]
    return "\n".join(lines)


@contextlib.contextmanager
def figure(path, figsize=(6, 3.2)):
    """A matplotlib `(fig, ax)` on the Agg backend; on leaving the block it is laid out,
    saved to `path` (PNG, 100 dpi) and closed. Shared by every plot of the package."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=figsize, dpi=100)
    try:
        yield fig, ax
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)


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
        ax.axhline(rep["random_guess_bits_per_token"], color="k", ls="--", lw=1,
                   label="random guess")
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
