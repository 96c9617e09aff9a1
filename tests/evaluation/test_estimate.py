"""Defaults that fit a CPU: the default context and the estimate printed before scoring."""

import json
import logging
import math

import numpy as np

from tokenbound.cli import main
from tokenbound.data import write_stream
from tokenbound.evaluation import EvalConfig, evaluate
from tokenbound.evaluation.engine import plan
from tokenbound.evaluation.estimate import (CPU_CONTEXT, Estimate, default_context, estimate,
                                            warn_if_long)

from .helpers import EOT, START, V, make_stream


def test_default_context():
    assert default_context(8192, "cpu") == CPU_CONTEXT == 1024
    assert default_context(8192, "cuda") == 8192 and default_context(8192, "cuda:1") == 8192
    assert default_context(512, "cpu") == 512 and default_context(None, "cpu") is None


def test_estimate_counts_passes_and_skips_finished_shards(tmp_path, bigram_source):
    st = make_stream([9, 14, 30, 5])
    cfg = EvalConfig(context_len=8, stride=4, batch_size=3, shard_tokens=16)
    _, idx, _, shards = plan(st, cfg)
    seen = []
    evaluate(bigram_source, st, str(tmp_path / "o"), cfg,
             on_estimate=lambda e: seen.append((e.seconds_per_pass, e.describe(8, "cpu"))))
    assert seen[0] == (None, f"evaluate: 58 tokens in {idx.size} windows of L=8, "
                             f"{sum(math.ceil(len(s) / 3) for s in shards)} forward passes of 3")
    assert len(seen) == 2 and seen[1][0] > 0  # after the first batch: its time, no extra pass
    assert seen[1][1].startswith("evaluate: first forward pass ") and "about " in seen[1][1]
    done = []
    evaluate(bigram_source, st, str(tmp_path / "o"), cfg, on_estimate=done.append)
    assert len(done) == 1  # resumed: nothing left, nothing timed
    assert done[0].todo_passes == 0 and done[0].todo_tokens == 0
    assert done[0].seconds is None and "(0 left;" in done[0].describe(8, "cpu")


def test_estimate_counts_sampled_windows(bigram_source):
    st = make_stream([9, 14, 30, 5])
    cfg = EvalConfig(context_len=8, stride=4, mode="sampled", n_samples=9, batch_size=2)
    windows, idx, _, shards = plan(st, cfg)
    est = estimate(windows, shards, [0], 2)
    assert est.n_windows == idx.size and est.n_tokens == int(windows.n_scored[idx].sum())
    assert est.todo_passes == math.ceil(len(shards[0]) / 2)
    est.seconds_per_pass = 0.5
    assert est.seconds == 0.5 * est.todo_passes


def test_warn_if_long(caplog):
    slow = Estimate(10, 10_000_000, 2000, 10_000_000, 2000, 8, seconds_per_pass=3.0)
    with caplog.at_level(logging.WARNING):
        warn_if_long(slow, 512, "cpu", "evaluate X")
    assert "evaluate X: about 1.7 h on cpu" in caplog.text and "10,000,000 tokens" in caplog.text
    caplog.clear()
    warn_if_long(Estimate(1, 10, 1, 10, 1, 8, seconds_per_pass=3.0), 512, "cpu")
    warn_if_long(slow, 512, "cuda")
    assert caplog.text == ""


def test_command_cpu_default_context_and_estimate(tmp_path, capsys):
    from tokenbound.compression import QuantConfig, encode, quantize_
    from tokenbound.models import GPTConfig, build_model

    cfg = GPTConfig(vocab_size=V, context_len=2048, n_layer=1, n_head=2, d_model=16, seed=1)
    model = build_model(cfg)
    (tmp_path / "m.tbm").write_bytes(encode(model, cfg, quantize_(model, QuantConfig(levels=7))))
    st = make_stream([1500, 30])
    docs = [st.tokens[a:b] for a, b in zip(st.doc_offsets[:-1], st.doc_offsets[1:])]
    write_stream(tmp_path / "data", docs, {"tokenizer": "toy", "vocab_size": V,
                                           "eot_id": EOT, "start_id": START})
    assert main(["evaluate", "--model", str(tmp_path / "m.tbm"), "--data", str(tmp_path / "data"),
                 "--out", str(tmp_path / "o"), "--device", "cpu", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "--context 1024 (CPU default; the model accepts up to 2048" in err
    assert "evaluate: 1,530 tokens in 3 windows of L=1024, 1 forward passes of 8\n" in err
    assert "evaluate: first forward pass " in err and "for the 1 passes" in err
    man = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert man["context_len"] == 1024 and man["stride"] == 1024
    assert np.isfinite(json.loads((tmp_path / "o" / "eval.json").read_text())
                       ["totals"]["mean_bits"])
