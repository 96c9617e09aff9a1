"""`tokenbound train` end to end through the CLI (tiny model, toy data)."""

from __future__ import annotations

import json

from tokenbound.cli import main

from training_helpers import TINY, write_toy_data


def test_train_rerun_and_refusal(tmp_path, capsys):
    data = write_toy_data(tmp_path / "data")
    run = str(tmp_path / "run")
    assert main(["train", "--data", data, "--out", run, *TINY]) == 0
    out = capsys.readouterr().out
    assert "4 steps" in out and "held-out" in out
    saved = json.loads((tmp_path / "run/config.json").read_text())
    assert saved["model"]["vocab_size"] == 16  # taken from the data
    assert saved["model"]["d_model"] == 16 and saved["context_len"] == 12

    assert main(["train", "--data", data, "--out", run, *TINY]) == 0
    assert "already complete" in capsys.readouterr().out

    # the same run under another spelling of its data path and device: still the same run
    import os

    os.chdir(tmp_path)
    assert main(["train", "--data", "./data/", "--out", run, *TINY, "--device", "cpu"]) == 0
    assert "already complete" in capsys.readouterr().out

    assert main(["train", "--data", data, "--out", run, *TINY, "--lr", "0.01"]) == 2
    err = capsys.readouterr().err
    assert "different configuration (lr)" in err and "--force" in err and "\n" == err[-1]
    assert main(["train", "--data", data, "--out", run, *TINY, "--lr", "0.01", "--force"]) == 0


def test_user_errors_exit_2(tmp_path, capsys):
    data = write_toy_data(tmp_path / "data")
    assert main(["train", "--data", str(tmp_path / "nope"), "--out", "r", *TINY]) == 2
    assert "tokenbound prepare" in capsys.readouterr().err
    run = str(tmp_path / "run")
    assert main(["train", "--data", data, "--out", run, *TINY, "--seq-len", "32"]) == 2
    assert "--seq-len" in capsys.readouterr().err
    assert main(["train", "--data", data, "--out", run, *TINY, "--batch-size", "0"]) == 2
    assert "--batch-size" in capsys.readouterr().err


def test_cuda_without_a_gpu_is_a_user_error_that_writes_nothing(tmp_path, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    data = write_toy_data(tmp_path / "data")
    run = tmp_path / "run"
    assert main(["train", "--data", data, "--out", str(run), *TINY, "--device", "cuda"]) == 2
    assert "no CUDA GPU" in capsys.readouterr().err
    assert not (run / "config.json").exists()  # so the corrected command is not refused
    assert main(["train", "--data", data, "--out", str(run), *TINY, "--device", "gpu0"]) == 2
    assert "got 'gpu0'" in capsys.readouterr().err


def test_model_seed_and_data_seed_are_separate_flags(tmp_path):
    from tokenbound.cli import build_parser
    from tokenbound.commands.train import build_config

    data = write_toy_data(tmp_path / "data")
    args = build_parser(only="train").parse_args(
        ["train", "--data", data, "--out", "r", *TINY, "--seed", "3", "--data-seed", "5",
         "--arch", "monarch", "--monarch-blocks", "2"])
    cfg = build_config(args)
    assert cfg.model.seed == 3 and cfg.seed == 5
    assert cfg.model.context_len == 16 and cfg.context_len == 12
    assert cfg.model.linear["attn"] == "monarch" and cfg.steps == 4 and not cfg.bf16


def test_same_tokens_in_another_layout_is_another_run(tmp_path, capsys):
    # the same token sequence cut into documents differently: equal token hash, another stream
    import numpy as np

    from tokenbound.data import open_stream, write_stream

    toks = np.array([1 + j % 7 for j in range(400)])
    meta = {"tokenizer": "toy", "vocab_size": 16, "eot_id": None, "start_id": 15}
    for name, cut in (("a", 100), ("b", 300)):
        write_stream(tmp_path / name / "train", [toks[:cut], toks[cut:]], meta)
    a, b = (open_stream(tmp_path / n / "train") for n in "ab")
    assert a.sha256 == b.sha256 and a.identity != b.identity
    run = str(tmp_path / "run")
    assert main(["train", "--data", str(tmp_path / "a"), "--out", run, *TINY]) == 0
    capsys.readouterr()
    assert main(["train", "--data", str(tmp_path / "b"), "--out", run, *TINY]) == 2
    assert "data_identity" in capsys.readouterr().err
