"""Markov baseline: counting vs naive loops, the message round trip, bound inputs in range."""

import math
from collections import Counter

import numpy as np
import pytest
import torch

from tokenbound.baselines import markov as M
from tokenbound.evaluation import token_stats_naive


def _toy(seed=0, V=5, lens=(7, 1, 12, 4)):
    rng = np.random.default_rng(seed)
    docs = [rng.integers(0, V, n) for n in lens]
    return np.concatenate(docs), np.concatenate([[0], np.cumsum(lens)]), V


def _naive_counts(tokens, offsets, k, start):
    c = Counter()
    for d in range(len(offsets) - 1):
        doc = list(tokens[offsets[d]:offsets[d + 1]])
        padded = [start] * k + doc
        for i, x in enumerate(doc):
            c[(tuple(padded[i:i + k]), int(x))] += 1
    return c


@pytest.mark.parametrize("k", [0, 1, 2, 3])
def test_counts_match_naive_loop(k):
    tokens, off, V = _toy()
    mc = M.fit_counts(tokens, off, k, V, start_id=2)
    got = {}
    for key, n in zip(mc.keys, mc.counts):
        ctx, y = divmod(int(key), V)
        digits = tuple((ctx // V ** (k - 1 - j)) % V for j in range(k))  # oldest first
        got[(digits, y)] = int(n)
    assert got == dict(_naive_counts(tokens, off, k, 2))
    assert mc.counts.sum() == tokens.size


def test_log_probs_and_train_bits_match_hand_formula():
    tokens, off, V = _toy(1)
    k, beta = 2, 0.3
    mc = M.fit_counts(tokens, off, k, V, start_id=0)
    naive = _naive_counts(tokens, off, k, 0)
    ctx = M.context_ids(tokens, off, k, V, 0)
    lp = M.log_probs(mc, ctx, beta)  # (m, V)
    bits = []
    i = 0
    for d in range(len(off) - 1):
        doc = list(tokens[off[d]:off[d + 1]])
        padded = [0] * k + doc
        for j, x in enumerate(doc):
            c = tuple(padded[j:j + k])
            n_c = sum(n for (cc, _), n in naive.items() if cc == c)
            for y in range(V):  # p(y|c) = (n(c,y) + beta) / (n(c) + beta V)
                want = (naive.get((c, y), 0) + beta) / (n_c + beta * V)
                assert math.isclose(math.exp(lp[i, y]), want, rel_tol=1e-12)
            bits.append(-math.log2((naive[(c, int(x))] + beta) / (n_c + beta * V)))
            i += 1
    assert math.isclose(M.train_bits(mc, tokens, off, 0, beta), np.mean(bits), rel_tol=1e-12)


def test_gamma_codes_by_hand():
    # 1 -> "1", 2 -> "010", 5 -> "00101": concatenated "101000101" (9 bits)
    assert "".join(map(str, M.gamma_bits(np.array([1, 2, 5])))) == "101000101"
    big = np.array([2 ** 40 - 1, 2 ** 40, 3])
    r = M._GammaReader(np.packbits(M.gamma_bits(big)).tobytes())
    assert [r.read() for _ in range(3)] == [2 ** 40 - 1, 2 ** 40, 3]


@pytest.mark.parametrize("k", [0, 1, 3])
def test_message_round_trip_and_length(k):
    tokens, off, V = _toy(2, V=7, lens=(50, 3, 30))
    mc = M.fit_counts(tokens, off, k, V, start_id=6)
    msg = M.encode_counts(mc)
    back = M.decode_counts(msg)
    assert (back.order, back.vocab_size) == (k, V)
    assert np.array_equal(back.keys, mc.keys) and np.array_equal(back.counts, mc.counts)
    n_bits = M.gamma_bits(np.concatenate([[k + 1, V, mc.n_contexts + 1]])).size
    assert 8 * len(msg) >= n_bits + mc.n_pairs * 2  # >= 1 bit per symbol gap and count
    assert 8 * len(msg) - 7 <= sum(  # exact: the gamma codes, padded to a byte
        2 * int(v).bit_length() - 1 for v in _all_codes(mc)) <= 8 * len(msg)


def _all_codes(mc):
    V = mc.vocab_size
    out = [mc.order + 1, V, mc.n_contexts + 1]
    prev_c, prev_y, per = -1, -1, Counter(int(k) // V for k in mc.keys)
    for c in sorted(per):
        out.append(c - prev_c)
        prev_c = c
    out += [per[c] for c in sorted(per)]
    last_c = None
    for key in mc.keys:
        c, y = divmod(int(key), V)
        prev_y = -1 if c != last_c else prev_y
        out.append(y - prev_y)
        prev_y, last_c = y, c
    return out + [int(n) for n in mc.counts]


def test_token_sums_match_naive_stats_and_in_range():
    tokens, off, V = _toy(3, V=6, lens=(40, 25))
    mc = M.fit_counts(tokens, off, 1, V, start_id=0)
    sums = M.markov_token_sums(mc, tokens, off, 0, chunk=16)
    ctx = M.context_ids(tokens, off, 1, V, 0)
    ref = token_stats_naive(torch.from_numpy(M.log_probs(mc, ctx)),
                            torch.from_numpy(tokens.astype(np.int64)))
    np.testing.assert_allclose(sums["sum_x"], ref.x.sum(0), rtol=1e-9)
    np.testing.assert_allclose(sums["sum_center"], ref.center.sum(0), rtol=1e-5)
    from tokenbound.bounds import smoothing
    from tokenbound.bounds.grids import ALPHA_GRID
    for i, al in enumerate(ALPHA_GRID):
        _, c = smoothing(V, al)
        assert 0 <= sums["sum_x"][i] / sums["m"] <= c
        assert np.all(sums["sum_dev2"][i] / sums["m"] <= c * c)
    cert = M.certify_markov(sums, V, 8 * len(M.encode_counts(mc)))
    assert cert["token"]["value"] >= cert["token"]["empirical"]
    assert cert["token"]["code_bits"] == 8 * len(M.encode_counts(mc))
