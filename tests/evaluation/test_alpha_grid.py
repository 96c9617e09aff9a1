"""The alpha grid goes past 0.5 (issue 17), paid as before; the paper mode keeps its own 8
values (METHOD 2.7); an evaluation made with the old grid certifies with the grid it recorded."""

import math

import numpy as np
import pytest

from tokenbound.bounds import certify_exact, grids, paper_bound, smoothing
from tokenbound.errors import OutDirMismatch
from tokenbound.evaluation import EvalConfig, evaluate
from tokenbound.evaluation.sources import ModelSource

from .helpers import V, Bigram, make_stream

LENS = [40, 25, 60, 33]


def _source():
    return ModelSource(Bigram(), V, None, {"kind": "test", "sha256": "bigram-0"})


def test_grid_values():
    assert grids.PAPER_ALPHA_GRID == (1e-4, 1e-3, 5e-3, 0.01, 0.05, 0.1, 0.25, 0.5)  # METHOD 2.7
    assert grids.ALPHA_GRID == grids.PAPER_ALPHA_GRID + (0.75, 0.9)
    assert list(grids.ALPHA_GRID) == sorted(set(grids.ALPHA_GRID))


def test_certify_exact_pays_ln_of_the_whole_grid():
    A, m = len(grids.ALPHA_GRID), 1000
    sx = np.array([0.3 * smoothing(V, al)[1] * m for al in grids.ALPHA_GRID])  # (A,)
    cert = certify_exact(m, sx, vocab_size=V, code_bits=800)
    assert {r.alpha for r in cert.candidates} == set(grids.ALPHA_GRID)
    for r in cert.candidates:
        assert r.grid_sizes["alpha"] == A == 10
        assert r.k_parts["grid:alpha"] == pytest.approx(math.log(10))


def _old_grid(monkeypatch):
    """Score as the code before issue 17 did: the paper's 8 alphas only."""
    from tokenbound.evaluation import engine, scoring

    monkeypatch.setattr(engine, "ALPHA_GRID", grids.PAPER_ALPHA_GRID)
    # scoring may take the alphas from the stats' meta instead (then it has no global)
    monkeypatch.setattr(scoring, "ALPHA_GRID", grids.PAPER_ALPHA_GRID, raising=False)


def test_old_grid_evaluation_certifies_with_its_recorded_grid(tmp_path, monkeypatch):
    from tokenbound.experiments import steps

    st = make_stream(LENS)
    with monkeypatch.context() as mp:
        _old_grid(mp)
        evaluate(_source(), st, str(tmp_path / "old"), EvalConfig(context_len=8))
    evaluate(_source(), st, str(tmp_path / "new"), EvalConfig(context_len=8))
    old, new = steps.certify(tmp_path / "old", 800), steps.certify(tmp_path / "new", 800)
    assert old.alphas == list(grids.PAPER_ALPHA_GRID)
    assert new.alphas == list(grids.ALPHA_GRID)
    for res, a in ((old, 8), (new, 10)):
        for c in res.token["candidates"]:
            assert c["grid_sizes"]["alpha"] == a
            assert c["k_parts"]["grid:alpha"] == pytest.approx(math.log(a))
        assert res.token["document"]["grid_sizes"]["alpha"] == a
    # the 8 common alphas: same statistics, so each candidate costs exactly ln(10/8) nats more
    pick = lambda res, al: [c for c in res.token["candidates"]
                            if c["alpha"] == al and c["family"] == "azuma"][0]
    for al in grids.PAPER_ALPHA_GRID:
        o, n = pick(old, al), pick(new, al)
        assert o["empirical"] == n["empirical"]
        assert n["k_nats"] - o["k_nats"] == pytest.approx(math.log(10 / 8), rel=1e-9)
    # resuming the old directory with today's grid is refused, not silently mixed
    with pytest.raises(OutDirMismatch, match="grids"):
        evaluate(_source(), st, str(tmp_path / "old"), EvalConfig(context_len=8))


def test_paper_mode_searches_only_the_papers_alphas(tmp_path):
    from tokenbound.evaluation import load_result
    from tokenbound.experiments import steps

    cfg = EvalConfig(context_len=8, mode="sampled", n_samples=300, seed=1)
    evaluate(_source(), make_stream(LENS), str(tmp_path), cfg)
    res = steps.certify(tmp_path, 800)
    stats, _ = load_result(str(tmp_path))
    Y = stats.sample_arrays()["Y"]  # (n, A) over the evaluated (10) alphas
    m, n = sum(LENS), Y.shape[0]
    want = min(paper_bound(smoothing(V, al)[0] + float(Y[:, ia].mean()), *smoothing(V, al), m, n,
                           800, alpha=al).value
               for ia, al in enumerate(grids.ALPHA_GRID) if al in grids.PAPER_ALPHA_GRID)
    assert res.paper["value"] == pytest.approx(want, rel=1e-14)
    assert res.paper["alpha"] in grids.PAPER_ALPHA_GRID
