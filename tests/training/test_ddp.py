"""Data-parallel training under torchrun (2 CPU processes, gloo) equals one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from tokenbound.cli import main

from training_helpers import TINY, write_toy_data


@pytest.mark.slow
def test_two_processes_match_one(tmp_path, capsys):
    data = write_toy_data(tmp_path / "data")
    one, two = str(tmp_path / "one"), str(tmp_path / "two")
    assert main(["train", "--data", data, "--out", one, *TINY]) == 0
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "tokenbound", "train", "--data", data, "--out", two, *TINY],
        capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("4 steps") == 1  # only rank 0 prints
    a, b = load_file(f"{one}/model.safetensors"), load_file(f"{two}/model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=1e-6)
    s1, s2 = (json.loads(open(f"{d}/train.json").read()) for d in (one, two))
    assert s2["world_size"] == 2 and s1["world_size"] == 1
    for p1, p2 in zip(s1["curve"], s2["curve"]):
        assert p2["train_bits"] == pytest.approx(p1["train_bits"], abs=1e-5)
        assert p2["heldout_bits"] == pytest.approx(p1["heldout_bits"], abs=1e-5)
