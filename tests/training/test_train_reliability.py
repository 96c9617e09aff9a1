"""Training runs that fail cleanly: divergence, a full disk, a kill during a checkpoint write,
a second writer (issue 16 items 1, 5, 6, 7)."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from tokenbound import fileio
from tokenbound.errors import UserError
from tokenbound.training import checkpoint as ckpt_mod
from tokenbound.training import train

from training_helpers import tiny_train_config, write_toy_data


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_toy_data(tmp_path_factory.mktemp("data"))


def test_a_diverging_run_stops_at_the_first_non_finite_loss(data, tmp_path):
    cfg = tiny_train_config(data, tmp_path / "run", lr=1e30, grad_clip=0.0, steps=20,
                            ckpt_interval=0)
    with pytest.raises(UserError, match=r"training diverged: the training loss is nan at step "
                                        r"\d+ \(--lr 1e\+30, --grad-clip 0 \(off\)\)"):
        train(cfg, progress=False)
    assert not (tmp_path / "run" / "model.safetensors").exists()
    assert not (tmp_path / "run" / "train.json").exists()


def test_non_finite_final_weights_are_not_saved(data, tmp_path, monkeypatch):
    from tokenbound.training import loop as loop_mod

    original = loop_mod._Trainer._step

    def step(self, s):  # the last update leaves an inf in the weights
        out = original(self, s)
        if s == self.cfg.steps - 1:
            with torch.no_grad():
                next(iter(self.model.trainable_parameters())).view(-1)[0] = float("inf")
        return out

    monkeypatch.setattr(loop_mod._Trainer, "_step", step)
    with pytest.raises(UserError, match="final weights hold NaN or infinite values"):
        train(tiny_train_config(data, tmp_path / "run"), progress=False)
    assert not (tmp_path / "run" / "model.safetensors").exists()


def test_a_full_disk_during_a_checkpoint_is_one_line_naming_the_file(data, tmp_path,
                                                                     monkeypatch):
    def full(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ckpt_mod, "save_file", full)
    with pytest.raises(UserError) as info:
        train(tiny_train_config(data, tmp_path / "run"), progress=False)
    msg = str(info.value)
    assert "no space left" in msg and "state-00000002.safetensors" in msg and "\n" not in msg
    assert os.listdir(tmp_path / "run" / "ckpt") == []  # the partial temporary is gone


def test_temporaries_of_a_killed_checkpoint_write_are_swept_at_the_next_start(data, tmp_path):
    run = tmp_path / "run"
    cfg = tiny_train_config(data, run)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (run / "ckpt").mkdir(parents=True)
    left = [run / "ckpt" / f".state-00000002.safetensors.tmp-{dead.pid}-0badc0de",
            run / "ckpt" / f".state-00000004.safetensors.{dead.pid}.tmp",  # the older naming
            run / f".model.safetensors.tmp-{dead.pid}-12345678"]
    for p in left:
        p.write_bytes(b"x" * 1000)
    train(cfg, progress=False)
    assert not any(p.exists() for p in left)
    assert sorted(os.listdir(run / "ckpt")) == ["latest.json", "state-00000004.safetensors"]
    assert load_file(str(run / "model.safetensors"))


def test_a_second_training_process_is_refused(data, tmp_path):
    run = tmp_path / "run"
    hold = ("import sys, time\nfrom tokenbound.fileio import dir_lock\n"
            "with dir_lock(sys.argv[1]):\n    print('held', flush=True); time.sleep(30)\n")
    src = os.path.join(os.path.dirname(__file__), "..", "..", "src")
    child = subprocess.Popen([sys.executable, "-c", hold, str(run)], stdout=subprocess.PIPE,
                             text=True, env=dict(os.environ, PYTHONPATH=src))
    try:
        assert child.stdout.readline().strip() == "held"  # a running `train --out RUN`
        with pytest.raises(UserError, match=f"--out {run} is in use by another tokenbound "
                                            f"process \\(pid {child.pid}\\)"):
            train(tiny_train_config(data, run), progress=False)
    finally:
        child.kill()
        child.wait()
    assert not (run / "config.json").exists()
    train(tiny_train_config(data, run), progress=False)  # a killed holder's lock is taken over
    assert json.loads((run / "train.json").read_text())["steps"] == 6
