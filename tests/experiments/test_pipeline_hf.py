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
