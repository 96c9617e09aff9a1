"""Post-training quantization of a Hugging Face causal LM (tiny GPT-2 built from a config)."""

import pytest
import torch

from tokenbound.compression import MessageError, QuantConfig, bits_by_part, decode, encode, \
    quantize_

transformers = pytest.importorskip("transformers")


def _tiny_gpt2():
    cfg = transformers.GPT2Config(vocab_size=50, n_positions=32, n_embd=16, n_layer=1, n_head=2,
                                  bos_token_id=0, eos_token_id=0)
    torch.manual_seed(0)
    return transformers.GPT2LMHeadModel(cfg).eval()


@pytest.mark.parametrize("qcfg", [QuantConfig(levels=9, grouping="tensor", exclude=("*ln_*",)),
                                  QuantConfig(levels=5, method="kmeans")],
                         ids=["uniform-tensor-raw-norms", "kmeans-model"])
def test_hf_round_trip_tied_weights_once(qcfg, forge):
    model = _tiny_gpt2()
    qstate = quantize_(model, qcfg)
    msg = encode(model, model.config, qstate, extra_header={"tokenizer": "gpt2-tiny-test"})
    model2, cfg2, info = decode(msg)
    assert type(model2).__name__ == "GPT2LMHeadModel" and cfg2.n_embd == 16
    names = [t[0] for t in info["header"]["tensors"]]
    assert "lm_head.weight" not in names and "transformer.wte.weight" in names  # tied: once
    assert model2.lm_head.weight.data_ptr() == model2.transformer.wte.weight.data_ptr()
    for (n, a), (_, b) in zip(model.state_dict().items(), model2.state_dict().items()):
        assert torch.equal(a, b), n
    x = torch.randint(0, 50, (2, 10), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(model(x).logits, model2(x).logits)
    assert sum(bits_by_part(msg).values()) == 8 * len(msg)
    # with ln_* excluded, ln_1, ln_2, ln_f weight + bias = 6 vectors of 16 float32 stay raw
    assert bits_by_part(msg)["raw"] == (6 * 16 * 32 if qcfg.exclude else 0)
    # decoding never instantiates a class outside transformers' causal-LM table
    with pytest.raises(MessageError, match="causal-LM"):
        decode(forge(msg, lambda h: h["config"].update({"class": "Trainer"})))


def test_compress_hf_command(tmp_path, capsys):
    import json

    from tokenbound.cli import main

    _tiny_gpt2().save_pretrained(tmp_path / "hf")
    out = tmp_path / "hf.tbq"
    assert main(["compress", "--hf", str(tmp_path / "hf"), "--levels", "7", "--out", str(out),
                 "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["total_bits"] == 8 * out.stat().st_size
    # GPT-2 tiny: wte 50x16 + wpe 32x16 + block + ln_f; lm_head tied, counted once
    assert rep["trained_parameters"] == sum(p.numel() for p in _tiny_gpt2().parameters())
