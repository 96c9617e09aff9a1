"""Gold and invariant tests of the context policy (METHOD 3, 7.2)."""

import numpy as np
import pytest

from tokenbound.errors import UserError
from tokenbound.evaluation.windows import make_windows, padded_inputs, scoring_window, window_inputs


def test_docstring_example_gold():
    # 10 tokens, docs [0,7) and [7,10), L = 4, s = 2 (module docstring, worked by hand)
    w = make_windows(np.array([0, 7, 10]), 4, 2)
    assert w.doc.tolist() == [0, 0, 0, 1]
    assert w.input_start.tolist() == [-1, 1, 3, -1]
    assert w.input_len.tolist() == [4, 4, 3, 3]
    assert w.score_offset.tolist() == [0, 2, 2, 0]
    assert w.n_scored.tolist() == [4, 2, 1, 3]
    assert w.first_scored.tolist() == [0, 4, 6, 7]
    tokens = np.arange(100, 110)  # t_i = 100 + i; start_id = 7
    inp, tgt = window_inputs(tokens, [0, 7, 10], 7, w, np.array([0, 1]))
    assert inp.tolist() == [[7, 100, 101, 102], [101, 102, 103, 104]]
    assert tgt.tolist() == [[100, 101, 102, 103], [102, 103, 104, 105]]
    inp, tgt = window_inputs(tokens, [0, 7, 10], 7, w, np.array([2, 3]))
    assert inp.tolist() == [[103, 104, 105], [7, 107, 108]]
    assert tgt.tolist() == [[104, 105, 106], [107, 108, 109]]
    # every window at the full length L = 4, right-padded with pad id 0, in any order
    inp, tgt = padded_inputs(tokens, [0, 7, 10], 7, w, np.array([3, 0, 2, 1]), 0)
    assert inp.tolist() == [[7, 107, 108, 0], [7, 100, 101, 102], [103, 104, 105, 0],
                            [101, 102, 103, 104]]
    assert tgt.tolist() == [[107, 108, 109, 0], [100, 101, 102, 103], [104, 105, 106, 0],
                            [102, 103, 104, 105]]


def test_block_and_sliding_gold():
    # one doc of 5 tokens, L = 2. s = L: aug = S t0..t4, windows u = 0, 2, 4
    w = make_windows(np.array([0, 5]), 2, 2)
    assert w.input_start.tolist() == [-1, 1, 3]
    assert w.input_len.tolist() == [2, 2, 1]
    assert w.n_scored.tolist() == [2, 2, 1]
    # s = 1: window 0 scores t0 t1, then one token per window with L - 1 = 1 earlier input
    w = make_windows(np.array([0, 5]), 2, 1)
    assert w.input_start.tolist() == [-1, 0, 1, 2]
    assert w.score_offset.tolist() == [0, 1, 1, 1]
    assert w.n_scored.tolist() == [2, 1, 1, 1]
    assert w.first_scored.tolist() == [0, 2, 3, 4]


def _scored_positions(w):
    return np.concatenate([np.arange(f, f + k) for f, k in zip(w.first_scored, w.n_scored)])


@pytest.mark.parametrize("L,s", [(1, 1), (4, 1), (4, 3), (5, 5), (8, 3)])
def test_every_token_scored_exactly_once(L, s):
    rng = np.random.default_rng(0)
    lens = rng.integers(0, 30, size=40)  # includes empty documents
    off = np.concatenate([[0], np.cumsum(lens)])
    w = make_windows(off, L, s)
    pos = _scored_positions(w)
    assert np.array_equal(np.sort(pos), np.arange(off[-1]))  # incl. each closing EOT (last)
    # scored predictions are the window's last n_scored; context >= L - s + 1 inputs
    assert np.all(w.score_offset + w.n_scored == w.input_len)
    assert np.all(w.n_scored >= 1) and np.all(w.input_len <= L)
    ctx = np.where(w.input_start < 0, 1 + w.first_scored - off[w.doc],
                   w.first_scored - w.input_start)  # inputs before the first scored target
    assert np.all(ctx[w.score_offset > 0] == L - s + 1)
    # windows never cross a document boundary
    end = np.where(w.input_start < 0, off[w.doc] - 1, w.input_start) + w.input_len
    assert np.all(end <= off[w.doc + 1])


def test_context_start_depends_on_offset_only():
    # the window scoring doc position k starts at the same offset whatever the doc length
    L, s = 6, 4
    rng = np.random.default_rng(1)
    lens = rng.integers(1, 40, size=20)
    lens2 = lens + rng.integers(0, 15, size=20)  # perturb document lengths (longer)
    starts = []
    for ls in (lens, lens2):
        off = np.concatenate([[0], np.cumsum(ls)])
        w = make_windows(off, L, s)
        rel = {}
        for d, st, f, k in zip(w.doc, w.input_start, w.first_scored, w.n_scored):
            u = 0 if st < 0 else st - off[d] + 1  # input start in aug coordinates
            for p in range(f, f + k):
                rel[(int(d), int(p - off[d]))] = int(u)
        starts.append(rel)
    common = set(starts[0]) & set(starts[1])
    assert len(common) == int(lens.sum())
    assert all(starts[0][key] == starts[1][key] for key in common)


def test_scoring_window_maps_back():
    off = np.array([0, 3, 3, 20, 21, 60])  # with an empty document
    for L, s in [(4, 1), (4, 3), (7, 7)]:
        w = make_windows(off, L, s)
        pos = np.arange(off[-1])
        win = scoring_window(pos, off, L, s)
        assert np.all(w.first_scored[win] <= pos)
        assert np.all(pos < w.first_scored[win] + w.n_scored[win])


def test_bad_policy_raises():
    with pytest.raises(UserError, match="stride"):
        make_windows(np.array([0, 5]), 4, 5)
    with pytest.raises(UserError, match="stride"):
        make_windows(np.array([0, 5]), 4, 0)
    with pytest.raises(UserError, match="context"):
        make_windows(np.array([0, 5]), 0, 1)
    with pytest.raises(UserError, match="doc_offsets"):
        make_windows(np.array([0, 5, 3]), 4, 2)
    with pytest.raises(UserError, match="positions"):
        scoring_window(np.array([5]), np.array([0, 5]), 4, 2)
