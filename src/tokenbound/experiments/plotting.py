"""The plot behaviour shared by every figure of the package (`report.figure` hands it out).

* `figure`: a matplotlib `(fig, ax)` on the Agg backend; on leaving the block the y axis of `ax`
  becomes logarithmic when the plotted positive values span more than `LOG_SPAN` (`auto_yscale`),
  tick labels that would overlap are thinned or rotated (`declutter`), and the PNG is written.
* `mark_references`: the random-guess line (log2 V in bits, or 1 - k/V for a top-k error) and the
  chosen point (the certified or best one), each drawn and labelled with its value.

Only this module imports matplotlib (lazily: the package imports without it).
"""

from __future__ import annotations

import contextlib
import math

from tokenbound.fileio import atomic_path

LOG_SPAN = 100.0  # plotted positive values spanning more than this factor get a log y axis
ROTATION = 30  # degrees, for x tick labels that overlap when horizontal


def auto_yscale(values) -> str:
    """"log" when the finite positive `values` span more than `LOG_SPAN` (max / min), else
    "linear" (also with fewer than two such values). Zeros, negatives, NaN and None are ignored."""
    pos = [float(v) for v in values
           if v is not None and math.isfinite(float(v)) and float(v) > 0]
    if len(pos) < 2:
        return "linear"
    return "log" if max(pos) / min(pos) > LOG_SPAN else "linear"


def plotted_y(ax) -> list[float]:
    """The y values drawn on `ax`: line points, bar bottoms and tops, scatter points."""
    ys: list[float] = []
    for line in ax.get_lines():
        ys += [float(y) for y in line.get_ydata()]
    for p in ax.patches:
        if hasattr(p, "get_height"):
            ys += [float(p.get_y()), float(p.get_y() + p.get_height())]
    for c in ax.collections:
        ys += [float(y) for y in c.get_offsets()[:, 1]] if len(c.get_offsets()) else []
    return ys


def mark_references(ax, *, random_guess: float | None = None, guess_label: str = "random guess",
                    chosen: tuple | None = None, chosen_label: str = "chosen") -> None:
    """Draw on `ax` the random-guess level (a dotted horizontal line at y = `random_guess`,
    labelled "`guess_label` = value") and the chosen point `chosen` = (x, y) (a red star,
    labelled "`chosen_label`: y"), each only when given (a chosen y of None is skipped). The
    labels appear in the legend (call `ax.legend()` afterwards)."""
    if random_guess is not None:
        ax.axhline(random_guess, color="gray", lw=1, ls=":",
                   label=f"{guess_label} = {random_guess:.4g}")
    if chosen is not None and chosen[1] is not None:
        x, y = chosen
        ax.plot([x], [y], marker="*", ms=14, color="tab:red", ls="none", zorder=5,
                label=f"{chosen_label}: {y:.4g}")


def _shown_labels(axis) -> list:
    """The tick labels of `axis` (major and minor) drawn inside its view, non-empty."""
    lo, hi = sorted(axis.get_view_interval())
    tol = 1e-9 * max(abs(lo), abs(hi), 1.0)
    out = []
    for locs, ticks in ((axis.get_majorticklocs(), axis.get_major_ticks),
                        (axis.get_minorticklocs(), axis.get_minor_ticks)):
        for loc, tick in zip(locs, ticks(len(locs))):
            lab = tick.label1
            if lo - tol <= loc <= hi + tol and lab.get_visible() and lab.get_text():
                out.append(lab)
    return out


def label_box(label, renderer) -> tuple:
    """(center x, center y, width, height, angle in radians) of a drawn text on the canvas,
    in pixels: its unrotated size, centred where its rotated bounding box is centred."""
    angle = math.radians(label.get_rotation())
    cx, cy = label.get_window_extent(renderer).get_points().mean(axis=0)
    label.set_rotation(0)
    flat = label.get_window_extent(renderer)
    label.set_rotation(math.degrees(angle))
    return float(cx), float(cy), flat.width, flat.height, angle


def boxes_overlap(a: tuple, b: tuple) -> bool:
    """True when two `label_box`es of the same angle overlap (compared in their own frame)."""
    u, n = (math.cos(a[4]), math.sin(a[4])), (-math.sin(a[4]), math.cos(a[4]))
    dx, dy = b[0] - a[0], b[1] - a[1]
    return (abs(dx * u[0] + dy * u[1]) < (a[2] + b[2]) / 2
            and abs(dx * n[0] + dy * n[1]) < (a[3] + b[3]) / 2)


def overlapping(fig, axis) -> bool:
    """True when two drawn tick labels of `axis` overlap on the canvas of `fig` (drawn first)."""
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    boxes = [label_box(lab, r) for lab in _shown_labels(axis)]
    return any(boxes_overlap(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1:])


def _label_25(x, pos=None) -> str:
    """A minor log-axis label only at 2 and 5 x 10^k (mathtext, as matplotlib writes them)."""
    if not x > 0:
        return ""
    e = math.floor(math.log10(x) + 1e-9)
    m = x / 10.0 ** e
    return f"$\\mathdefault{{{round(m)}\\times10^{{{e}}}}}$" if (
        round(m) in (2, 5) and abs(m - round(m)) < 1e-6) else ""


def declutter(fig, axis, rotate: bool) -> None:
    """Make the tick labels of `axis` stop overlapping, trying in turn until none overlap: on a
    log axis, minor labels only at 2 and 5 x 10^k, then none; rotation by `ROTATION` degrees
    (`rotate`, for the x axis); then hiding every second, fourth, ... label (by position)."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    if not overlapping(fig, axis):
        return
    if axis.get_scale() == "log":
        axis.set_minor_formatter(FuncFormatter(_label_25))
        if not overlapping(fig, axis):
            return
        axis.set_minor_formatter(NullFormatter())
    if rotate and overlapping(fig, axis):
        for lab in axis.get_ticklabels(which="both"):
            lab.set_rotation(ROTATION)
            lab.set_horizontalalignment("right")
        fig.tight_layout()
    labels = sorted(_shown_labels(axis), key=lambda t: t.get_position()[0 if rotate else 1])
    step = 2
    while step < 64 and overlapping(fig, axis):
        for i, lab in enumerate(labels):
            lab.set_visible(i % step == 0)
        step *= 2


@contextlib.contextmanager
def figure(path, figsize=(6, 3.2), yscale: str = "auto"):
    """A matplotlib `(fig, ax)` on the Agg backend; on leaving the block the y axis of `ax` is
    set (`yscale` "auto": log when the plotted positive values span more than `LOG_SPAN` and the
    caller left it linear; or "linear" / "log"), the figure laid out, overlapping tick labels of
    every axes removed (`declutter`), saved to `path` (PNG, 100 dpi) and closed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=figsize, dpi=100)
    try:
        yield fig, ax
        if yscale != "auto":
            ax.set_yscale(yscale)
        elif ax.get_yscale() == "linear" and auto_yscale(plotted_y(ax)) == "log":
            ax.set_yscale("log")
        fig.tight_layout()
        for a in fig.axes:
            declutter(fig, a.xaxis, rotate=True)
            declutter(fig, a.yaxis, rotate=False)
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)
