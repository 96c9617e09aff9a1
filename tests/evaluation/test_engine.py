"""Shards, resume, manifests, stats files, sampled mode (METHOD 2.5, 3, 7.3)."""

import json
import os

import numpy as np
import pytest
from scipy import stats as sps

from tokenbound.bounds.grids import ALPHA_GRID
from tokenbound.errors import UserError
from tokenbound.evaluation import EvalConfig, ModelSource, WindowStats, evaluate, load_result
from tokenbound.evaluation.sampling import draw_positions, draw_windows
from tokenbound.evaluation.scoring import score_tokens
from tokenbound.evaluation.windows import make_windows

from .helpers import Bigram, V, make_stream

LENS = [12, 3, 50, 1, 33, 20, 7, 64]


def _arrays(st):
    return {f: getattr(st, f) for f in ("window_ids", "n_scored", "sum_x", "sum_dev2",
                                        "betting", "doc_sum_x", "doc_ids", "topk_err")}


def test_exact_totals_equal_token_sums(tmp_path, bigram_source):
    st = make_stream(LENS)
    cfg = EvalConfig(context_len=8, stride=5, shard_tokens=24)  # 3 windows per shard
    res = evaluate(bigram_source, st, str(tmp_path), cfg)
    stats, res2 = load_result(str(tmp_path))
    assert res == res2 and res["n_shards"] > 3
    w = make_windows(st.doc_offsets, 8, 5)
    ts = score_tokens(bigram_source.fn, st.tokens, st.doc_offsets, st.start_id, w,
                      np.arange(len(w)), batch_size=2)
    assert stats.totals()["n_tokens"] == sum(LENS) == res["totals"]["n_tokens"]
    np.testing.assert_allclose(stats.totals()["sum_x"], ts.x.sum(0), rtol=1e-12)
    np.testing.assert_allclose(res["totals"]["sum_x"], ts.x.sum(0), rtol=1e-12)
    lam, c = 0.3, np.array(stats.meta["c"])  # betting sums over shards = direct token sum
    k = int(np.argmin(abs(np.array(stats.meta["betting_lambdas"]) - lam)))
    lam = stats.meta["betting_lambdas"][k]
    direct = np.log1p(lam * (ts.center[:, 5, 0] - ts.x[:, 5]) / c[5]).sum()
    assert stats.betting[5, 0, k] == pytest.approx(direct, rel=1e-10)
    assert stats.doc_n.tolist() == LENS
    np.testing.assert_allclose(stats.doc_sum_x.sum(0), ts.x.sum(0), rtol=1e-12)
    man = json.load(open(tmp_path / "manifest.json"))
    assert man["model"]["sha256"] == "bigram-0" and man["stride"] == 5


class Killer(Bigram):
    """Raises KeyboardInterrupt on the k-th forward pass (a killed run)."""

    def __init__(self, k):
        super().__init__()
        self.calls, self.k = 0, k

    def forward(self, idx):
        self.calls += 1
        if self.calls == self.k:
            raise KeyboardInterrupt
        return super().forward(idx)


@pytest.mark.parametrize("mode", ["exact", "sampled"])
def test_kill_and_rerun_identical(tmp_path, bigram_source, mode):
    st = make_stream(LENS)
    kw = dict(context_len=8, stride=4, shard_tokens=16, batch_size=2, mode=mode,
              n_samples=40 if mode == "sampled" else None, seed=5)
    full = evaluate(bigram_source, st, str(tmp_path / "a"), EvalConfig(**kw))
    killer = ModelSource(Killer(7), V, None, bigram_source.ident)
    with pytest.raises(KeyboardInterrupt):
        evaluate(killer, st, str(tmp_path / "b"), EvalConfig(**kw))
    done = os.listdir(tmp_path / "b" / "shards")
    assert 0 < len(done) < full["n_shards"] and not (tmp_path / "b" / "eval.json").exists()
    assert all(f.endswith(".npz") and not f.endswith(".tmp.npz") for f in done)
    counter = ModelSource(Killer(10 ** 9), V, None, bigram_source.ident)
    again = evaluate(counter, st, str(tmp_path / "b"), EvalConfig(**kw))
    assert 0 < counter.fn.calls  # only the missing shards were scored
    assert again["totals"] == full["totals"]
    a, b = (load_result(str(tmp_path / d))[0] for d in "ab")
    for k, v in _arrays(a).items():
        assert (v is None and getattr(b, k) is None) or np.array_equal(v, getattr(b, k)), k
    rerun = ModelSource(Killer(1), V, None, bigram_source.ident)  # nothing left to score
    before = (tmp_path / "b" / "eval.json").read_text()
    assert evaluate(rerun, st, str(tmp_path / "b"), EvalConfig(**kw)) == again
    assert (tmp_path / "b" / "eval.json").read_text() == before  # its timing kept, not 0 tokens
    assert again["timing"]["tokens_scored_this_run"] > 0
    (tmp_path / "b" / "stats.npz").unlink()  # a damaged finished dir is merged again
    assert evaluate(rerun, st, str(tmp_path / "b"), EvalConfig(**kw))["totals"] == full["totals"]
    assert (tmp_path / "b" / "stats.npz").exists()


def test_resume_with_other_settings_is_recorded(tmp_path, bigram_source):
    st = make_stream(LENS)
    kw = dict(context_len=8, stride=4, shard_tokens=16)
    full = evaluate(bigram_source, st, str(tmp_path / "a"), EvalConfig(batch_size=2, **kw))
    assert full["numerics"] == [{"settings": {"device": "cpu", "batch_size": 2, "stats": "auto",
                                              "vocab_chunk": None, "compile": False},
                                 "shards": full["n_shards"]}]
    with pytest.raises(KeyboardInterrupt):
        evaluate(ModelSource(Killer(7), V, None, bigram_source.ident), st, str(tmp_path / "b"),
                 EvalConfig(batch_size=2, **kw))
    done = len(os.listdir(tmp_path / "b" / "shards"))
    res = evaluate(bigram_source, st, str(tmp_path / "b"), EvalConfig(batch_size=3, **kw))
    assert [(d["settings"]["batch_size"], d["shards"]) for d in res["numerics"]] == \
        [(2, done), (3, full["n_shards"] - done)]


def test_same_tokens_in_another_layout_is_another_evaluation(tmp_path, bigram_source):
    a = make_stream([30, 70])
    b = make_stream([30, 70])
    b.doc_offsets = np.array([0, 60, 100])  # the same tokens, other document boundaries
    cfg = EvalConfig(context_len=8, stride=8)
    evaluate(bigram_source, a, str(tmp_path), cfg)
    with pytest.raises(UserError, match="stream_identity"):
        evaluate(bigram_source, b, str(tmp_path), cfg)
    man = json.load(open(tmp_path / "manifest.json"))  # a directory from before the key resumes
    del man["stream_identity"]
    json.dump(man, open(tmp_path / "manifest.json", "w"))
    evaluate(bigram_source, a, str(tmp_path), cfg)


def test_mismatched_out_dir_and_bad_inputs(tmp_path, bigram_source):
    st = make_stream(LENS)
    evaluate(bigram_source, st, str(tmp_path), EvalConfig(context_len=8))
    other = ModelSource(bigram_source.fn, V, None, {"kind": "test", "sha256": "other"})
    with pytest.raises(UserError, match="model"):
        evaluate(other, st, str(tmp_path), EvalConfig(context_len=8))
    with pytest.raises(UserError, match="stride"):
        evaluate(bigram_source, st, str(tmp_path), EvalConfig(context_len=8, stride=4))
    with pytest.raises(UserError, match="stream_sha256"):
        evaluate(bigram_source, make_stream(LENS, seed=1), str(tmp_path), EvalConfig(8))
    small = ModelSource(bigram_source.fn, V - 1, None, {"kind": "test", "sha256": "x"})
    with pytest.raises(UserError, match="vocabulary"):
        evaluate(small, st, str(tmp_path / "v"), EvalConfig(context_len=8))
    short = ModelSource(bigram_source.fn, V, 4, {"kind": "test", "sha256": "x"})
    with pytest.raises(UserError, match="--context"):
        evaluate(short, st, str(tmp_path / "c"), EvalConfig(context_len=8))
    with pytest.raises(UserError, match="--samples"):
        EvalConfig(context_len=8, mode="sampled")
    with pytest.raises(UserError, match="--mode"):
        EvalConfig(context_len=8, mode="fast")


def test_stats_save_load_merge_roundtrip(tmp_path, bigram_source):
    st = make_stream(LENS)
    evaluate(bigram_source, st, str(tmp_path), EvalConfig(context_len=8, shard_tokens=16))
    shards = sorted(os.listdir(tmp_path / "shards"))
    parts = [WindowStats.load(str(tmp_path / "shards" / f)) for f in shards]
    merged = WindowStats.merge_all(parts)
    merged.save(str(tmp_path / "m.npz"))
    back = WindowStats.load(str(tmp_path / "m.npz"))
    for k, v in _arrays(merged).items():
        assert np.array_equal(v, getattr(back, k)), k
    # a document split over two shards is summed once in the merged per-document arrays
    assert back.doc_ids.tolist() == list(range(len(LENS))) and back.doc_n.tolist() == LENS
    with np.load(tmp_path / "m.npz", allow_pickle=False) as z:
        assert "meta_json" in z.files


def test_sampler_position_to_window_and_duplicates():
    off = np.concatenate([[0], np.cumsum(LENS)])
    pos = draw_positions(500, int(off[-1]), seed=3)
    again = draw_positions(500, int(off[-1]), seed=3)
    assert np.array_equal(pos, again) and not np.array_equal(pos, draw_positions(500, 200, 4))
    win = draw_windows(500, off, 8, 3, seed=3)
    w = make_windows(off, 8, 3)
    assert np.all((w.first_scored[win] <= pos) & (pos < w.first_scored[win] + w.n_scored[win]))
    assert len(np.unique(win)) < len(win)  # duplicates kept (500 draws, ~70 windows)


def test_sampler_frequencies_chi_square():
    # toy layout: window sizes 8 (first) and 3 (later) and the short tails; chi-square GOF
    off = np.concatenate([[0], np.cumsum(LENS)])
    w = make_windows(off, 8, 3)
    n = 20000
    counts = np.bincount(draw_windows(n, off, 8, 3, seed=11), minlength=len(w))
    expected = n * w.n_scored / off[-1]
    p = sps.chisquare(counts, expected).pvalue
    assert p > 1e-3
    # teeth: frequencies proportional to input length (context windows) are rejected
    wrong = n * w.input_len / w.input_len.sum()
    assert sps.chisquare(counts, wrong).pvalue < 1e-6


def test_sampled_mode_unbiased(tmp_path, bigram_source):
    """mean of Y over draws estimates the exact per-token mean (seeded; z-test at 4 sigma)."""
    st = make_stream(LENS)
    exact = evaluate(bigram_source, st, str(tmp_path / "e"), EvalConfig(context_len=8,
                                                                          stride=3))
    mean_x = np.array(exact["totals"]["mean_x"])
    res = evaluate(bigram_source, st, str(tmp_path / "s"),
                   EvalConfig(context_len=8, stride=3, mode="sampled", n_samples=4000, seed=2))
    stats, _ = load_result(str(tmp_path / "s"))
    arr = stats.sample_arrays()
    A = len(ALPHA_GRID)
    assert arr["Y"].shape == (4000, A) and arr["W"].shape == (4000, A, 2)
    assert res["totals"]["n_windows"] == len(np.unique(stats.draws)) < 4000
    y = arr["Y"]
    np.testing.assert_allclose(res["sample"]["mean_Y"], y.mean(0), rtol=1e-12)
    z = (y.mean(0) - mean_x) / (y.std(0, ddof=1) / np.sqrt(len(y)))
    assert np.all(abs(z) < 4), z
    # teeth: the naive per-window (unweighted) mean is biased on this layout
    wmean = stats.sum_x / stats.n_scored[:, None]
    ex, _ = load_result(str(tmp_path / "e"))
    unweighted = (ex.sum_x / ex.n_scored[:, None]).mean(0)
    assert np.any(abs(unweighted - mean_x) > 4 * y.std(0, ddof=1) / np.sqrt(len(y)))
    assert wmean.shape[1] == A
