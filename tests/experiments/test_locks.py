"""`run`, `experiment` and `compress` hold their output's lock: a second writer is refused
with one line naming the holder's pid, before any work (issue 16 item 1)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tokenbound.cli import main

SRC = str(Path(__file__).resolve().parents[2] / "src")
HOLD = ("import sys, time\nfrom tokenbound.fileio import dir_lock, file_lock\n"
        "lock = file_lock if sys.argv[2] == 'file' else dir_lock\n"
        "with lock(sys.argv[1]):\n    print('held', flush=True); time.sleep(30)\n")


@pytest.fixture
def holder():
    procs = []

    def hold(path, kind="dir"):
        p = subprocess.Popen([sys.executable, "-c", HOLD, str(path), kind],
                             stdout=subprocess.PIPE, text=True,
                             env=dict(os.environ, PYTHONPATH=SRC))
        procs.append(p)
        assert p.stdout.readline().strip() == "held"
        return p.pid

    yield hold
    for p in procs:
        p.kill()
        p.wait()


def test_run_refuses_an_out_in_use(tmp_path, holder, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: r\ndata: {corpus: shakespeare}\ncompress: {levels: 9}\n"
                      "model: {vocab_size: 256, context_len: 32, n_layer: 1, n_head: 2, "
                      "d_model: 16}\nevaluate: {context_len: 32}\n")
    pid = holder(tmp_path / "out")
    assert main(["run", str(recipe), "--out", str(tmp_path / "out")]) == 2
    assert f"in use by another tokenbound process (pid {pid})" in capsys.readouterr().err
    assert os.listdir(tmp_path / "out") == [".tokenbound.lock"]  # nothing written


def test_experiment_refuses_an_out_in_use(tmp_path, holder, capsys):
    pid = holder(tmp_path / "exp")
    assert main(["experiment", "sampling", "--quick", "--out", str(tmp_path / "exp")]) == 2
    assert f"(pid {pid})" in capsys.readouterr().err
    assert os.listdir(tmp_path / "exp") == [".tokenbound.lock"]


def test_compress_refuses_an_out_in_use(tmp_path, holder, capsys):
    pid = holder(tmp_path / "m.tbm", "file")
    assert main(["compress", str(tmp_path / "run"), "--levels", "5",
                 "--out", str(tmp_path / "m.tbm")]) == 2
    assert f"--out {tmp_path / 'm.tbm'} is in use by another tokenbound process (pid {pid})" \
        in capsys.readouterr().err
