"""`run` on a corpus without held-out documents, and reruns of `run` in the same OUT: changed
settings are refused with advice that fits `run`, stale files are not reused, and each step's
seconds come from the run that did its work."""

import json

import pytest

from tokenbound.commands.run_recipe import execute
from tokenbound.errors import UserError
from tokenbound.experiments import pipeline
from tokenbound.experiments.pipeline import Recipe, run

TEXT = "To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer\n"


def _recipe(corpus, out, steps=6) -> Recipe:
    return Recipe(
        name="one-file", out=str(out), delta=0.05,
        data={"corpus": str(corpus), "tokenizer": "bytes"},
        model={"vocab_size": 256, "context_len": 32, "n_layer": 1, "n_head": 2, "d_model": 16,
               "subspace_dim": 64, "seed": 0},
        train={"steps": steps, "batch_size": 4, "lr": 0.05, "eval_interval": 0,
               "eval_batches": 1, "ckpt_interval": 3, "seed": 0, "device": "cpu",
               "bf16": False},
        compress={"levels": 9, "method": "uniform", "eval_batches": 1, "batch_size": 2},
        evaluate={"context_len": 32, "stride": 32, "mode": "exact", "batch_size": 4})


@pytest.fixture(scope="module")
def one_file(tmp_path_factory):
    d = tmp_path_factory.mktemp("onefile")
    (d / "one.txt").write_text(TEXT * 20)
    return d / "one.txt"


def test_a_single_text_file_is_certified_without_a_heldout_loss(one_file, tmp_path, capsys):
    """The file is one document, all of it trained on: the empty held-out split is not scored
    (it used to crash at the very end), and the report and the summary say why."""
    out = tmp_path / "run"
    assert execute(_recipe(one_file, out)) == 0
    printed = capsys.readouterr().out
    assert "held-out loss not measured: empty held-out split" in printed
    rep = json.loads((out / "report.json").read_text())
    assert rep["heldout_bits_per_token"] is None
    assert rep["heldout_status"] == "not measured: empty held-out split"
    assert rep["bound_bits_per_token"] > rep["empirical_bits_per_token"] > 0
    assert not (out / "eval_heldout").exists()
    md = (out / "report.md").read_text()
    assert "| held-out loss, unsmoothed | — |" in md
    assert "Held-out loss not measured: empty held-out split" in md


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("corpus")
    for i in range(12):  # doc03 falls in the held-out split
        (d / f"doc{i:02d}.txt").write_text(TEXT * (1 + i % 3) + f"scene {i}\n")
    return d


def test_changed_train_settings_get_advice_that_fits_run(corpus_dir, tmp_path):
    out = tmp_path / "run"
    first = run(_recipe(corpus_dir, out))
    assert first["heldout_status"] == "measured" and first["heldout_bits_per_token"] > 0
    with pytest.raises(UserError) as err:
        run(_recipe(corpus_dir, out, steps=8))
    msg = str(err.value)
    assert "--force" not in msg and f"--out {out}/train" not in msg
    assert "differs in steps" in msg and "use a new --out directory" in msg
    assert f"delete {out}/train and the files made from it (model.tbm, compress.json" in msg
    # deleting only OUT/train: the message of the old model must not be reused for the new one
    import shutil

    shutil.rmtree(out / "train")
    with pytest.raises(UserError, match=f"{out}/eval_train holds scores made with another model"
                                        f".*delete {out}/eval_heldout and {out}/eval_train to"):
        run(_recipe(corpus_dir, out, steps=8))
    stored = json.loads((out / "compress.json").read_text())["train_sha256"]
    assert stored == pipeline._trained_sha256(out / "train")  # compressed again
    shutil.rmtree(out / "eval_train")
    shutil.rmtree(out / "eval_heldout")
    second = run(_recipe(corpus_dir, out, steps=8))  # as the message advised
    assert second["train"]["steps"] == 8 and first["train"]["steps"] == 6
    assert second["code_bits"] == 8 * (out / "model.tbm").stat().st_size
    assert second["provenance"]["message_sha256"] == second["provenance"]["eval_model_sha256"]
    assert second["provenance"]["message_sha256"] != first["provenance"]["message_sha256"]


def test_a_step_interrupted_then_finished_is_timed_over_both_runs(tmp_path, monkeypatch):
    """OUT/timings.json: the seconds of an interrupted attempt are added to the run that
    finishes the step; a reused step keeps the time of the run that did it."""
    now = [0.0]
    monkeypatch.setattr(pipeline.time, "perf_counter", lambda: now[0])

    def work(seconds, fail=False):
        def fn():
            now[0] += seconds
            if fail:
                raise KeyboardInterrupt
            return {}
        return fn

    clock = pipeline._Clock(tmp_path, print)
    clock.step("prepare", work(2.0))
    with pytest.raises(KeyboardInterrupt):
        clock.step("train", work(30.0, fail=True))
    clock = pipeline._Clock(tmp_path, print)  # the rerun
    clock.step("prepare", work(0.5), reused=True)
    clock.step("train", work(12.0))
    t = clock.finish()
    assert t["prepare"] == 2.0 and t["train"] == 42.0 and t["total"] == 44.0
    assert t["this_run"] == 12.5 and clock.reused == ["prepare"]
    assert json.loads((tmp_path / "timings.json").read_text())["partial"] == {}


def test_the_printed_time_says_which_steps_earlier_runs_did():
    from tokenbound.commands.run_recipe import time_line

    rep = {"timings_s": {"train": 40.0, "bound": 1.0, "total": 41.0, "this_run": 1.2},
           "steps_reused": ["prepare", "train"]}
    assert time_line(rep) == ("41 s of computing in all (this run 1 s; done by an earlier run: "
                              "prepare, train)")
    assert time_line({**rep, "steps_reused": []}) == "41 s"


def test_a_finished_run_in_a_read_only_directory_reruns_without_writing(one_file, tmp_path,
                                                                        monkeypatch, capsys):
    """Every writer refuses (as in a read-only directory); the rerun still prints the
    certificate, and recipe.json, bound.json, timings.json are not rewritten."""
    import os

    from tokenbound import fileio

    out = tmp_path / "run"
    assert execute(_recipe(one_file, out)) == 0
    first = capsys.readouterr().out.splitlines()
    kept = {n: (out / n).stat().st_mtime_ns for n in
            ("recipe.json", "bound.json", "timings.json", "report.json", "model.tbm")}

    def read_only(path):
        raise PermissionError(13, "Permission denied", str(path))

    real_open = os.open

    def no_lock_file(path, flags, *a):  # a read-only directory cannot hold the lock file
        if str(path).endswith(".lock"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *a)

    monkeypatch.setattr(fileio, "temp_name", read_only)
    monkeypatch.setattr(fileio.os, "open", no_lock_file)
    assert execute(_recipe(one_file, out)) == 0
    again = capsys.readouterr().out.splitlines()
    cert = [line for line in first if line.startswith("certified bound")]
    assert len(cert) == 1 and cert[0] in again
    assert {n: (out / n).stat().st_mtime_ns for n in kept} == kept
