"""The five compression-family experiments end to end at a toy scale (one scene, tiny GPTs)."""

import json

import pytest

from tokenbound.experiments.report import render_results as render
from tokenbound.experiments import (exp_compression, exp_doc_vs_token, exp_quantization,
                                    exp_sampling, exp_scaling, family)

TOY = {"docs": 1, "context_len": 32, "n_layer": 1, "n_head": 2, "d_model": 16, "steps": 2,
       "batch": 4, "subspace_dim": 64, "eval_batch": 64, "heldout_samples": 8}


def test_compression_and_doc_vs_token_toy(tmp_path):
    """Fast: one variant through the pipeline, then the doc-vs-token table reuses its run."""
    work, kw = str(tmp_path / "work"), {"scale_override": TOY}
    res = exp_compression.run(str(tmp_path / "c"), True, False, variants=["dense + subspace"],
                              work=work, **kw)
    (r,) = res["rows"]
    assert r["trained params"] == 64  # the subspace dimension
    assert r["certified"] >= r["train bits/byte"] - 1e-9 and r["paper*"] is not None
    assert r["certified"] == min(r["azuma"], r["bernstein"], r["betting"])
    assert (tmp_path / "c" / "compression.png").stat().st_size > 1000
    doc = exp_doc_vs_token.run(str(tmp_path / "d"), True, False, variants=["dense + subspace"],
                               work=work, **kw)
    (d,) = doc["rows"]
    assert d["token-level bound"] == r["certified"]  # the same run, reused from WORK
    # both may be capped at the trivial a + c (a toy model); the uncapped terms still differ
    assert d["documents N"] == 1 and d["document-level bound"] >= d["token-level bound"]
    assert d["doc complexity term"] > d["token complexity term"]
    assert "Document-level" in render("doc-vs-token", json.loads(json.dumps(doc)))
    # the paper column looked up in the exact statistics equals a real sampled evaluation
    run_dir = family.work_dir(work, True) / "compression" / "dense+subspace"
    looked_up = family.sample_from_exact(run_dir, TOY, n=300)
    real = family.sampled_certificate(run_dir, TOY, stride=32, n=300)
    assert looked_up["paper"]["value"] == pytest.approx(real["cert"]["paper"]["value"], rel=1e-9)
    assert looked_up["sampled"]["value"] == pytest.approx(real["cert"]["token"]["best"]["value"],
                                                          rel=1e-9)


@pytest.mark.slow
def test_all_five_toy(tmp_path):
    work, kw = str(tmp_path / "work"), {"scale_override": TOY}
    names = ["dense + subspace", "Monarch"]
    res = exp_compression.run(str(tmp_path / "c"), True, False, variants=names, work=work, **kw)
    assert [r["variant"] for r in res["rows"]] == names
    for r in res["rows"]:
        assert r["certified"] >= r["train bits/byte"] - 1e-9
        assert r["certified"] == min(r["azuma"], r["bernstein"], r["betting"])
        assert r["paper*"] is not None and r["top-10 err bound"] <= 1.0 + 1e-9
    assert res["rows"][0]["trained params"] == 64  # the subspace dimension
    doc = exp_doc_vs_token.run(str(tmp_path / "d"), True, False, variants=names, work=work, **kw)
    for r in doc["rows"]:
        assert r["documents N"] == 1 and r["document-level bound"] > r["token-level bound"]
    q = exp_quantization.run(str(tmp_path / "q"), True, False, work=work, levels=(3, 9), **kw)
    assert [r["levels"] for r in q["rows"][:2]] == [3, 9]
    assert q["rows"][0]["code bits"] < q["rows"][1]["code bits"]  # fewer levels, fewer bits
    assert q["rows"][2]["bound bits/byte"] > min(r["bound bits/byte"] for r in q["rows"][:2])
    s = exp_sampling.run(str(tmp_path / "s"), True, False, work=work, samples=50, **kw)
    assert [r["draws n"] for r in s["rows"]] == [50, 50, 5, None]
    assert s["rows"][-1]["sampling term"] == 0.0 and s["rows"][0]["sampling term"] > 0
    sc = exp_scaling.run(str(tmp_path / "sc"), True, False, widths=[8, 16], work=work, **kw)
    assert [r["d_model"] for r in sc["rows"]] == [8, 16] and sc["correlation_bound_heldout"] is None
    assert sc["rows"][0]["total params"] < sc["rows"][1]["total params"]
    for name, r in (("compression", res), ("scaling", sc)):
        assert name in render(name, json.loads(json.dumps(r, default=str))) or r["title"]

