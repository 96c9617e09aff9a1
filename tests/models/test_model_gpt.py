"""The GPT: causality, document masking, banded context, determinism and the trained-state
contract (frozen tensors regenerated bit for bit by `build_model`)."""

import pytest
import torch

from tokenbound.errors import UserError
from tokenbound.models import GPTConfig, build_model
from tokenbound.models.gpt import positions_and_segments

ARCHS = [
    {},
    {"linear": {"attn": "lora", "mlp": "lora"}},
    {"linear": {"attn": "kronecker", "mlp": "monarch", "head": "lora"}, "tie_embeddings": False},
    {"linear": {"attn": "monarch", "mlp": "monarch"}, "norm_affine": True, "bias": True},
    {"linear": {"attn": "lora", "mlp": "lora"}, "subspace_dim": 60},
]


def tiny(**kw):
    base = dict(vocab_size=32, context_len=24, n_layer=2, n_head=2, d_model=16, seed=3)
    return GPTConfig(**{**base, **kw})


def _randomize(model, seed=0):
    """Give every trained tensor random values (zero-init LoRA B / subspace w included)."""
    gen = torch.Generator().manual_seed(seed)
    state = {n: torch.randn(t.shape, generator=gen) * 0.1 for n, t in model.trained_state().items()}
    model.load_trained_state(state)
    return state


@pytest.mark.parametrize("kw", ARCHS)
def test_shapes_and_causality(kw):
    model = _prepared(tiny(**kw))
    idx = torch.randint(0, 32, (2, 12), generator=torch.Generator().manual_seed(1))
    logits = model(idx)
    assert logits.shape == (2, 12, 32) and logits.dtype == torch.float32
    j = 7
    changed = idx.clone()
    changed[:, j] = (changed[:, j] + 1) % 32
    other = model(changed)
    assert torch.equal(logits[:, :j], other[:, :j])  # positions before j never see token j
    assert not torch.allclose(logits[:, j], other[:, j])


def _prepared(cfg):
    model = build_model(cfg).eval()
    _randomize(model)
    return model


@pytest.mark.parametrize("kw", [{}, {"position": "rope"}, {"linear": {"attn": "lora"}}])
def test_doc_ids_packed_equals_alone(kw):
    model = _prepared(tiny(**kw))
    gen = torch.Generator().manual_seed(2)
    d1, d2, d3 = (torch.randint(0, 32, (n,), generator=gen) for n in (5, 9, 4))
    packed = torch.cat([d1, d2, d3])[None]  # (1, 18)
    doc_ids = torch.tensor([[0] * 5 + [1] * 9 + [2] * 4])
    out = model(packed, doc_ids=doc_ids)
    torch.testing.assert_close(out[0, 5:14], model(d2[None])[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[0, :5], model(d1[None])[0], atol=1e-5, rtol=1e-5)


def test_positions_and_segments_hand_example():
    pos, seg = positions_and_segments(torch.tensor([[7, 7, 3, 3, 3, 7]]))
    assert pos.tolist() == [[0, 1, 0, 1, 2, 0]]
    assert seg.tolist() == [[1, 1, 2, 2, 2, 3]]


@pytest.mark.parametrize("position", ["rope", "none"])
@pytest.mark.parametrize("n_layer", [1, 2])
def test_max_context_equals_last_tokens_alone(position, n_layer):
    # a band of k per layer: receptive field R = n_layer (k - 1) + 1 (k when n_layer = 1)
    k = 3
    R = n_layer * (k - 1) + 1
    model = _prepared(tiny(max_context=k, position=position, n_layer=n_layer))
    idx = torch.randint(0, 32, (1, 16), generator=torch.Generator().manual_seed(3))
    full = model(idx)
    for i in range(R - 1, 16):
        alone = model(idx[:, i - R + 1: i + 1])[0, -1]  # the last R tokens, positions 0..R-1
        torch.testing.assert_close(full[0, i], alone, atol=1e-5, rtol=1e-5)
    shorter = model(idx[:, 15 - R + 2:])[0, -1]  # one token fewer: differs
    assert not torch.allclose(full[0, 15], shorter, atol=1e-4)


def test_max_context_learned_positions_sees_only_the_band():
    k = 3  # two layers: receptive field 2 * (3 - 1) + 1 = 5 tokens
    model = _prepared(tiny(max_context=k))
    idx = torch.randint(0, 32, (1, 16), generator=torch.Generator().manual_seed(4))
    changed = idx.clone()
    changed[0, :8] = (changed[0, :8] + 5) % 32  # tokens 0..7 changed
    a, b = model(idx), model(changed)
    assert torch.equal(a[0, 12:], b[0, 12:])  # i >= 12 only sees 8..i
    assert not torch.allclose(a[0, 11], b[0, 11])  # i = 11 sees token 7


@pytest.mark.parametrize("kw", ARCHS)
def test_build_is_deterministic_and_frozen_tensors_regenerate(kw):
    cfg = tiny(**kw)
    torch.manual_seed(123)
    a = build_model(cfg)
    torch.manual_seed(456)  # the global RNG must not matter
    b = build_model(cfg)
    sa, sb = dict(a.named_parameters()), dict(b.named_parameters())
    sa.update(a.named_buffers())
    sb.update(b.named_buffers())
    assert sa.keys() == sb.keys()
    for n in sa:
        assert torch.equal(sa[n], sb[n]), n
    assert not torch.equal(next(iter(build_model(cfg.replace(seed=4)).parameters())),
                           next(iter(a.parameters())))


@pytest.mark.parametrize("kw", ARCHS)
def test_trained_state_round_trip_gives_identical_logits(kw):
    cfg = tiny(**kw)
    trained = build_model(cfg).eval()
    state = _randomize(trained, seed=9)
    fresh = build_model(cfg).eval()
    fresh.load_trained_state({n: t.clone() for n, t in state.items()})
    idx = torch.randint(0, 32, (2, 10), generator=torch.Generator().manual_seed(5))
    assert torch.equal(trained(idx), fresh(idx))
    assert list(trained.trained_state()) == list(fresh.trained_state())


def test_trained_state_names_dense():
    model = build_model(tiny())
    names = list(model.trained_state())
    assert names[:2] == ["wte.weight", "wpe.weight"]
    assert "blocks.1.mlp.proj.weight" in names and "lm_head.weight" not in names  # tied
    n = sum(t.numel() for t in model.trained_state().values())
    # 32*16 + 24*16 embeddings + 2 layers * (4 + 8) * 16^2 (attn qkv+proj, mlp 4x up/down)
    assert n == 32 * 16 + 24 * 16 + 2 * 12 * 16**2


@pytest.mark.parametrize("kw", ARCHS)
def test_gradients_flow_only_to_trained_tensors(kw):
    model = build_model(tiny(**kw))
    _randomize(model)
    idx = torch.randint(0, 32, (2, 8), generator=torch.Generator().manual_seed(6))
    model(idx).logsumexp(-1).sum().backward()
    trained = set(model.trained_state())
    params = {n: p for n, p in model.named_parameters()}
    assert set(n for n, p in params.items() if p.requires_grad) == trained
    for n, p in params.items():
        if n in trained:
            assert p.grad is not None and p.grad.abs().sum() > 0, n
        else:
            assert p.grad is None, n
    for p in model.buffers():
        assert not p.requires_grad
    assert {id(p) for p in model.trainable_parameters()} == {id(params[n]) for n in trained}


def test_load_trained_state_is_strict():
    model = build_model(tiny())
    state = dict(model.trained_state())
    with pytest.raises(UserError, match="missing"):
        model.load_trained_state({k: v for k, v in state.items() if k != "wte.weight"})
    bad = dict(state, **{"wte.weight": torch.zeros(31, 16)})
    with pytest.raises(UserError, match="wte.weight"):
        model.load_trained_state(bad)
    bad = dict(state, **{"wte.weight": state["wte.weight"].double()})
    with pytest.raises(UserError, match="float64"):
        model.load_trained_state(bad)


def test_sequence_longer_than_context_is_a_user_error():
    with pytest.raises(UserError, match="context_len"):
        build_model(tiny())(torch.zeros(1, 25, dtype=torch.long))
