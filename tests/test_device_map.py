"""`device_map="auto"` loading (accelerate) for models larger than one device: the code path on
a tiny Hugging Face GPT-2 on the CPU (accelerate places every module on the CPU here)."""

import pytest
import torch

from tokenbound.errors import UserError
from tokenbound.sources import load_model_fn


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=40, n_positions=16, n_embd=16, n_layer=2, n_head=2)
    path = tmp_path_factory.mktemp("hf") / "gpt2"
    GPT2LMHeadModel(cfg).save_pretrained(path)
    return str(path)


def test_device_map_auto_loads_and_scores_like_plain_load(hf_dir, monkeypatch):
    pytest.importorskip("accelerate")
    from transformers import AutoModelForCausalLM

    plain = load_model_fn(hf_dir)
    loaded = []
    real = AutoModelForCausalLM.from_pretrained

    def spy(*args, **kw):
        loaded.append(kw.get("device_map"))
        return real(*args, **kw)

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", spy)
    mapped = load_model_fn(hf_dir, device_map="auto")
    assert loaded == ["auto"]  # accelerate infers the map (one CPU here: no hooks needed)
    assert mapped.vocab_size == plain.vocab_size == 40 and mapped.max_context == 16
    assert mapped.ident == plain.ident  # same files, same identity in the manifest
    idx = torch.randint(0, 40, (2, 11))
    with torch.inference_mode():
        torch.testing.assert_close(mapped.fn(idx), plain.fn(idx))


def test_device_map_rejected_for_messages_and_bad_values(hf_dir, tmp_path):
    with pytest.raises(UserError, match="device-map must be auto"):
        load_model_fn(hf_dir, device_map="balanced")
    msg = tmp_path / "model.tbm"
    msg.write_bytes(b"not read")
    with pytest.raises(UserError, match="Hugging Face and GGUF"):
        load_model_fn(str(msg), device_map="auto")
