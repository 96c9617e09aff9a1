"""`tokenbound bound` on a 48-symbol vocabulary: no top-100 row (k >= V), and a bound that the
code length makes trivial is printed as trivial (issue 17)."""

import math

import pytest

from tokenbound.cli import main
from tokenbound.evaluation import EvalConfig, evaluate

from .helpers import V, make_stream


@pytest.fixture(scope="module")
def eval_dir(tmp_path_factory):
    from tokenbound.evaluation.sources import ModelSource

    from .helpers import Bigram

    out = tmp_path_factory.mktemp("trivial") / "ev"
    src = ModelSource(Bigram(), V, None, {"kind": "test", "sha256": "bigram-0"})
    evaluate(src, make_stream([40, 25, 60]), str(out), EvalConfig(context_len=8))
    return out


def test_certify_skips_top100_below_100_symbols(eval_dir):
    from tokenbound.experiments import steps

    res = steps.certify(eval_dir, 1000)
    assert V == 48 and res.topk.keys() == {"1", "10"}
    for t in res.topk.values():
        assert t["best"]["random_guess"] > 0
        assert t["best"]["grid_sizes"]["k"] == 3  # the choice of k is paid as before


def test_bound_prints_trivial_and_no_top100(eval_dir, capsys):
    from tokenbound.bounds import TRIVIAL_LABEL

    assert main(["bound", str(eval_dir), "--code-bits", str(10**10)]) == 0
    text = capsys.readouterr().out
    # a + c = log2(V / alpha) at the grid's largest alpha (the smallest trivial value)
    from tokenbound.bounds.grids import ALPHA_GRID

    trivial = math.log2(V / max(ALPHA_GRID))
    assert text.startswith(f"certified bound: {trivial:.4f} {TRIVIAL_LABEL} bits/token")
    assert "VACUOUS" in text and "top-100" not in text and "random guess -" not in text
    assert f"top-1 error bound 1.0000 {TRIVIAL_LABEL}" in text
