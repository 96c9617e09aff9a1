"""Table-building logic of the compression-family experiments on tiny synthetic inputs."""

import math

import pytest

from tokenbound.experiments import (exp_compression, exp_doc_vs_token, exp_quantization,
                                    exp_sampling, exp_scaling, family)


def _rep(certified=3.5, fam="betting"):
    fams = {"azuma": {"bound": 4.0, "empirical": 2.0, "complexity_term": 2.0, "alpha": 0.1},
            "bernstein": {"bound": 3.8, "empirical": 2.0, "complexity_term": 1.8, "alpha": 0.1},
            "betting": {"bound": 3.4, "empirical": 2.0, "complexity_term": 1.4, "alpha": 0.05}}
    return {"trained_parameters": 100, "code_bits": 800, "empirical_bits_per_token": 1.9,
            "heldout_bits_per_token": 2.3, "families": fams, "bound_bits_per_token": certified,
            "certified_family": fam, "vacuous": False, "top1_error_bound": 0.6,
            "top10_error_bound": 0.2, "n_tokens": 5000, "n_scored": 5000,
            "document_level": {"m": 4, "value": 30.0, "complexity_term": 28.0, "alpha": 0.5,
                               "vacuous": True}}


def test_compression_row_and_best():
    r = exp_compression.compression_row("LoRA", _rep(), {"value": 3.1})
    assert r["azuma"] == 4.0 and r["bernstein"] == 3.8 and r["betting"] == 3.4
    assert r["paper*"] == 3.1 and r["certified"] == 3.5 and r["code bits"] == 800
    assert exp_compression.compression_row("x", _rep(), None)["paper*"] is None
    rows = [exp_compression.compression_row(n, _rep(c), None)
            for n, c in (("a", 5.0), ("b", 3.0), ("c", 3.0))]
    assert exp_compression.best_row(rows)["variant"] == "b"  # first of the tie


def test_compression_model_config():
    s = family.get_scale(True, {"d_model": 32})
    cfg = family.model_config(s, "monarch", True)
    assert cfg["d_model"] == 32 and cfg["linear"] == {"attn": "monarch", "mlp": "monarch",
                                                      "head": "dense"}
    assert cfg["subspace_dim"] == s["subspace_dim"]
    assert "subspace_dim" not in family.model_config(s, "dense", False)


def test_doc_token_row():
    r = exp_doc_vs_token.doc_token_row("SubLoRA", _rep())
    assert r["documents N"] == 4 and r["tokens m"] == 5000
    assert r["document-level bound"] == 30.0 and r["token-level bound"] == 3.5
    assert r["token complexity term"] == 1.4  # of the certified family (betting)
    no_doc = {**_rep(), "document_level": None}
    assert exp_doc_vs_token.doc_token_row("x", no_doc)["document-level bound"] is None


def test_level_row():
    res = {"levels": 5, "compress": {"total_bits": 1200, "trained_parameters": 400,
                                     "loss_increase": 0.05},
           "cert": {"mean_bits": 2.5, "token": {"best": {"value": 4.0, "complexity_term": 1.2,
                                                         "family": "azuma", "vacuous": False}},
                    "topk": {"1": {"best": {"value": 0.7}}}}}
    r = exp_quantization.level_row(res)
    assert r["bits/param"] == 3.0  # 1200 bits / 400 parameters
    assert r["bound bits/byte"] == 4.0 and r["top-1 err bound"] == 0.7
    assert math.ceil(math.log2(6)) == 3  # the extra bits paid for picking 1 of 6 levels


def test_sampled_and_exact_rows():
    s = {"wall_s": 1.5, "cert": {"n": 100, "paper": {"value": 3.0},
                                 "token": {"best": {"empirical": 2.0, "sampling_term": 0.3,
                                                    "value": 3.9, "family": "azuma",
                                                    "alpha": 0.1}}},
         "eval": {"sample": {"n_distinct_windows": 40}, "totals": {"n_tokens": 40}}}
    r = exp_sampling.sampled_row("one token", s)
    assert (r["draws n"], r["forward passes"], r["tokens scored"]) == (100, 40, 40)
    assert r["paper*"] == 3.0 and r["sampling term"] == 0.3
    e = exp_sampling.exact_row({**_rep(), "n_windows": 7}, 2.0)
    assert e["sampling term"] == 0.0 and e["forward passes"] == 7 and e["tokens scored"] == 5000


def test_pearson_and_scaling_row():
    # hand check: dx = (-1, 0, 1), dy = (-7/3, -1/3, 8/3): sum dx dy = 5, sum dx^2 = 2,
    # sum dy^2 = 114/9, so r = 5 / sqrt(2 * 114/9) = 2.5 / sqrt(57/9)
    r = exp_scaling.pearson([1, 2, 3], [2, 4, 7])
    assert r == pytest.approx(2.5 / math.sqrt(57 / 9))
    assert exp_scaling.pearson([1, 2], [3, 4]) is None
    assert exp_scaling.pearson([1, 1, 1], [3, 4, 5]) is None
    row = exp_scaling.scaling_row(64, 10_000, _rep())
    assert row["complexity term"] == 1.4 and row["smoothed empirical"] == 2.0
    assert row["held-out bits/byte"] == 2.3
