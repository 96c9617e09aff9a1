"""Evaluation directories that prove their origin: locks, shard identities, damaged files,
impossible sample sizes, and the linear merge of shards (issue 16 items 1, 4, 6, 8; issue 20)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tokenbound import fileio
from tokenbound.cli import main
from tokenbound.errors import UserError
from tokenbound.evaluation import EvalConfig, ModelSource, WindowStats, evaluate, load_result
from tokenbound.evaluation.shards import load_shards, shard_path

from .helpers import Bigram, V, make_stream

LENS = [12, 3, 50, 1, 33, 20, 7, 64]
SRC = str(Path(__file__).resolve().parents[2] / "src")


def _cfg(**kw):
    return EvalConfig(**(dict(context_len=8, stride=4, shard_tokens=16, batch_size=2) | kw))


def _source(seed):
    return ModelSource(Bigram(seed=seed), V, None, {"kind": "test", "sha256": f"bigram-{seed}"})


def _strip_result(d: Path):
    for name in ("eval.json", "stats.npz"):
        (d / name).unlink()


def test_a_shard_of_another_model_is_refused_never_merged(tmp_path):
    st = make_stream(LENS)
    a, b = tmp_path / "a", tmp_path / "b"
    evaluate(_source(0), st, str(a), _cfg())
    evaluate(_source(1), st, str(b), _cfg())
    _strip_result(a)
    shutil.copy(shard_path(str(b), 2), shard_path(str(a), 2))  # what a racing writer leaves
    with pytest.raises(UserError, match="shard_000002.npz was written by another evaluation"):
        evaluate(_source(0), st, str(a), _cfg())
    assert not (a / "eval.json").exists()
    with pytest.raises(UserError, match="another evaluation"):  # the merge checks as well
        load_shards(str(a), 3, "the identity of some other evaluation")


def test_bound_refuses_statistics_of_another_model(tmp_path, capsys):
    st = make_stream(LENS)
    a, b = tmp_path / "a", tmp_path / "b"
    evaluate(_source(0), st, str(a), _cfg())
    evaluate(_source(1), st, str(b), _cfg())
    load_result(str(a))
    shutil.copy(b / "stats.npz", a / "stats.npz")
    with pytest.raises(UserError, match="stats.npz does not belong to the evaluation"):
        load_result(str(a))
    assert main(["bound", str(a), "--code-bits", "1000"]) == 2
    err = capsys.readouterr().err
    assert "does not belong" in err and "certified" not in err


def test_a_truncated_shard_is_recomputed_on_rerun(tmp_path):
    st = make_stream(LENS)
    full = evaluate(_source(0), st, str(tmp_path / "ref"), _cfg())
    d = tmp_path / "x"
    evaluate(_source(0), st, str(d), _cfg())
    _strip_result(d)
    p = Path(shard_path(str(d), 1))
    p.write_bytes(p.read_bytes()[:100])  # BadZipFile
    again = evaluate(_source(0), st, str(d), _cfg())
    assert again["totals"] == full["totals"] and again["timing"]["tokens_scored_this_run"] > 0


def test_a_shard_damaged_at_merge_time_is_removed_and_reported(tmp_path):
    evaluate(_source(0), make_stream(LENS), str(tmp_path), _cfg())
    p = Path(shard_path(str(tmp_path), 0))
    p.write_bytes(b"garbage")
    with pytest.raises(UserError, match="shard_000000.npz is damaged.*rerun the same command"):
        load_shards(str(tmp_path), 2, "x")
    assert not p.exists()


def test_damaged_results_are_one_line_errors_naming_the_file(tmp_path, capsys):
    d = tmp_path / "e"
    evaluate(_source(0), make_stream(LENS), str(d), _cfg())
    text = (d / "eval.json").read_text()
    (d / "eval.json").write_text(text[: len(text) // 2])
    with pytest.raises(UserError, match=f"{d}/eval.json is damaged.*rerun `tokenbound evaluate`"):
        load_result(str(d))
    assert main(["bound", str(d), "--code-bits", "1000"]) == 2
    assert "eval.json is damaged" in capsys.readouterr().err
    (d / "eval.json").write_text(text)
    (d / "stats.npz").write_bytes(b"\x00garbage" * 50)
    with pytest.raises(UserError, match="stats.npz is damaged.*delete it and rerun"):
        load_result(str(d))


def test_huge_samples_is_refused_before_anything_is_written(tmp_path, capsys):
    with pytest.raises(UserError, match="--samples 1,000,000,000,000 needs about"):
        _cfg(mode="sampled", n_samples=10 ** 12)
    out = tmp_path / "out"
    argv = ["evaluate", "--model", "nowhere.tbm", "--data", "nowhere", "--out", str(out),
            "--mode", "sampled", "--samples", str(10 ** 12)]
    assert main(argv) == 2
    assert "--samples" in capsys.readouterr().err and not out.exists()


def test_nothing_is_written_when_a_check_fails(tmp_path):
    st = make_stream(LENS)
    with pytest.raises(UserError, match="--context 99 exceeds"):
        evaluate(ModelSource(Bigram(), V, 16, {"kind": "test", "sha256": "b"}), st,
                 str(tmp_path / "o"), _cfg(context_len=99))
    assert not (tmp_path / "o").exists()


def test_the_progress_bar_line_is_ended_before_an_error(tmp_path, capsys):
    class Fails(Bigram):
        calls = 0

        def forward(self, idx):
            self.calls += 1
            if self.calls == 3:
                raise RuntimeError("boom")
            return super().forward(idx)

    with pytest.raises(RuntimeError):
        evaluate(ModelSource(Fails(), V, None, {"kind": "test", "sha256": "f"}),
                 make_stream(LENS), str(tmp_path), _cfg(), progress=True)
    assert capsys.readouterr().err.endswith("\n")
    assert not (tmp_path / fileio.LOCK_FILE).exists()


def test_a_finished_evaluation_is_rerun_without_writing(tmp_path, monkeypatch):
    evaluate(_source(0), make_stream(LENS), str(tmp_path), _cfg())
    before = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}

    def read_only(path):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(fileio, "atomic_path", read_only)
    again = evaluate(_source(0), make_stream(LENS), str(tmp_path), _cfg())
    assert again == json.load(open(tmp_path / "eval.json"))
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == before


def test_another_writer_is_refused_while_evaluate_runs(tmp_path):
    """Both orders: evaluate refused while another process holds OUT; another process refused
    while evaluate runs (checked from inside the forward pass)."""
    st = make_stream(LENS)
    hold = ("import sys, time\nfrom tokenbound.fileio import dir_lock\n"
            "try:\n  with dir_lock(sys.argv[1]):\n    print('held', flush=True); time.sleep(30)\n"
            "except Exception as exc:\n  print(exc, flush=True); sys.exit(2)\n")
    env = dict(os.environ, PYTHONPATH=SRC)
    child = subprocess.Popen([sys.executable, "-c", hold, str(tmp_path)],
                             stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert child.stdout.readline().strip() == "held"
        with pytest.raises(UserError, match=f"--out {tmp_path} is in use.*pid {child.pid}"):
            evaluate(_source(0), st, str(tmp_path), _cfg())
    finally:
        child.kill()
        child.wait()
    seen = []

    class Probe(Bigram):
        def forward(self, idx):
            if not seen:
                p = subprocess.run([sys.executable, "-c", hold, str(tmp_path)],
                                   capture_output=True, text=True, env=env, timeout=60)
                seen.append((p.returncode, p.stdout))
            return super().forward(idx)

    evaluate(ModelSource(Probe(), V, None, {"kind": "test", "sha256": "bigram-0"}), st,
             str(tmp_path), _cfg())
    assert seen[0][0] == 2 and f"pid {os.getpid()}" in seen[0][1]


@pytest.mark.slow
def test_two_evaluate_commands_into_one_out_never_certify_a_mix(tmp_path):
    """Two `tokenbound evaluate` processes of different models started together into one
    OUT: one is refused (in use, or a different evaluation), and `bound` certifies only the
    winner's own numbers."""
    from tokenbound.data import write_stream

    from .test_sources_cli import _message

    st = make_stream(LENS)
    docs = [st.tokens[a:b] for a, b in zip(st.doc_offsets[:-1], st.doc_offsets[1:])]
    write_stream(tmp_path / "data", docs, {"tokenizer": "toy", "vocab_size": V, "eot_id": 47,
                                           "start_id": 47})
    (tmp_path / "A").mkdir()
    (tmp_path / "B").mkdir()
    msgs = [_message(tmp_path / "A")[0], _message(tmp_path / "B", seed=4)[0]]
    env = dict(os.environ, PYTHONPATH=SRC, OMP_NUM_THREADS="1")
    common = ["--data", str(tmp_path / "data"), "--device", "cpu", "--context", "8",
              "--shard-tokens", "8", "--out", str(tmp_path / "X")]
    procs = [subprocess.Popen(
        [sys.executable, "-m", "tokenbound", "evaluate", "--model", str(m)] + common,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for m in msgs]
    outs = [p.communicate(timeout=300) for p in procs]
    codes = [p.returncode for p in procs]
    assert sorted(codes) == [0, 2], outs
    winner = codes.index(0)
    assert "in use" in outs[1 - winner][1] or "different evaluation" in outs[1 - winner][1]
    for i, m in enumerate(msgs):
        p = subprocess.run([sys.executable, "-m", "tokenbound", "bound", str(tmp_path / "X"),
                            "--message", str(m)], capture_output=True, text=True, env=env)
        assert p.returncode == (0 if i == winner else 2), p.stderr


def _fold(parts):
    out = parts[0]
    for p in parts[1:]:
        out = out.merge(p)
    return out


@pytest.mark.parametrize("sampled", [False, True])
def test_linear_merge_equals_the_pairwise_merges_bitwise(sampled, monkeypatch):
    rng = np.random.default_rng(0)
    parts, doc = [], 0
    for i in range(400):  # many tiny shards; documents spanning several shards
        w = int(rng.integers(1, 4))
        ws = WindowStats(np.arange(w) + 10 * i, rng.integers(1, 9, w),
                         *(rng.standard_normal((w,) + s) for s in
                           [(8,), (8,), (8, 2), (8, 2), (), (3,), (3,), (3,)]),
                         meta={"vocab_size": V, "alphas": [0.1]})
        if not sampled:
            ws.betting = rng.standard_normal((8, 2, 5))
            ws.topk_betting = rng.standard_normal((3, 5))
            ids = np.arange(doc, doc + int(rng.integers(1, 3)))
            doc = int(ids[-1]) + int(rng.integers(0, 2))  # the next shard may share the last
            ws.doc_ids, ws.doc_n = ids, rng.integers(1, 9, ids.size)
            ws.doc_sum_x = rng.standard_normal((ids.size, 8))
            ws.doc_sum_err = rng.standard_normal((ids.size, 3))
        elif i == 0:
            ws.draws = rng.integers(0, 10, 50)
        parts.append(ws)
    want = _fold(parts)
    monkeypatch.setattr(WindowStats, "merge", None)  # the linear path never merges pairwise
    got = WindowStats.merge_all(parts)
    for f in ("window_ids", "n_scored", "sum_x", "sum_x2", "sum_center", "sum_dev2", "sum_bits",
              "topk_err", "topk_center", "topk_dev2", "betting", "topk_betting", "doc_ids",
              "doc_n", "doc_sum_x", "doc_sum_err", "draws"):
        a, b = getattr(got, f), getattr(want, f)
        assert (a is None and b is None) or (a.dtype == b.dtype and np.array_equal(a, b)), f
    assert got.meta == want.meta


def test_a_damaged_eval_json_or_manifest_is_repaired_by_a_rerun(tmp_path):
    st = make_stream(LENS)
    full = evaluate(_source(0), st, str(tmp_path), _cfg())
    text = (tmp_path / "eval.json").read_text()
    (tmp_path / "eval.json").write_text(text[:40])
    assert evaluate(_source(0), st, str(tmp_path), _cfg())["totals"] == full["totals"]
    (tmp_path / "manifest.json").write_text("{")
    with pytest.raises(UserError, match="manifest.json is damaged; delete it and rerun"):
        evaluate(_source(0), st, str(tmp_path), _cfg())
    (tmp_path / "manifest.json").unlink()
    _strip_result(tmp_path)
    assert evaluate(_source(0), st, str(tmp_path), _cfg())["totals"] == full["totals"]
