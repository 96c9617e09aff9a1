"""The training loop: learning, exact resume, rerun/force/config checks, load_run."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from tokenbound.errors import UserError
from tokenbound.training import load_run, train
from tokenbound.training import loop as loop_mod

from training_helpers import tiny_model_config, tiny_train_config, write_toy_data


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_toy_data(tmp_path_factory.mktemp("data"))


def _interrupt_at(monkeypatch, bad_step):
    original = loop_mod._Trainer._step

    def step(self, s):
        if s == bad_step:
            raise KeyboardInterrupt
        return original(self, s)

    monkeypatch.setattr(loop_mod._Trainer, "_step", step)


def _without_timings(summary):
    return {k: v for k, v in summary.items()
            if k not in ("tokens_per_s", "train_seconds", "wall_seconds")}


def test_training_lowers_the_loss(data, tmp_path):
    cfg = tiny_train_config(data, tmp_path / "run", steps=40, lr=1e-2, eval_interval=20,
                            ckpt_interval=0)
    summary = train(cfg, progress=False)
    first = summary["curve"][0]["train_bits"]
    # uniform guessing costs log2(16) = 4 bits; the cyclic data is nearly deterministic
    assert first < 4.5 and summary["train_bits"] < 2.0 and summary["heldout_bits"] < 2.0
    assert summary["tokens_seen"] == 40 * 4 * 12
    assert [p["step"] for p in summary["curve"]] == [20, 40]


@pytest.mark.parametrize("bf16", [False, True])
def test_resume_gives_bitwise_identical_weights(data, tmp_path, monkeypatch, bf16):
    straight = train(tiny_train_config(data, tmp_path / "a", bf16=bf16), progress=False)
    cfg = tiny_train_config(data, tmp_path / "b", bf16=bf16)
    with monkeypatch.context() as m:
        _interrupt_at(m, 5)  # steps 0..4 done, checkpoint after 4; step 4 is redone
        with pytest.raises(KeyboardInterrupt):
            train(cfg, progress=False)
    assert json.loads((tmp_path / "b/ckpt/latest.json").read_text())["step"] == 4
    assert not (tmp_path / "b/train.json").exists()
    resumed = train(cfg, progress=False)
    a = load_file(str(tmp_path / "a/model.safetensors"))
    b = load_file(str(tmp_path / "b/model.safetensors"))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert _without_timings(straight) == _without_timings(resumed)


def test_finished_run_reports_without_training(data, tmp_path, monkeypatch):
    cfg = tiny_train_config(data, tmp_path / "run")
    first = train(cfg, progress=False)
    monkeypatch.setattr(loop_mod._Trainer, "_step", lambda self, s: 1 / 0)
    assert train(cfg, progress=False) == first


def test_different_config_needs_new_out_or_force(data, tmp_path):
    train(tiny_train_config(data, tmp_path / "run"), progress=False)
    changed = tiny_train_config(data, tmp_path / "run", lr=5e-3)
    with pytest.raises(UserError, match=r"different configuration \(lr\).*--force"):
        train(changed, progress=False)
    summary = train(changed, progress=False, force=True)
    assert json.loads((tmp_path / "run/config.json").read_text())["lr"] == 5e-3
    assert summary["steps"] == 6


def test_config_json_records_model_and_data(data, tmp_path):
    cfg = tiny_train_config(data, tmp_path / "run")
    train(cfg, progress=False)
    saved = json.loads((tmp_path / "run/config.json").read_text())
    assert saved["model"] == tiny_model_config().to_dict()
    assert len(saved["data_sha256"]) == 64 and len(saved["heldout_sha256"]) == 64
    assert saved["steps"] == 6 and saved["betas"] == [0.9, 0.95]


def test_load_run_returns_the_trained_model(data, tmp_path):
    cfg = tiny_train_config(data, tmp_path / "run")
    with pytest.raises(UserError, match="not a training run"):
        load_run(tmp_path / "run")
    train(cfg, progress=False)
    model, model_cfg, info = load_run(tmp_path / "run")
    assert model_cfg == cfg.model and info["train"]["steps"] == 6
    saved = load_file(str(tmp_path / "run/model.safetensors"))
    state = model.trained_state()
    assert sorted(state) == sorted(saved) and all(torch.equal(state[k], saved[k]) for k in saved)
    (tmp_path / "run/train.json").unlink()
    with pytest.raises(UserError, match="not finished"):
        load_run(tmp_path / "run")


def test_vocab_mismatch_is_a_user_error(data, tmp_path):
    cfg = tiny_train_config(data, tmp_path / "run", model=tiny_model_config(vocab_size=32))
    with pytest.raises(UserError, match="--vocab-size 16"):
        train(cfg, progress=False)
