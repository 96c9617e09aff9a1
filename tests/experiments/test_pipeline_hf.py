"""The own-model recipe path: a local Hugging Face causal LM directory -> post-training
quantization -> sampled evaluation -> certified bound (sampling terms paid) -> report."""

import json
import math

import pytest

from tokenbound.experiments.pipeline import Recipe, run


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    transformers = pytest.importorskip("transformers")
    d = tmp_path_factory.mktemp("hf")
    cfg = transformers.GPT2Config(vocab_size=256, n_positions=64, n_embd=16, n_layer=1,
                                  n_head=2)
    import torch

    torch.manual_seed(0)
    transformers.GPT2LMHeadModel(cfg).save_pretrained(d)
    return d


def test_hf_recipe_sampled_mode(hf_dir, tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("abcabcabd " * 300)
    out = tmp_path / "run"
    recipe = Recipe(name="hf", out=str(out), hf=str(hf_dir), heldout=False,
                    data={"corpus": str(corpus), "tokenizer": "bytes"},
                    compress={"levels": 7, "method": "uniform", "grouping": "tensor"},
                    evaluate={"context_len": 32, "stride": 32, "mode": "sampled",
                              "n_samples": 200, "seed": 3, "batch_size": 8})
    rep = run(recipe)
    assert rep["mode"] == "sampled"
    m = json.loads((out / "data" / "train" / "meta.json").read_text())["n_tokens"]
    assert rep["n_tokens"] == m
    fams = rep["families"]
    assert {"azuma", "bernstein"} <= set(fams)
    assert "paper (not a certificate)" in fams and not fams["paper (not a certificate)"]["certificate"]
    for name in ("azuma", "bernstein"):
        assert fams[name]["sampling_term"] > 0  # the sample is paid for
    assert rep["bound_bits_per_token"] == min(fams["azuma"]["bound"], fams["bernstein"]["bound"])
    # an untrained model quantized to 7 levels, a ~17 kbit message, 3,000 tokens: vacuous, and
    # the report says so
    assert rep["vacuous"] and rep["bound_bits_per_token"] >= math.log2(256)
    assert rep["code_bits"] == 8 * (out / "model.tbm").stat().st_size
    assert "Sampled mode" in " ".join(rep["notes"])


def test_hf_recipe_per_group_quantization_reports_losses(hf_dir, tmp_path):
    """`compress: {bits, group_size}`: per-group PTQ, the loss before/after on the fixed
    sample of the training stream in the report, the message decodes to the scored model."""
    from tokenbound.compression import decode
    from tokenbound.experiments.recipes import check_compress

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("abcabcabd " * 300)
    out = tmp_path / "run"
    compress = {"bits": 4, "group_size": 16, "loss_windows": 2, "loss_context": 16}
    assert check_compress(compress, trained=False) == compress
    recipe = Recipe(name="hf", out=str(out), hf=str(hf_dir), heldout=False,
                    data={"corpus": str(corpus), "tokenizer": "bytes"}, compress=compress,
                    evaluate={"context_len": 32, "stride": 32, "mode": "sampled",
                              "n_samples": 50, "seed": 3, "batch_size": 8})
    rep = run(recipe)
    q = rep["quantization"]
    assert q["quant"]["bits"] == 4 and q["quant"]["group_size"] == 16
    assert q["loss_before"] > 0 and q["loss_after"] > 0
    assert q["loss_increase"] == pytest.approx(q["loss_after"] - q["loss_before"])
    comp = json.loads((out / "compress.json").read_text())
    assert comp["loss_sample"]["windows"] == 2 and comp["total_bits"] == rep["code_bits"]
    _, _, info = decode(out / "model.tbm")
    assert info["bits_by_part"]["scales"] > 0 and info["extra"]["tokenizer"] == "bytes"
    again = run(recipe)  # the second run reuses the message and its losses
    assert "compress" in again["steps_reused"] and again["quantization"] == q
