"""Pure pieces of the memorization and pretrained experiments, checked by hand."""

import math

import numpy as np

from tokenbound.experiments import exp_memorization as MEM
from tokenbound.experiments import exp_pretrained as PRE


def test_eval_tree_by_hand():
    n = np.arange(12)
    tree = ("+", ("*", "n", "n"), 3)  # n^2 + 3 mod 10: 3, 4, 7, 12->2, 19->9, 28->8, ...
    assert list(MEM.eval_tree(tree, n)[:6]) == [3, 4, 7, 2, 9, 8]
    assert list(MEM.eval_tree(("-", 1, "n"), n)[:3]) == [1, 0, 9]  # (1 - n) mod 10


def test_documents_shapes_and_marginal():
    s, u = MEM.make_documents(50, 20, seed=3)
    assert len(s) == len(u) == 50
    for d in s + u:
        assert d.shape == (21,) and d[-1] == MEM.EOT and d[:-1].max() <= 9 and d.min() >= 0
    pool = np.concatenate([d[:-1] for d in s])
    assert set(np.concatenate([d[:-1] for d in u])) <= set(pool)  # drawn from the same values
    # structured documents are periodic with period dividing 10 (polynomials mod 10)
    assert all(np.array_equal(d[:10], d[10:20]) for d in s)


def _stats(m, V, alpha_x=2.0):
    """Totals of a fake evaluation: every token has X = alpha_x bits and center = X."""
    from tokenbound.bounds.grids import ALPHA_GRID, BETTING_LAMBDAS, CENTERS
    from tokenbound.bounds import smoothing

    A, C = len(ALPHA_GRID), len(CENTERS)
    x = np.array([min(alpha_x, smoothing(V, a)[1]) for a in ALPHA_GRID])
    tot = {"sum_x": x * m, "sum_center": np.repeat(x[:, None], C, 1) * m,
           "sum_dev2": np.zeros((A, C))}
    return tot, np.zeros((A, C, len(BETTING_LAMBDAS)))


def test_tokens_to_nonvacuous_is_the_crossing():
    V, m, C = 1000, 10_000, 2_000_000
    tot, bet = _stats(m, V)
    ms = PRE.tokens_to_nonvacuous(tot, bet, m, V, C)
    guess = math.log2(V)
    assert ms is not None and ms > m
    assert PRE.scaled_bound(tot, bet, m, ms, V, C, 0.05) < guess
    assert PRE.scaled_bound(tot, bet, m, int(ms / 1.02), V, C, 0.05) >= guess
    # the complexity K ~ C ln 2 must be paid: m* is at least C ln2 / c-scale, i.e. > C / 10
    assert ms > C / 10


def test_heldout_subset(tmp_path):
    from tokenbound.data import write_stream

    docs = [np.array([1, 2, 3, 0]), np.array([4, 0]), np.array([5, 5, 0])]
    write_stream(tmp_path / "h", docs, {"tokenizer": "t", "vocab_size": 6, "eot_id": 0,
                                        "start_id": 0})
    s = PRE.heldout_subset(tmp_path / "h", tmp_path / "sub", 2)
    assert s.n_docs == 2 and list(np.asarray(s.tokens)) == [1, 2, 3, 0, 4, 0]
