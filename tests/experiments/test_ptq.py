"""`compress --hf`: per-group quantization with the loss before/after on a fixed sample."""

import json
import math

import numpy as np
import pytest
import torch

from tokenbound.experiments.ptq import (LOSS_SEED, causal_lm_loss, loss_windows,
                                        quantization_warnings)

transformers = pytest.importorskip("transformers")


def _stream(path, n_docs=6, seed=0):
    from tokenbound.data import write_stream

    rng = np.random.default_rng(seed)
    docs = [np.append(rng.integers(0, 63, size=40), 63) for _ in range(n_docs)]
    return write_stream(path, docs, {"tokenizer": "toy", "vocab_size": 64, "eot_id": 63,
                                     "start_id": 63})


def test_loss_windows_are_fixed_seeded_slices(tmp_path):
    stream = _stream(tmp_path / "data")
    w = loss_windows(stream, 16, 3)
    starts = np.sort(np.random.default_rng(LOSS_SEED).integers(0, len(stream) - 16, size=3))
    want = np.stack([np.asarray(stream.tokens[u:u + 17], dtype=np.int64) for u in starts])
    assert w.shape == (3, 17) and np.array_equal(w, want)
    assert np.array_equal(loss_windows(stream, 16, 3), w)  # the same sample every time


def test_causal_lm_loss_matches_naive(tiny_llama):
    model = tiny_llama()
    w = np.random.default_rng(1).integers(0, 64, size=(3, 9))
    naive = 0.0
    for row in w:
        with torch.no_grad():
            lp = torch.log_softmax(model(torch.tensor(row[None, :-1])).logits[0].double(), -1)
        naive -= float(sum(lp[t, row[t + 1]] for t in range(8)))
    assert causal_lm_loss(model, w, batch_size=2) == pytest.approx(naive / 24 / math.log(2),
                                                                   rel=1e-5)


def test_warnings():
    assert quantization_warnings(3.0, 3.1, 64, 1e6, 1000) == []
    w = quantization_warnings(3.0, 6.5, 64, 1e6, 1000)  # above log2 64 = 6
    assert len(w) == 1 and "random guessing" in w[0]
    w = quantization_warnings(3.0, 4.0, 64, 500.0, 1000)  # +1 bit/token vs 0.5 saved
    assert len(w) == 1 and "0.500 bits/token of complexity" in w[0]
    assert quantization_warnings(None, None, 64, 0.0, None) == []


def test_compress_hf_command_groupwise_reports_losses(tmp_path, capsys, tiny_llama):
    from tokenbound.cli import main
    from tokenbound.compression import decode

    tiny_llama().save_pretrained(tmp_path / "hf")
    stream = _stream(tmp_path / "data")
    out = tmp_path / "hf.tbm"
    assert main(["compress", "--hf", str(tmp_path / "hf"), "--bits", "4", "--group-size", "16",
                 "--data", str(tmp_path / "data"), "--loss-windows", "2", "--loss-context", "16",
                 "--out", str(out), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["total_bits"] == 8 * out.stat().st_size
    assert rep["quant"]["bits"] == 4 and rep["quant"]["group_size"] == 16
    windows = loss_windows(stream, 16, 2)
    model, _, info = decode(out)
    assert info["extra"]["tokenizer"] == "toy"
    # loss_after is the loss of exactly the decoded message; loss_before of the float model
    assert rep["loss_after"] == causal_lm_loss(model, windows)
    float_model = transformers.LlamaForCausalLM.from_pretrained(tmp_path / "hf").eval()
    assert rep["loss_before"] == causal_lm_loss(float_model, windows)
    assert rep["loss_increase"] == pytest.approx(rep["loss_after"] - rep["loss_before"])
    assert abs(rep["loss_increase"]) < 0.05 and rep["loss_sample"]["seed"] == LOSS_SEED
    assert rep["random_guess_bits_per_token"] == 6.0
    # the text output prints both losses
    assert main(["compress", "--hf", str(tmp_path / "hf"), "--data", str(tmp_path / "data"),
                 "--loss-windows", "1", "--loss-context", "8", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "loss_before" in text and "loss_after" in text and "None" not in text.split(
        "loss_before")[1].splitlines()[0]
