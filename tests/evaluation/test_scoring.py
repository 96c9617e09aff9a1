"""Engine scoring vs a naive one-forward-per-token loop; predictability (METHOD 7.1)."""

import numpy as np
import pytest
import torch

from tokenbound.bounds.grids import ALPHA_GRID, BETTING_LAMBDAS, CENTERS, TOPK
from tokenbound.evaluation.scoring import score_tokens, score_windows
from tokenbound.evaluation.stats import stats_meta
from tokenbound.evaluation.token_stats import token_stats_naive
from tokenbound.evaluation.windows import make_windows

from .helpers import V, make_stream, stream_from_docs

LENS = [5, 1, 23, 16, 9, 40]


def naive_per_token(fn, stream, L, s):
    """For each stream position p (doc d, aug index k = p - o + 1): ONE forward pass on the
    exact context aug[u : k] with u = 0 if k <= L else s * ceil((k - L) / s); stats of row -1."""
    out, off = [], stream.doc_offsets
    for d in range(len(off) - 1):
        aug = np.concatenate([[stream.start_id], stream.tokens[off[d]:off[d + 1]]]).astype(int)
        for k in range(1, len(aug)):
            u = 0 if k <= L else s * -(-(k - L) // s)
            with torch.inference_mode():
                z = fn(torch.tensor(aug[None, u:k]))[0, -1:]  # (1, V)
            out.append(token_stats_naive(z, torch.tensor([aug[k]])))
    return out


@pytest.mark.parametrize("L,s,bs", [(8, 8, 3), (8, 3, 8), (5, 1, 4)])
def test_engine_matches_naive_loop(gpt2_source, L, s, bs):
    st = make_stream(LENS)
    fn = gpt2_source.fn
    ref = naive_per_token(fn, st, L, s)
    w = make_windows(st.doc_offsets, L, s)
    idx = np.arange(len(w))
    ts = score_tokens(fn, st.tokens, st.doc_offsets, st.start_id, w, idx, batch_size=bs)
    np.testing.assert_allclose(ts.logp, [r.logp[0] for r in ref], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(ts.x, np.concatenate([r.x for r in ref]), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(ts.center, np.concatenate([r.center for r in ref]), rtol=1e-6,
                               atol=1e-6)
    np.testing.assert_allclose(ts.topk_center, np.concatenate([r.topk_center for r in ref]),
                               atol=1e-6)
    assert np.array_equal(ts.topk_err, np.concatenate([r.topk_err for r in ref]))
    # window sums (exact mode) equal per-token values summed, betting sums by a direct loop
    meta = stats_meta(V, ALPHA_GRID, TOPK, CENTERS, BETTING_LAMBDAS)
    ws = score_windows(fn, st.tokens, st.doc_offsets, st.start_id, w, idx, meta,
                       batch_size=bs, exact=True)
    starts = np.concatenate([[0], np.cumsum(w.n_scored)])
    for j in range(len(w)):
        sl = slice(starts[j], starts[j + 1])
        np.testing.assert_allclose(ws.sum_x[j], ts.x[sl].sum(0), rtol=1e-12)
        dev = ts.x[sl, :, None] - ts.center[sl]
        np.testing.assert_allclose(ws.sum_dev2[j], (dev ** 2).sum(0), rtol=1e-12, atol=1e-300)
    c = np.array(meta["c"])
    lam = BETTING_LAMBDAS[77]
    xi = (ts.center[:, 3, 1] - ts.x[:, 3]) / c[3]
    assert ws.betting[3, 1, 77] == pytest.approx(sum(np.log1p(lam * v) for v in xi), rel=1e-10)
    doc_of_tok = np.repeat(np.arange(len(LENS)), LENS)
    assert ws.doc_ids.tolist() == list(range(len(LENS)))
    np.testing.assert_allclose(ws.doc_sum_x[2], ts.x[doc_of_tok == 2].sum(0), rtol=1e-12)
    assert ws.doc_n.tolist() == LENS


def _predictable(fn, bs, L, s):
    """Change x_j for j > i and the document end: are l_i, Xhat_i, Xhat_{i+1} bitwise equal?"""
    rng = np.random.default_rng(3)
    base = make_stream([7, 30, 11])
    off = base.doc_offsets
    for i in [off[1] + 2, off[1] + 9, off[1] + 13, off[1] + 20]:
        docs = [base.tokens[off[d]:off[d + 1]] for d in range(3)]
        o = off[1]
        new_len = i - o + 1 + int(rng.integers(2, 25))  # new document end, same prefix
        tail = (base.tokens[i + 1:i + new_len - (i - o)] + 1) % (V - 1)  # every x_j changed
        docs[1] = np.concatenate([docs[1][:i - o + 1], tail, [V - 1]])
        other = stream_from_docs(docs)
        got = []
        for st in (base, other):
            w = make_windows(st.doc_offsets, L, s)
            ts = score_tokens(fn, st.tokens, st.doc_offsets, st.start_id, w,
                              np.arange(len(w)), batch_size=bs)
            got.append((ts.x[i], ts.logp[i], ts.center[i], ts.center[i + 1],
                        ts.topk_center[i + 1], ts.topk_err[i]))
        if not all(np.array_equal(a, b) for a, b in zip(*got)):
            return False
    return True


@pytest.mark.parametrize("bs", [1, 8])
@pytest.mark.parametrize("L,s", [(8, 8), (8, 3)])
def test_predictability_bitwise(gpt2_source, bs, L, s):
    assert _predictable(gpt2_source.fn, bs, L, s)


def test_predictability_bitwise_own_gpt():
    from tokenbound.models import GPTConfig, build_model

    for pos in ("learned", "rope"):
        model = build_model(GPTConfig(vocab_size=V, context_len=8, n_layer=2, n_head=2,
                                      d_model=16, position=pos, seed=1)).eval()
        assert _predictable(model, 8, 8, 3) and _predictable(model, 1, 8, 8)


def test_predictability_bitwise_wider_own_gpt():
    # d_model 64, L 32: wide enough that the CPU kernels block a length-20 and a length-32
    # input differently; this failed (last-bit logit differences) when windows ran at their own
    # length, before every forward pass got the shape (batch_size, L)
    from tokenbound.models import GPTConfig, build_model

    model = build_model(GPTConfig(vocab_size=V, context_len=32, n_layer=2, n_head=2,
                                  d_model=64, seed=1)).eval()
    assert _predictable(model, 1, 32, 5) and _predictable(model, 8, 32, 32)


def test_predictability_test_has_teeth(gpt2_source):
    def peeking(idx):  # adds a function of the whole window (future tokens included)
        peek = idx.float().mean(dim=1)[:, None, None] * torch.arange(V)[None, None, :]
        return gpt2_source.fn(idx) + 1e-3 * peek  # (B, T, V)

    assert not _predictable(peeking, 8, 8, 3)
