"""torchrun with 2 gloo CPU processes gives the same result as one process (METHOD 6)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tokenbound.cli import main
from tokenbound.evaluation import load_result

from .test_sources_cli import _message, stream_dir  # noqa: F401  (fixture)


@pytest.mark.parametrize("mode", ["exact", pytest.param("sampled", marks=pytest.mark.slow)])
def test_torchrun_two_ranks_equal_one_process(tmp_path, stream_dir, mode):  # noqa: F811
    data, _ = stream_dir
    path, _ = _message(tmp_path)
    common = ["evaluate", "--model", str(path), "--data", str(data), "--context", "8",
              "--stride", "3", "--shard-tokens", "16", "--device", "cpu", "--mode", mode]
    if mode == "sampled":
        common += ["--samples", "50", "--seed", "4"]
    assert main(common + ["--out", str(tmp_path / "one")]) == 0
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
           "--master-port", str(29500 + os.getpid() % 1000), "-m", "tokenbound"] + common + [
           "--out", str(tmp_path / "two")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    one, r1 = load_result(str(tmp_path / "one"))
    two, r2 = load_result(str(tmp_path / "two"))
    assert r2["timing"]["world"] == 2 and r1["totals"] == r2["totals"]
    for f in ("window_ids", "sum_x", "sum_dev2", "topk_err", "betting", "doc_sum_x", "draws"):
        a, b = getattr(one, f), getattr(two, f)
        assert (a is None and b is None) or np.array_equal(a, b), f
    shards = json.load(open(tmp_path / "two" / "eval.json"))["n_shards"]
    assert len(os.listdir(tmp_path / "two" / "shards")) == shards > 2


def test_rank_shares_disjoint_and_cover():
    from tokenbound.evaluation.engine import rank_shards

    shares = [rank_shards(11, seed=2, rank=r, world=3) for r in range(3)]
    flat = sorted(i for s in shares for i in s)
    assert flat == list(range(11)) and all(len(s) in (3, 4) for s in shares)
    assert rank_shards(11, seed=2, rank=0, world=1) == list(range(11))
