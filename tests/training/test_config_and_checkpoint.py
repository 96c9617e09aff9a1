"""TrainConfig validation, the LR schedule, optimizer checkpoint round trips, atomic files."""

from __future__ import annotations

import json
import math

import pytest
import torch

from tokenbound.errors import UserError
from tokenbound.training import TrainConfig, lr_at
from tokenbound.training.checkpoint import (atomic_write_json, load_checkpoint,
                                            optimizer_from_flat, optimizer_to_flat,
                                            save_checkpoint, step_seed)

from training_helpers import TableModel, tiny_model_config


def cfg(**kw):
    return TrainConfig(**({"data": "d", "out": "o", "model": tiny_model_config()} | kw))


@pytest.mark.parametrize("field,value,flag", [
    ("steps", 0, "--steps"), ("batch_size", -1, "--batch-size"), ("lr", 0.0, "--lr"),
    ("warmup_frac", 1.0, "--warmup"), ("min_lr_ratio", 1.5, "--min-lr-ratio"),
    ("betas", (0.9, 1.0), "--betas"), ("grad_clip", -1.0, "--grad-clip"),
    ("context_len", 17, "--seq-len"), ("seed", -3, "--data-seed"),
    ("device", "tpu", "--device"), ("eval_interval", 1.5, "--eval-interval"),
])
def test_bad_values_name_their_flag(field, value, flag):
    with pytest.raises(UserError, match=flag):
        cfg(**{field: value})


def test_defaults_are_the_issue_target():
    c = TrainConfig(data="d", out="o", model=tiny_model_config(context_len=256))
    assert (c.steps, c.batch_size, c.context_len, c.lr) == (2000, 32, 256, 2e-3)
    assert c.betas == (0.9, 0.95) and c.grad_clip == 1.0 and c.bf16
    d = json.loads(json.dumps(c.to_dict()))
    assert d["model"]["context_len"] == 256 and d["betas"] == [0.9, 0.95]


def test_lr_schedule_by_hand():
    c = cfg(steps=11, lr=1.0, warmup_frac=0.2, min_lr_ratio=0.1)  # warmup = round(2.2) = 2
    assert lr_at(0, c) == 0.5 and lr_at(1, c) == 1.0  # (step + 1) / 2
    assert lr_at(2, c) == pytest.approx(1.0)  # t = 0: the peak
    # step 6: t = (6 - 2) / (10 - 2) = 0.5 -> 0.1 + 0.9 * (1 + cos(pi/2)) / 2 = 0.55
    assert lr_at(6, c) == pytest.approx(0.55)
    assert lr_at(10, c) == pytest.approx(0.1)  # t = 1: the floor
    no_warm = cfg(steps=5, lr=2.0, warmup_frac=0.0, min_lr_ratio=0.0)
    # t = 1/4: 2 * (1 + cos(pi/4)) / 2
    assert lr_at(1, no_warm) == pytest.approx(1 + math.sqrt(0.5))


def test_step_seed_depends_on_every_input():
    seeds = {step_seed(a, b, c) for a in range(3) for b in range(3) for c in range(3)}
    assert len(seeds) == 27 and all(0 <= s < 2**63 for s in seeds)
    assert step_seed(1, 2, 0) == step_seed(1, 2, 0)


def _adam(model):
    return torch.optim.AdamW([{"params": [model.table], "weight_decay": 0.1}],
                             lr=1e-2, betas=(0.9, 0.95), foreach=False)


def _steps(model, opt, n, seed):
    g = torch.Generator().manual_seed(seed)
    for _ in range(n):
        x = torch.randint(0, 8, (2, 5), generator=g)
        model(x).logsumexp(-1).mean().backward()
        opt.step()
        opt.zero_grad()


def test_checkpoint_round_trip_continues_bitwise(tmp_path):
    a = TableModel(8, seed=0)
    opt_a = _adam(a)
    _steps(a, opt_a, 3, seed=1)
    save_checkpoint(tmp_path, 3, {"table": a.table.detach()}, opt_a, {"note": 1})
    save_checkpoint(tmp_path, 3, {"table": a.table.detach()}, opt_a, {"note": 1})  # idempotent
    trained, opt_state, info = load_checkpoint(tmp_path)
    assert info["step"] == 3 and info["progress"] == {"note": 1}
    b = TableModel(8, seed=5)
    with torch.no_grad():
        b.table.copy_(trained["table"])
    opt_b = _adam(b)
    opt_b.load_state_dict(opt_state)
    _steps(a, opt_a, 2, seed=2)
    _steps(b, opt_b, 2, seed=2)
    assert torch.equal(a.table, b.table)
    files = sorted(p.name for p in (tmp_path / "ckpt").iterdir())
    assert files == ["latest.json", "state-00000003.safetensors"]  # no temporaries left


def test_optimizer_flat_keeps_groups_and_scalars():
    m = TableModel(8)
    opt = _adam(m)
    _steps(m, opt, 1, seed=0)
    tensors, rest = optimizer_to_flat(opt)
    assert set(tensors) == {"optim.0.step", "optim.0.exp_avg", "optim.0.exp_avg_sq"}
    back = optimizer_from_flat(tensors, json.loads(json.dumps(rest)))
    assert back["param_groups"][0]["betas"] == (0.9, 0.95)
    assert torch.equal(back["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])


def test_no_checkpoint_is_none_and_json_is_atomic(tmp_path):
    assert load_checkpoint(tmp_path) is None
    atomic_write_json(tmp_path / "x.json", {"a": 1})
    assert json.loads((tmp_path / "x.json").read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]
