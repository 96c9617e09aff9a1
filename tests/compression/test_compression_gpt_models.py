"""Round trips with the real tokenbound GPT in its parametrizations, and QAT."""

import numpy as np
import pytest
import torch

from tokenbound.compression import (MessageError, QuantConfig, bits_by_part, decode, encode,
                                    qat_finetune, quantize_)

models = pytest.importorskip("tokenbound.models")

SMALL = dict(vocab_size=32, context_len=16, n_layer=1, n_head=2, d_model=16)
VARIANTS = {
    "dense": {},
    "lora+norms": dict(linear="attn=lora,mlp=lora", norm_affine=True),
    "monarch": dict(linear="attn=monarch,mlp=monarch"),
    "kronecker": dict(linear="attn=kronecker,mlp=dense"),
    "subspace": dict(subspace_dim=64),
}


def _build(kw):
    cfg = models.GPTConfig(**SMALL, **kw)
    return models.build_model(cfg), cfg


def _perturb(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    state = {n: t + 0.05 * torch.randn(t.shape, generator=g)
             for n, t in model.trained_state().items()}
    model.load_trained_state(state)


@pytest.mark.parametrize("name", list(VARIANTS))
@pytest.mark.parametrize("qcfg", [QuantConfig(levels=7, grouping="model"),
                                  QuantConfig(levels=5, method="kmeans", grouping="tensor",
                                              exclude=("*ln*", "*norm*"))],
                         ids=["uniform-model", "kmeans-tensor-raw"])
def test_gpt_round_trip(name, qcfg):
    model, cfg = _build(VARIANTS[name])
    _perturb(model)
    qstate = quantize_(model, qcfg)
    msg = encode(model, cfg, qstate, extra_header={"context_policy": {"stride": 16}})
    model2, cfg2, info = decode(msg)
    assert cfg2 == cfg and models.GPTConfig.from_dict(cfg.to_dict()) == cfg
    for (n, a), (_, b) in zip(model.state_dict().items(), model2.state_dict().items()):
        assert torch.equal(a, b), n
    idx = torch.randint(0, 32, (2, 12), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.equal(model.eval()(idx), model2(idx))
    assert sum(bits_by_part(msg).values()) == 8 * len(msg) == info["total_bits"]
    n_trained = sum(t.numel() for t in model.trained_state().values())
    assert info["trained_parameters"] == n_trained


def test_message_for_another_config_is_rejected(forge):
    model, cfg = _build({})
    msg = encode(model, cfg, quantize_(model, QuantConfig(levels=3)))
    with pytest.raises(MessageError, match="do not match"):  # an extra block: names differ
        decode(forge(msg, lambda h: h["config"].update(n_layer=2)))
    with pytest.raises(MessageError, match="config"):  # unknown field: GPTConfig refuses it
        decode(forge(msg, lambda h: h["config"].update(colour="red")))


def _batches(seed=0):
    g = torch.Generator().manual_seed(seed)
    while True:
        x = torch.randint(0, 32, (4, 12), generator=g)
        yield x, (x + 1) % 32  # a learnable rule: next token = this token + 1


def test_qat_lowers_loss_and_stays_exact():
    model, cfg = _build({})
    _perturb(model, seed=1)
    qstate = quantize_(model, QuantConfig(levels=5))
    x, y = next(_batches(9))

    def loss():
        with torch.no_grad():
            return float(torch.nn.functional.cross_entropy(model.eval()(x).reshape(-1, 32),
                                                           y.reshape(-1)))
    before = loss()
    q2 = qat_finetune(model, qstate, _batches(), steps=30, lr=0.05)
    after = loss()
    assert after < before
    g = q2.groups[0]
    assert g.codebook.dtype == np.float16 and len(g.codebook) == 5
    model2, _, _ = decode(encode(model, cfg, q2))
    with torch.no_grad():
        assert torch.equal(model(x), model2(x))


def test_qat_adam_takes_steps_of_about_lr_and_unknown_optimizer_fails():
    """Adam's first step moves a latent by lr (|m / sqrt(v)| = 1 unless the gradient is ~eps);
    SGD's first step is lr * gradient (tiny here): the option really switches the optimizer."""
    model, _ = _build({})
    _perturb(model, seed=1)
    qstate = quantize_(model, QuantConfig(levels=5))
    lat0 = np.concatenate([g.latent if g.latent is not None else g.codebook[g.symbols]
                           for g in qstate.groups]).astype(np.float32)

    def moved(optimizer, lr):
        m, _ = _build({})
        _perturb(m, seed=1)
        q2 = qat_finetune(m, quantize_(m, QuantConfig(levels=5)), _batches(), steps=1, lr=lr,
                          optimizer=optimizer)
        return np.abs(np.concatenate([g.latent for g in q2.groups]) - lat0)

    d_adam, d_sgd = moved("adam", 1e-3), moved("sgd", 1e-3)
    assert np.median(d_adam) == pytest.approx(1e-3, rel=1e-3) and d_adam.max() < 1.01e-3
    assert d_sgd.max() < 5e-4
    with pytest.raises(ValueError, match="sgd"):
        qat_finetune(model, qstate, _batches(), steps=1, lr=1e-3, optimizer="rmsprop")
