"""The shared plot behaviour (issue 17, "vacuous results should look vacuous"): log y axis when
the plotted values span orders of magnitude, the random-guess line and the chosen point marked
and labelled, no overlapping tick labels. Values of the Axes are inspected, not pixels."""

from __future__ import annotations

import contextlib
import math

import pytest

pytest.importorskip("matplotlib")

from tokenbound.experiments import exp_compression, exp_quantization, exp_scaling, plotting, report
from tokenbound.experiments.plotting import auto_yscale, figure, mark_references

# docs/RESULTS.md, `scaling` (full scale); the quick scale is the first four widths, whose
# log x axis labelled 6x10^4 ... 6x10^5 on top of each other before the fix
SCALING = [(32, 65_536, 4.0277, 3.7590, 6.6598), (64, 229_376, 3.9189, 3.6849, 6.5471),
           (96, 491_520, 3.8871, 3.6699, 6.5341), (128, 851_968, 3.8995, 3.6853, 6.5367),
           (192, 1_867_776, 3.8674, 3.6511, 6.5167)]


def scaling_rows(n: int) -> list[dict]:
    return [{"d_model": w, "total params": p, "smoothed empirical": e, "held-out bits/byte": h,
             "bound bits/byte": b} for w, p, e, h, b in SCALING[:n]]


@contextlib.contextmanager
def captured(monkeypatch, module):
    """Replace `module.figure` by the real one that also records each (fig, ax) it hands out."""
    seen = []

    @contextlib.contextmanager
    def spy(*a, **k):
        with figure(*a, **k) as (fig, ax):
            seen.append((fig, ax))
            yield fig, ax

    monkeypatch.setattr(module, "figure", spy)
    yield seen


def tick_overlaps(fig, ax, which: str = "x") -> list[tuple[str, str]]:
    """Pairs of drawn tick labels (inside the axes' span, visible, non-empty) that overlap: each
    label a rectangle of its unrotated size turned by its angle about its bounding box's centre;
    two such rectangles of one angle overlap when they do along and across the text."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)  # the figure was closed: a fresh canvas of the same size
    canvas.draw()
    r = canvas.get_renderer()
    axis = ax.xaxis if which == "x" else ax.yaxis
    box = ax.get_window_extent(r)
    lo, hi = (box.x0, box.x1) if which == "x" else (box.y0, box.y1)
    shown = []
    for lab in axis.get_ticklabels(which="both"):
        (x0, y0), (x1, y1) = lab.get_window_extent(r).get_points()
        mid = (x0 + x1) / 2 if which == "x" else (y0 + y1) / 2
        if lab.get_visible() and lab.get_text() and lo - 1 <= mid <= hi + 1:
            t = math.radians(lab.get_rotation())
            upright = lab.get_fontproperties(), lab.get_text()
            w, h, _ = r.get_text_width_height_descent(upright[1], upright[0],
                                                      ismath=lab.get_text().startswith("$"))
            shown.append((lab.get_text(), (x0 + x1) / 2, (y0 + y1) / 2, w, h, t))
    out = []
    for i, (na, xa, ya, wa, ha, t) in enumerate(shown):
        for nb, xb, yb, wb, hb, _ in shown[i + 1:]:
            along = abs((xb - xa) * math.cos(t) + (yb - ya) * math.sin(t))
            across = abs(-(xb - xa) * math.sin(t) + (yb - ya) * math.cos(t))
            if along < (wa + wb) / 2 and across < (ha + hb) / 2:
                out.append((na, nb))
    return out


def star(ax):
    """(x, y, label) of the chosen-point marker on `ax`."""
    (line,) = [ln for ln in ax.get_lines() if ln.get_marker() == "*"]
    return float(line.get_xdata()[0]), float(line.get_ydata()[0]), line.get_label()


def hline(ax, y: float):
    """The label of the horizontal line drawn at height `y` (None if there is none)."""
    for ln in ax.get_lines():
        ys = list(ln.get_ydata())
        if len(ys) == 2 and ys[0] == ys[1] == y and list(ln.get_xdata()) == [0, 1]:
            return ln.get_label()
    return None


@pytest.mark.parametrize("values,scale", [
    ([3.5, 6.5, 8.0], "linear"),           # bits per byte: one order of magnitude
    ([3.6, 8.0, 12.4], "linear"),
    ([0.5, 50.0], "linear"),                # exactly 2 orders: not more than LOG_SPAN
    ([3.6, 8.0, 4_000.0], "log"),           # a document-level bound beside token-level ones
    ([0.001, 0.5, 1.0], "log"),
    ([0.0, -2.0, float("nan"), None, 1.0, 50.0], "linear"),  # non-positive and missing ignored
    ([0.0, 5.0], "linear"), ([], "linear"),
])
def test_auto_yscale(values, scale):
    assert auto_yscale(values) == scale


def test_figure_sets_log_only_for_wide_spans(tmp_path):
    with figure(tmp_path / "wide.png") as (_, wide):
        wide.bar([0, 1, 2], [3.6, 8.0, 4_000.0])
    with figure(tmp_path / "narrow.png") as (_, narrow):
        narrow.plot([1, 2, 3], [3.6, 6.5, 8.0])
    with figure(tmp_path / "forced.png", yscale="linear") as (_, forced):
        forced.plot([1, 2], [0.001, 0.9])
    assert (wide.get_yscale(), narrow.get_yscale(), forced.get_yscale()) == (
        "log", "linear", "linear")
    assert (tmp_path / "wide.png").stat().st_size > 1000


def test_mark_references_line_and_point(tmp_path):
    with figure(tmp_path / "m.png") as (_, ax):
        ax.plot([1, 2, 3], [5.0, 4.0, 4.5])
        mark_references(ax, random_guess=1 - 10 / 256, guess_label="random guess 1 - k/V",
                        chosen=(2, 4.0), chosen_label="certified")
        mark_references(ax, chosen=(3, None))  # no value: nothing drawn
    assert hline(ax, 1 - 10 / 256) == "random guess 1 - k/V = 0.9609"
    assert star(ax) == (2.0, 4.0, "certified: 4")


@pytest.mark.parametrize("n", [4, 5])  # quick and full scale
def test_scaling_plot(monkeypatch, tmp_path, n):
    with captured(monkeypatch, exp_scaling) as seen:
        assert exp_scaling.plot(scaling_rows(n), tmp_path / "scaling.png") == "scaling.png"
    (fig, ax), = seen
    best = min(scaling_rows(n), key=lambda r: r["bound bits/byte"])
    assert ax.get_yscale() == "linear" and ax.get_xscale() == "log"
    assert hline(ax, 8.0) == "random guess log2 256 = 8"
    assert star(ax) == (best["total params"], best["bound bits/byte"],
                        f"lowest bound: {best['bound bits/byte']:.4g}")
    assert tick_overlaps(fig, ax, "x") == [] and tick_overlaps(fig, ax, "y") == []


def test_long_category_labels_rotate_without_overlap(monkeypatch, tmp_path):
    names = ["dense + PTQ", "LoRA", "Kronecker", "Monarch", "SubLoRA", "Kronecker + subspace",
             "dense + subspace"]
    rows = [{"variant": v, "certified": 6.5 + i, "train bits/byte": 3.5,
             "held-out bits/byte": 3.7} for i, v in enumerate(names)]
    with captured(monkeypatch, exp_compression) as seen:
        exp_compression.plot(rows, tmp_path / "c.png")
    (fig, ax), = seen
    assert tick_overlaps(fig, ax) == []
    assert [t.get_text() for t in ax.get_xticklabels() if t.get_visible()] == names
    assert star(ax)[:2] == (0.0, 6.5) and hline(ax, 8.0) is not None


def test_declutter_thins_crowded_labels(tmp_path):
    with figure(tmp_path / "t.png", figsize=(2, 2)) as (fig, ax):
        ax.set_xticks(range(40), [f"label {i}" for i in range(40)])
    assert tick_overlaps(fig, ax) == []
    assert 1 < sum(t.get_visible() for t in ax.get_xticklabels()) < 40


def test_quantization_marks_the_paid_choice(monkeypatch, tmp_path):
    rows = [{"levels": L, "bound bits/byte": b, "train bits/byte": 3.6, "code bits": c}
            for L, b, c in ((3, 5.74, 28_000), (5, 5.75, 40_000), (7, 5.9, 47_000))]
    paid = {**rows[0], "levels": "best (3), +2 bits paid", "bound bits/byte": 5.7402}
    with captured(monkeypatch, exp_quantization) as seen:
        exp_quantization.plot(rows, tmp_path / "q.png", paid=paid)
    (_, ax), = seen
    assert star(ax)[:2] == (3.0, 5.7402) and hline(ax, 8.0) is not None


def test_report_plots_mark_certified_alpha(monkeypatch, tmp_path):
    fam = {"empirical": 4.0, "complexity_term": 2.0, "sampling_term": 0.0}
    rep = {"families": {"betting": {**fam, "alpha": 0.01, "bound": 6.0},
                        "azuma": {**fam, "alpha": 0.1, "bound": 6.4}},
           "certified_family": "betting", "random_guess_bits_per_token": math.log2(256),
           "bound_vs_alpha": {"betting": [{"alpha": a, "bound": b} for a, b in
                                          ((0.001, 6.3), (0.01, 6.0), (0.1, 6.2))]}}
    with captured(monkeypatch, report) as seen:
        assert report.plot_report(rep, tmp_path) == ["bound_decomposition.png",
                                                     "bound_vs_alpha.png"]
    (_, bars), (_, curve) = seen
    assert hline(bars, 8.0) == hline(curve, 8.0) == "random guess = 8"
    assert star(curve) == (0.01, 6.0, "certified (betting): 6")
