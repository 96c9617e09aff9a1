"""Adapters on a frozen base (models/finetune.py): what is trained, packing, SubLoRA, bad targets."""

import pytest
import torch

from tokenbound.errors import UserError


def _hf(hf_base):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(hf_base)).eval()


def _cfg(hf_base, **kw):
    from tokenbound.compression.delta import base_identity
    from tokenbound.models.finetune import AdapterConfig

    return AdapterConfig(base=base_identity(str(hf_base)), **kw)


def test_only_lora_tensors_are_trained_and_init_is_the_base(hf_base):
    from tokenbound.models.finetune import attach_adapters

    idx = torch.randint(1, 40, (2, 9))
    want = _hf(hf_base)(input_ids=idx).logits
    model = attach_adapters(_hf(hf_base), _cfg(hf_base, rank=2))
    names = list(model.trained_state())
    # 2 layers x (q_proj, v_proj: PEFT's Llama default) x (A, B)
    assert len(names) == 8 and all(".lora_A." in n or ".lora_B." in n for n in names)
    assert [p for p in model.parameters() if p.requires_grad] == model.trainable_parameters()
    torch.testing.assert_close(model(idx), want, rtol=0, atol=0)  # B = 0 at init


def test_packed_rows_do_not_attend_across_documents(hf_base):
    from tokenbound.models.finetune import attach_adapters

    model = attach_adapters(_hf(hf_base), _cfg(hf_base))
    with torch.no_grad():
        for p in model.trainable_parameters():
            p.normal_(0, 0.3)  # non-trivial adapters
    a, b = torch.randint(1, 40, (1, 5)), torch.randint(1, 40, (1, 4))
    packed = model(torch.cat([a, b], 1), doc_ids=torch.tensor([[0] * 5 + [1] * 4]))
    torch.testing.assert_close(packed[:, :5], model(a), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(packed[:, 5:], model(b), rtol=1e-5, atol=1e-5)


def test_same_config_same_model_and_seed_changes_init(hf_base):
    from tokenbound.models.finetune import attach_adapters

    s1 = attach_adapters(_hf(hf_base), _cfg(hf_base, seed=3)).trained_state()
    s2 = attach_adapters(_hf(hf_base), _cfg(hf_base, seed=3)).trained_state()
    s3 = attach_adapters(_hf(hf_base), _cfg(hf_base, seed=4)).trained_state()
    assert all(torch.equal(s1[k], s2[k]) for k in s1)
    assert any(not torch.equal(s1[k], s3[k]) for k in s1)


def test_sublora_trains_only_subspace_coordinates(hf_base):
    from tokenbound.models.finetune import attach_adapters

    model = attach_adapters(_hf(hf_base), _cfg(hf_base, subspace_dim=12))
    assert list(model.trained_state()) == ["subspace.w"]
    idx = torch.randint(1, 40, (1, 7))
    base_logits = model(idx).detach()
    with torch.no_grad():
        model.subspace.w.normal_(0, 1.0)
    moved = model(idx)
    assert not torch.allclose(moved, base_logits)
    moved.sum().backward()
    assert model.subspace.w.grad is not None and model.subspace.w.grad.abs().sum() > 0


def test_gpt_base_gets_adapters_on_its_dense_maps():
    from tokenbound.compression.delta import base_identity  # noqa: F401  (registers the builder)
    from tokenbound.models import GPTConfig, build_model
    from tokenbound.models.finetune import AdapterConfig, attach_adapters

    gpt = build_model(GPTConfig(vocab_size=16, context_len=16, n_layer=1, n_head=2, d_model=16))
    idx = torch.randint(0, 16, (2, 8))
    want = gpt(idx).detach()
    model = attach_adapters(gpt, AdapterConfig(base={"kind": "run", "sha256": "x"}))
    assert sorted({n.split(".")[4] for n in model.trained_state()}) == ["fc", "qkv"]
    torch.testing.assert_close(model(idx), want, rtol=0, atol=0)


@pytest.mark.parametrize("targets", [("nope_proj",), ("layers",)])
def test_adapters_on_missing_or_unsupported_modules_are_refused(hf_base, targets):
    from tokenbound.models.finetune import attach_adapters

    with pytest.raises(UserError, match="--lora-targets") as err:
        attach_adapters(_hf(hf_base), _cfg(hf_base, targets=targets))
    assert "\n" not in str(err.value)
