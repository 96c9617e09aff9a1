"""`tokenbound compress` end to end on a tiny trained run (and its error paths)."""

import json
import sys
from pathlib import Path

import pytest

from tokenbound.cli import main
from tokenbound.compression import decode

sys.path.insert(0, str(Path(__file__).parents[1] / "training"))
training_helpers = pytest.importorskip("training_helpers")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from tokenbound.training import train

    root = tmp_path_factory.mktemp("c")
    data = training_helpers.write_toy_data(root / "data")
    cfg = training_helpers.tiny_train_config(data, root / "run", steps=4, eval_interval=0,
                                             ckpt_interval=0)
    train(cfg, progress=False)
    return root / "run"


def test_compress_run_json(run_dir, tmp_path, capsys):
    out = tmp_path / "m.tbq"
    rc = main(["compress", str(run_dir), "--levels", "5", "--kmeans", "--grouping", "tensor",
               "--qat-steps", "2", "--eval-batches", "2", "--batch-size", "2", "--out", str(out),
               "--json"])
    assert rc == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["total_bits"] == 8 * out.stat().st_size == sum(rep["bits_by_part"].values())
    assert rep["loss_before"] > 0 and rep["loss_after"] > 0
    _, cfg, info = decode(out)
    assert info["sha256"] == rep["sha256"] and info["extra"]["context_len"] == 12
    assert rep["trained_parameters"] == info["trained_parameters"]
    n = info["trained_parameters"]
    assert rep["bits_per_parameter"] == pytest.approx(rep["total_bits"] / n)


def test_compress_user_errors(run_dir, tmp_path, capsys):
    assert main(["compress", str(run_dir), "--levels", "5"]) == 2
    assert main(["compress", "--levels", "5", "--out", str(tmp_path / "x")]) == 2
    assert main(["compress", str(run_dir), "--levels", "0", "--out", str(tmp_path / "x")]) == 2
    assert main(["compress", str(tmp_path / "nope"), "--levels", "3", "--out", "x"]) == 2
    err = capsys.readouterr().err
    assert "--levels" in err and "traceback" not in err.lower()
    x = str(tmp_path / "x")
    cases = [  # (arguments, words the one-line error must contain)
        ([str(run_dir), "--levels", "0", "--out", x], "must be >= 1"),
        ([str(run_dir), "--levels", "5", "--out", x, "--qat-steps", "2", "--qat-lr", "-1"],
         "--qat-lr"),
        ([str(run_dir), "--levels", "5", "--out", x, "--method", "uniform", "--kmeans"],
         "conflicts"),
        (["--gguf", __file__], "not a GGUF file"),
        (["--hf", str(run_dir), "--levels", "5", "--out", x], "tokenbound training run"),
        (["--hf", str(tmp_path), "--levels", "5", "--out", x], "not a Hugging Face model"),
    ]
    for argv, words in cases:
        assert main(["compress", *argv]) == 2, argv
        err = capsys.readouterr().err
        assert words in err and err.count("\n") == 1, (argv, err)
    assert not (tmp_path / "x").exists()


def test_an_out_that_is_a_directory_names_out_and_leaves_nothing(run_dir, tmp_path, capsys):
    assert main(["compress", str(run_dir), "--levels", "5", "--eval-batches", "0",
                 "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"--out {tmp_path} is a directory" in err and ".tmp" not in err
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_during_compress_leaves_no_temporary(run_dir, tmp_path, capsys,
                                                         monkeypatch):
    import errno
    import os

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    out = tmp_path / "m.tbm"
    with monkeypatch.context() as m:
        m.setattr(os, "fsync", full)
        assert main(["compress", str(run_dir), "--levels", "5", "--eval-batches", "0",
                     "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"no space left on the device while writing {out}" in err and "read-only" not in err
    assert list(tmp_path.iterdir()) == []  # no temporary, no lock file
    assert main(["compress", str(run_dir), "--levels", "5", "--eval-batches", "0",
                 "--out", str(out)]) == 0  # the next compress is not blocked
    assert [p.name for p in tmp_path.iterdir()] == ["m.tbm"]
