"""`train --base` -> delta message -> evaluate -> bound, end to end on a tiny Llama base."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from tokenbound.cli import main
from tokenbound.errors import UserError

FT = ["--steps", "4", "--batch-size", "4", "--seq-len", "24", "--eval-interval", "2",
      "--eval-batches", "1", "--ckpt-interval", "2", "--no-bf16", "--no-progress",
      "--device", "cpu", "--lr", "1e-2", "--lora-rank", "2"]


@pytest.fixture(scope="module")
def ft(tmp_path_factory, hf_base, hf_data):
    """A finished fine-tuning run, its delta message and an exact evaluation of it."""
    root = tmp_path_factory.mktemp("ft")
    run, msg, ev = root / "run", root / "ft.tbm", root / "ev"
    assert main(["train", "--base", str(hf_base), "--data", str(hf_data), "--out", str(run),
                 *FT]) == 0
    assert main(["compress", str(run), "--levels", "15", "--out", str(msg),
                 "--eval-batches", "1", "--json"]) == 0
    assert main(["evaluate", "--model", str(msg), "--data", str(hf_data / "train"),
                 "--out", str(ev), "--context", "32", "--batch-size", "4"]) == 0
    return {"run": run, "msg": msg, "ev": ev, "root": root}


def test_run_records_the_base_and_trains_only_adapters(ft, hf_base):
    cfg = json.loads((ft["run"] / "config.json").read_text())
    base = cfg["model"]["base"]
    assert base["kind"] == "hf" and base["path"] == str(hf_base.absolute())
    from tokenbound.fileio import dir_sha256

    assert base["sha256"] == dir_sha256(str(hf_base))
    trained = load_file(str(ft["run"] / "model.safetensors"))
    assert trained and all(".lora_" in k for k in trained)
    assert any(t.abs().sum() > 0 for k, t in trained.items() if ".lora_B." in k)  # it trained


def test_resume_gives_identical_adapters(tmp_path, hf_base, hf_data, monkeypatch):
    from tokenbound.training import TrainConfig, train
    from tokenbound.training import loop as loop_mod
    from tokenbound.training.finetune import adapter_config

    def cfg(out):
        return TrainConfig(data=str(hf_data), out=str(out), steps=4, batch_size=4,
                           context_len=16, eval_interval=2, eval_batches=1, ckpt_interval=2,
                           bf16=False, device="cpu", lr=1e-2,
                           model=adapter_config(str(hf_base), rank=2))

    train(cfg(tmp_path / "a"), progress=False)
    original = loop_mod._Trainer._step

    def step(self, s):
        if s == 3:
            raise KeyboardInterrupt
        return original(self, s)

    with monkeypatch.context() as m:
        m.setattr(loop_mod._Trainer, "_step", step)
        with pytest.raises(KeyboardInterrupt):
            train(cfg(tmp_path / "b"), progress=False)
    train(cfg(tmp_path / "b"), progress=False)
    a = load_file(str(tmp_path / "a/model.safetensors"))
    b = load_file(str(tmp_path / "b/model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_delta_message_codes_only_adapters_and_decodes_to_the_scored_model(ft, hf_base):
    from tokenbound.compression import QuantConfig, decode, quantize_
    from tokenbound.sources import load_model_fn
    from tokenbound.training import load_run

    model, _, _ = load_run(ft["run"])
    quantize_(model, QuantConfig(levels=15))
    decoded, _, info = decode(ft["msg"])
    assert info["header"]["builder"] == "delta"
    assert info["trained_parameters"] == sum(t.numel() for t in model.trained_state().values())
    # the base's weights are not in the message: far fewer bits than the base's parameters
    assert info["total_bits"] < sum(p.numel() for p in decoded.net.parameters())
    idx = torch.randint(1, 40, (2, 20))
    with torch.no_grad():
        want = model(idx)
        torch.testing.assert_close(decoded(idx), want, rtol=0, atol=0)
        src = load_model_fn(str(ft["msg"]))
        torch.testing.assert_close(src.fn(idx), want, rtol=0, atol=0)
    assert src.ident["prior"]["sha256"] == info["header"]["config"]["adapter"]["base"]["sha256"]


def test_decoding_needs_the_same_base(ft, hf_base, tmp_path):
    from tokenbound.compression import decode
    from tokenbound.compression.delta import BaseMismatch, using_base

    moved = tmp_path / "moved"
    shutil.copytree(hf_base, moved)
    with using_base(str(moved)):
        decode(ft["msg"])  # same files elsewhere: fine
    (moved / "config.json").write_text((moved / "config.json").read_text() + "\n")
    want = json.loads((ft["run"] / "config.json").read_text())["model"]["base"]["sha256"]
    with using_base(str(moved)), pytest.raises(BaseMismatch) as err:
        decode(ft["msg"])
    assert want in str(err.value) and "--base" in str(err.value)
    with using_base(str(tmp_path / "gone")), pytest.raises(BaseMismatch, match="missing"):
        decode(ft["msg"])


def test_evaluate_base_flag_and_changed_base_one_line(ft, hf_base, hf_data, tmp_path, capsys):
    moved = tmp_path / "copy"
    shutil.copytree(hf_base, moved)
    (moved / "generation_config.json").write_text("{}")
    args = ["evaluate", "--model", str(ft["msg"]), "--data", str(hf_data / "train"),
            "--out", str(tmp_path / "ev"), "--context", "32", "--base", str(moved)]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("tokenbound evaluate: error:") and "sha256" in err
    assert not (tmp_path / "ev").exists()


def test_bound_requires_and_records_the_statement(ft, tmp_path, capsys):
    base = ["bound", str(ft["ev"]), "--message", str(ft["msg"])]
    assert main(base) == 2
    assert "--base-independent" in capsys.readouterr().err
    reason = "a randomly initialized base, saved before the corpus was written"
    out = tmp_path / "bound.json"
    assert main([*base, "--base-independent", reason, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    res = json.loads(out.read_text())
    assert res["prior"]["kind"] == "base" and res["prior"]["statement"] == reason
    assert res["prior"]["base"]["kind"] == "hf" and reason in printed
    assert "fixed without looking at" in res["prior"]["assumes"]
    assert res["token"]["best"]["code_bits"] == 8 * ft["msg"].stat().st_size


def test_hf_model_below_its_own_size_needs_a_statement(ft, hf_base, hf_data, capsys):
    ev = ft["root"] / "ev-base"
    assert main(["evaluate", "--model", str(hf_base), "--data", str(hf_data / "train"),
                 "--out", str(ev), "--context", "32"]) == 0
    assert main(["bound", str(ev), "--code-bits", "0"]) == 2
    assert "--base-independent" in capsys.readouterr().err
    assert main(["bound", str(ev), "--code-bits", "0", "--base-independent", "untrained",
                 "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["prior"]["kind"] == "fixed-model" and res["prior"]["statement"] == "untrained"
    size = sum(f.stat().st_size for f in hf_base.rglob("*") if f.is_file())
    assert main(["bound", str(ev), "--code-bits", str(8 * size), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["prior"]["kind"] == "code"


def test_bad_bases_and_mismatched_tokenizer(tmp_path, hf_base, hf_data, capsys):
    from tokenbound.experiments import steps

    (tmp_path / "c.txt").write_text("the cat sat\n\nthe dog sat\n\nthe hen sat\n\nthe fox sat")
    steps.prepare(str(tmp_path / "c.txt"), "bytes", tmp_path / "bytes", heldout_fraction=0.0,
                  doc_separator="\\n\\n")
    from transformers import ResNetConfig, ResNetModel

    ResNetModel(ResNetConfig(embedding_size=8, hidden_sizes=[8], depths=[1])).save_pretrained(
        str(tmp_path / "resnet"))
    cases = [(str(hf_base), tmp_path / "bytes", "--tokenizer hf:"),
             (str(tmp_path / "resnet"), hf_data, "cannot load it"),
             (str(tmp_path / "nothing"), hf_data, "no such file")]
    for base, data, words in cases:
        out = tmp_path / f"run-{len(words)}"
        assert main(["train", "--base", base, "--data", str(data), "--out", str(out),
                     *FT]) == 2
        err = capsys.readouterr().err.strip().splitlines()[-1]  # after transformers' bars
        assert err.startswith("tokenbound train: error:") and words in err, err
        assert not out.exists()
    assert main(["train", "--base", str(hf_base), "--data", str(hf_data), "--out",
                 str(tmp_path / "x"), *FT, "--n-layer", "2"]) == 2
    assert "does not apply with --base" in capsys.readouterr().err


@pytest.mark.slow
def test_our_gpt_run_as_base(tmp_path, capsys):
    """A tokenbound run is a base too; a base trained on the bounded stream is no prior for it."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parents[1] / "training"))
    from training_helpers import TINY, write_toy_data

    data = write_toy_data(tmp_path / "data")
    assert main(["train", "--data", data, "--out", str(tmp_path / "gpt"), *TINY]) == 0
    ft = ["--steps", "2", "--batch-size", "4", "--seq-len", "12", "--eval-batches", "0",
          "--ckpt-interval", "0", "--no-bf16", "--no-progress", "--device", "cpu"]
    assert main(["train", "--base", str(tmp_path / "gpt"), "--data", data, "--out",
                 str(tmp_path / "ft"), *ft]) == 0
    msg, ev = tmp_path / "ft.tbm", tmp_path / "ev"
    assert main(["compress", str(tmp_path / "ft"), "--levels", "7", "--out", str(msg),
                 "--eval-batches", "0", "--json"]) == 0
    assert main(["evaluate", "--model", str(msg), "--data", f"{data}/train", "--out", str(ev),
                 "--batch-size", "4"]) == 0
    capsys.readouterr()
    assert main(["bound", str(ev), "--message", str(msg), "--base-independent", "x"]) == 2
    assert "trained on the stream being bounded" in capsys.readouterr().err
    # on the held-out stream the same base is a prior (with the user's statement)
    assert main(["evaluate", "--model", str(msg), "--data", f"{data}/heldout", "--out",
                 str(tmp_path / "evh"), "--batch-size", "4"]) == 0
    assert main(["bound", str(tmp_path / "evh"), "--message", str(msg), "--base-independent",
                 "the base saw only DATA/train"]) == 0


@pytest.mark.slow
def test_experiment_finetune_on_a_tiny_base(tmp_path, hf_base, monkeypatch):
    """The experiment's wiring (rows, priors, statement) with the tiny Llama in place of
    SmolLM2 and a few .py files as the corpus."""
    from finetune_helpers import TEXT
    from tokenbound.experiments import exp_finetune as X

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i, para in enumerate(TEXT.split("\n\n")[:10]):
        (corpus / f"f{i}.py").write_text(f"# {para}\n")
    monkeypatch.setattr(X, "base", lambda: (str(hf_base), f"hf:{hf_base}/tokenizer.json"))
    monkeypatch.setattr(X, "corpus_dir", lambda: str(corpus))
    monkeypatch.setattr(X, "_whole_code_bits", lambda *a: 10_000_000)
    res = X.run(str(tmp_path / "out"), quick=False, progress=False, smoke=True,
                scale_override={"train_docs": 6, "seq_len": 32, "context_len": 32,
                                "subspace_dim": 50})
    ft, base, whole = res["rows"]
    assert ft["tokens m"] == base["tokens m"] == whole["tokens m"] > 0
    assert base["code bits C"] == 0 and base["complexity term"] < ft["complexity term"]
    assert ft["code bits C"] == 8 * (tmp_path / "out" / "ft.tbm").stat().st_size
    assert ft["prior"]["kind"] == "base" and ft["prior"]["statement"] == X.STATEMENT
    assert base["prior"]["kind"] == "fixed-model" and whole["vacuous"]
    again = X.run(str(tmp_path / "out"), quick=False, progress=False, smoke=True,
                  scale_override={"train_docs": 6, "seq_len": 32, "context_len": 32,
                                  "subspace_dim": 50})
    assert again["rows"][0]["bound bits/token"] == ft["bound bits/token"]  # resumed, same


def test_sampled_evaluation_of_a_delta_names_the_prior_too(ft, hf_data, tmp_path, capsys):
    ev = tmp_path / "ev-sampled"
    assert main(["evaluate", "--model", str(ft["msg"]), "--data", str(hf_data / "train"),
                 "--out", str(ev), "--context", "32", "--mode", "sampled", "--samples", "40",
                 "--batch-size", "4"]) == 0
    assert main(["bound", str(ev), "--message", str(ft["msg"])]) == 2
    assert "--base-independent" in capsys.readouterr().err
    assert main(["bound", str(ev), "--message", str(ft["msg"]), "--base-independent", "why",
                 "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["mode"] == "sampled" and res["prior"]["kind"] == "base"
    assert res["prior"]["statement"] == "why"


def test_cli_refuses_adapters_on_modules_that_do_not_exist(tmp_path, hf_base, hf_data, capsys):
    out = tmp_path / "run"
    assert main(["train", "--base", str(hf_base), "--data", str(hf_data), "--out", str(out),
                 *FT, "--lora-targets", "nope_proj"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--lora-targets nope_proj" in err and "q_proj" in err  # names what exists
    assert not out.exists()


@pytest.mark.slow
def test_torchrun_fine_tuning_matches_one_process(tmp_path, hf_base, hf_data):
    """`torchrun ... train --base` (2 CPU processes, gloo) trains the same adapters as one
    process, and only the adapters are saved."""
    import os
    import subprocess
    import sys

    one, two = str(tmp_path / "one"), str(tmp_path / "two")
    args = ["--base", str(hf_base), "--data", str(hf_data), "--lora-rank", "2", "--steps", "3",
            "--batch-size", "4", "--seq-len", "16", "--eval-batches", "0", "--ckpt-interval", "0",
            "--no-bf16", "--no-progress", "--device", "cpu"]
    assert main(["train", *args, "--out", one]) == 0
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "tokenbound", "train", *args, "--out", two],
        capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = load_file(f"{one}/model.safetensors"), load_file(f"{two}/model.safetensors")
    assert a.keys() == b.keys() and a and all("lora" in k for k in a)
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=1e-6)
