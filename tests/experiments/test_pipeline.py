"""End-to-end pipeline on a tiny corpus: prepare -> train -> compress -> evaluate -> bound ->
report, resumability, and the report's numbers checked against independent arithmetic."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from tokenbound.cli import main
from tokenbound.experiments.pipeline import Recipe, run

TEXT = ("To be, or not to be, that is the question:\n"
        "Whether 'tis nobler in the mind to suffer\n"
        "The slings and arrows of outrageous fortune,\n")


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("corpus")
    for i in range(12):
        (d / f"doc{i:02d}.txt").write_text(TEXT * (1 + i % 3) + f"scene {i}\n")
    return d


def _recipe(corpus_dir, out) -> Recipe:
    return Recipe(
        name="tiny", out=str(out), delta=0.05,
        data={"corpus": str(corpus_dir), "tokenizer": "bytes"},
        model={"vocab_size": 256, "context_len": 32, "n_layer": 1, "n_head": 2, "d_model": 16,
               "subspace_dim": 64, "seed": 0},
        train={"steps": 6, "batch_size": 4, "lr": 0.05, "eval_interval": 0, "eval_batches": 1,
               "ckpt_interval": 3, "seed": 0, "device": "cpu", "bf16": False},
        compress={"levels": 9, "method": "uniform", "eval_batches": 1, "batch_size": 2},
        evaluate={"context_len": 32, "stride": 32, "mode": "exact", "batch_size": 4},
    )


@pytest.fixture(scope="module")
def finished(corpus_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    rep = run(_recipe(corpus_dir, out))
    return out, rep


REQUIRED = ("bound_bits_per_token", "families", "empirical_bits_per_token",
            "heldout_bits_per_token", "random_guess_bits_per_token", "top1_error_bound",
            "code_bits", "n_tokens", "n_scored", "delta", "vacuous", "provenance")


def test_report_has_the_promised_keys_and_files(finished):
    out, rep = finished
    for k in REQUIRED:
        assert k in rep, k
    for f in ("report.json", "report.md", "bound_decomposition.png", "bound_vs_alpha.png",
              "model.tbm", "bound.json"):
        assert (out / f).is_file(), f
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk["bound_bits_per_token"] == rep["bound_bits_per_token"]
    for fam in ("azuma", "bernstein", "betting"):
        assert fam in rep["families"]
    prov = rep["provenance"]
    assert prov["message_sha256"] == prov["eval_model_sha256"]
    assert prov["data_sha256"] and prov["tokenbound_version"]


def test_code_bits_is_the_message_length(finished):
    out, rep = finished
    assert rep["code_bits"] == 8 * (out / "model.tbm").stat().st_size


def test_every_token_scored_and_minimum_is_certified(finished):
    out, rep = finished
    meta = json.loads((out / "data" / "train" / "meta.json").read_text())
    assert rep["n_tokens"] == rep["n_scored"] == meta["n_tokens"]
    certs = [f["bound"] for f in rep["families"].values() if f["certificate"]]
    assert rep["bound_bits_per_token"] == min(certs)
    assert rep["bound_bits_per_token"] >= rep["families"]["azuma"]["empirical"] - 1e-12 or \
        rep["certified_family"] != "azuma"


def _uncapped(b: dict) -> float:
    """A bound before the trivial cap: its terms' sum (they are never capped)."""
    return b["empirical"] + b["complexity_term"] + b["sampling_term"]


def test_azuma_value_matches_hand_arithmetic(finished):
    """Recompute the azuma candidate at its alpha from C, m, delta and the grid sizes alone:
    K = (C + 2 log2 C) ln 2 + ln(1/delta) + ln(10 alphas * 2 centers * 3 families);
    bound = min(a + c, a + Xbar + c sqrt(K / (2 m))), with a, c from METHOD 1 (V = 256)."""
    out, rep = finished
    fam = rep["families"]["azuma"]
    alpha, V, m, C = fam["alpha"], 256, rep["n_tokens"], rep["code_bits"]
    a = -math.log2(1 - alpha + alpha / V)
    c = math.log2(1 + (1 - alpha) * V / alpha)
    K = (C + 2 * math.log2(C)) * math.log(2) + math.log(1 / 0.05) + math.log(10 * 2 * 3)
    assert fam["k_nats"] == pytest.approx(K, rel=1e-12)
    uncapped = fam["empirical"] + c * math.sqrt(K / (2 * m))
    assert fam["empirical"] + fam["complexity_term"] == pytest.approx(uncapped, rel=1e-12)
    # every bound is capped at the trivial a + c (this tiny model's is trivial)
    assert fam["bound"] == pytest.approx(min(uncapped, a + c), rel=1e-12)
    assert fam["trivial"] == (uncapped >= a + c)
    assert fam["empirical"] >= a


def test_rerun_skips_finished_steps_and_gives_identical_numbers(finished, corpus_dir):
    out, rep = finished
    rep2 = run(_recipe(corpus_dir, out))
    assert rep2["bound_bits_per_token"] == rep["bound_bits_per_token"]
    assert rep2["code_bits"] == rep["code_bits"]
    # every step but the bound was done by the first run: its seconds are kept, not 0 s
    assert rep2["steps_reused"][:4] == ["prepare", "train", "compress", "evaluate"]
    for name in rep2["steps_reused"]:
        assert rep2["timings_s"][name] == rep["timings_s"][name], name
    assert rep2["timings_s"]["train"] > 0
    t = rep2["timings_s"]
    assert t["total"] == pytest.approx(sum(v for k, v in t.items()
                                           if k not in ("total", "this_run")), abs=0.02)
    assert t["this_run"] > 0  # (not compared with total: a tiny run's steps take ~0.1 s)
    assert json.loads((out / "compress.json").read_text())["seconds"] == t["compress"]


def test_bound_command_matches_report_and_rejects_other_message(finished, tmp_path, capsys):
    out, rep = finished
    assert main(["bound", str(out / "eval_train"), "--message", str(out / "model.tbm"),
                 "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["token"]["best"]["value"] == rep["bound_bits_per_token"]
    other = tmp_path / "other.tbm"
    data = bytearray((out / "model.tbm").read_bytes())
    data[-1] ^= 1
    other.write_bytes(bytes(data))
    assert main(["bound", str(out / "eval_train"), "--message", str(other)]) == 2
    assert "not the model that was evaluated" in capsys.readouterr().err
    # --code-bits cannot undercut the message that was scored
    c = rep["code_bits"]
    assert main(["bound", str(out / "eval_train"), "--code-bits", str(c - 8)]) == 2
    assert "pass --message" in capsys.readouterr().err
    # other candidates compared on these results are paid ln N in K, exact mode included
    assert main(["bound", str(out / "eval_train"), "--code-bits", str(c), "--candidates", "50",
                 "--json"]) == 0
    best50 = json.loads(capsys.readouterr().out)["token"]["best"]
    assert best50["k_parts"]["grid:candidates"] == pytest.approx(math.log(50))
    assert best50["value"] >= rep["bound_bits_per_token"]  # equal when both are trivial
    assert _uncapped(best50) > _uncapped(rep["bound"]["token"]["best"])


def test_recipe_errors_are_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nmodel: {}\nhf: somewhere\ncompress: {levels: 3}\n"
                   "evaluate: {context_len: 8}\ndata: {corpus: shakespeare}\n")
    r = subprocess.run([sys.executable, "-m", "tokenbound", "run", str(bad)],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert "exactly one of" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "tokenbound", "run", str(tmp_path / "none.yaml")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "no such file" in r.stderr


def test_truncate_train_keeps_heldout_flags_aligned():
    from tokenbound.data import load_corpus
    from tokenbound.data.prepare import truncate_train

    corp = load_corpus("shakespeare")
    small = truncate_train(corp, 5)
    assert len(small.split("train")) == 5
    assert [d.name for d in small.split("heldout")] == [d.name for d in corp.split("heldout")]
    assert [d.name for d in small.split("train")] == [d.name for d in corp.split("train")[:5]]
    assert np.all(np.array([len(d.text) for d in small.split("train")]) > 0)


def test_changed_compress_settings_are_refused(finished, corpus_dir):
    from tokenbound.errors import UserError

    out, _ = finished
    recipe = _recipe(corpus_dir, out)
    recipe.compress = {**recipe.compress, "levels": 5}
    with pytest.raises(UserError, match="other compress settings"):
        run(recipe)


def test_extra_bits_are_added_to_the_message_length_in_every_bound(finished, corpus_dir, capsys):
    """A rerun with extra_bits = E (choices made on the data) equals `tokenbound bound
    --extra-bits E` and is looser than the run without them; the report shows E."""
    from dataclasses import replace

    out, rep = finished
    r = replace(_recipe(corpus_dir, out), extra_bits=2000)
    rep_e = run(r)
    try:
        assert rep_e["extra_bits"] == 2000
        assert rep_e["bound_bits_per_token"] >= rep["bound_bits_per_token"]  # both may be trivial
        assert _uncapped(rep_e["bound"]["token"]["best"]) > _uncapped(rep["bound"]["token"]["best"])
        capsys.readouterr()
        assert main(["bound", str(out / "eval_train"), "--message", str(out / "model.tbm"),
                     "--extra-bits", "2000", "--json"]) == 0
        res = json.loads(capsys.readouterr().out)
        assert res["token"]["best"]["value"] == rep_e["bound_bits_per_token"]
        assert res["token"]["best"]["extra_bits"] == 2000
        assert "bits paid for choices made on the data | 2,000" in (out / "report.md").read_text()
    finally:
        run(_recipe(corpus_dir, out))  # leave the module's run as the other tests expect it


def test_extra_bits_must_be_a_whole_number(corpus_dir, tmp_path):
    from dataclasses import replace

    from tokenbound.errors import UserError

    with pytest.raises(UserError, match="extra_bits"):
        replace(_recipe(corpus_dir, tmp_path), extra_bits=-1)
    with pytest.raises(UserError, match="extra_bits"):
        replace(_recipe(corpus_dir, tmp_path), extra_bits=1.5)
    with pytest.raises(UserError, match="extra_bits"):
        replace(_recipe(corpus_dir, tmp_path), extra_bits=True)


def test_unknown_compress_key_is_refused_not_ignored(corpus_dir, tmp_path):
    """A typo such as `qat_step: 300` must not silently skip the fine-tuning."""
    from dataclasses import replace

    from tokenbound.errors import UserError

    r = _recipe(corpus_dir, tmp_path)
    with pytest.raises(UserError, match=r"unknown key\(s\) \['qat_step'\] \(did you mean "
                                        r"'qat_steps'"):
        replace(r, compress={**r.compress, "qat_step": 300})
    replace(r, compress={**r.compress, "qat_steps": 3, "qat_lr": 0.01, "kmeans_iters": 5,
                         "qat_optimizer": "adam"})
    with pytest.raises(UserError, match="qat_optimizer.*sgd or adam"):
        replace(r, compress={**r.compress, "qat_optimizer": "Adam"})
