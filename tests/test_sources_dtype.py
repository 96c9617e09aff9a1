"""--dtype bf16 on a Hugging Face model keeps the buffers transformers keeps in fp32 (issue 20)."""

import pytest
import torch

from tokenbound.sources import load_model_fn

transformers = pytest.importorskip("transformers")


def test_bf16_keeps_rotary_inv_freq_fp32(tmp_path, tiny_llama):
    tiny_llama(num_hidden_layers=1, max_position_embeddings=32).save_pretrained(tmp_path / "hf")
    src = load_model_fn(str(tmp_path / "hf"), dtype="bf16")
    ref = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf", dtype=torch.bfloat16)
    bufs = {n: b.dtype for n, b in ref.named_buffers() if n.endswith("inv_freq")}
    assert bufs and set(bufs.values()) == {torch.float32}  # what a user loading it in bf16 gets
    idx = torch.randint(0, 64, (2, 9))
    with torch.inference_mode():
        got = src.fn(idx)
        assert got.dtype == torch.bfloat16
        assert torch.equal(got, ref(input_ids=idx, use_cache=False).logits)  # the same model
