"""User mistakes at `tokenbound evaluate` / `tokenbound bound` get one-line errors (exit 2), and
the bound command prints sampled evaluations: a real tiny pipeline (prepare -> train ->
compress) on a 12-document byte corpus, a few seconds on one CPU thread."""

import json
import re
from types import SimpleNamespace

import numpy as np
import pytest

from tokenbound.cli import main
from tokenbound.data import write_stream
from tokenbound.errors import UserError
from tokenbound.evaluation import EvalConfig, evaluate
from tokenbound.evaluation.sources import ModelSource
from tokenbound.sources import load_model_fn
from tokenbound.training.run import is_training_run

from .helpers import make_stream

TEXT = "To be, or not to be, that is the question:\n"
CHARS = "chars:Tobe,rnthaisqu:\\n 0123456789c"  # every character of the corpus below


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """(root, data dir with train/ and heldout/ (bytes), chars data dir, run dir, message)."""
    from tokenbound.compression import QuantConfig
    from tokenbound.experiments import steps

    root = tmp_path_factory.mktemp("inputs")
    corpus = root / "corpus"
    corpus.mkdir()
    for i in range(12):
        (corpus / f"doc{i:02d}.txt").write_text(TEXT * (1 + i % 3) + f"scene {i}\n")
    steps.prepare(str(corpus), "bytes", root / "d")
    steps.prepare(str(corpus), CHARS, root / "dc")
    steps.train(root / "d", root / "run",
                {"vocab_size": 256, "context_len": 32, "n_layer": 1, "n_head": 2, "d_model": 16,
                 "seed": 0},
                {"steps": 2, "batch_size": 2, "lr": 0.05, "eval_interval": 0, "eval_batches": 1,
                 "ckpt_interval": 1, "seed": 0, "device": "cpu", "bf16": False})
    msg = root / "model.tbm"
    steps.compress_run(root / "run", msg, QuantConfig(levels=9, method="uniform"),
                       steps.QATConfig(eval_batches=0))
    return root, root / "d", root / "dc", root / "run", msg


def _evaluate(msg, data, out, *extra):
    return main(["evaluate", "--model", str(msg), "--data", str(data), "--out", str(out),
                 "--context", "32", "--batch-size", "4", *extra])


# ---- bound: sampled evaluations are printed, --estimator in exact mode warns ----------------
def test_bound_prints_a_sampled_evaluation(pipeline, tmp_path, capsys):
    from tokenbound.experiments import steps

    _, data, _, _, msg = pipeline
    out = tmp_path / "es"
    assert _evaluate(msg, data / "train", out, "--mode", "sampled", "--samples", "50") == 0
    capsys.readouterr()
    assert main(["bound", str(out), "--message", str(msg)]) == 0
    text = capsys.readouterr().out
    best = steps.certify(out, 8 * msg.stat().st_size).best
    label = " trivial (capped at a + c)" if best["trivial"] else ""  # a 2-step model: trivial
    assert text.startswith(f"certified bound: {best['value']:.4f}{label} bits/token "
                           f"({best['family']}")
    assert "paper " in text and "not a certificate" in text
    assert "sampled: n = 50 draws (betting UCBs)" in text and "top-1 error" not in text
    assert main(["bound", str(out), "--message", str(msg), "--estimator", "hoeffding"]) == 0
    res = capsys.readouterr()
    assert "(hoeffding UCBs)" in res.out and res.err == ""


def test_bound_estimator_on_an_exact_evaluation_warns(pipeline, tmp_path, capsys):
    _, data, _, _, msg = pipeline
    out = tmp_path / "ex"
    assert _evaluate(msg, data / "train", out) == 0
    capsys.readouterr()
    assert main(["bound", str(out), "--message", str(msg)]) == 0
    plain = capsys.readouterr()
    assert "top-1 error bound" in plain.out and plain.err == ""
    assert main(["bound", str(out), "--message", str(msg), "--estimator", "hoeffding"]) == 0
    warned = capsys.readouterr()
    assert warned.out == plain.out  # the estimator changes nothing in exact mode
    assert warned.err.count("\n") == 1
    assert warned.err.startswith("warning: --estimator hoeffding is ignored")


def test_bound_csv_rows_are_the_json_numbers(pipeline, tmp_path, capsys):
    import csv
    import io

    _, data, _, _, msg = pipeline
    for mode in (["--mode", "exact"], ["--mode", "sampled", "--samples", "40"]):
        out = tmp_path / mode[1]
        assert _evaluate(msg, data / "train", out, *mode) == 0
        capsys.readouterr()
        assert main(["bound", str(out), "--message", str(msg), "--json"]) == 0
        res = json.loads(capsys.readouterr().out)
        assert main(["bound", str(out), "--message", str(msg), "--csv"]) == 0
        rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
        best, cands = res["token"]["best"], res["token"]["candidates"]
        assert rows[0]["bound"] == "certified" and float(rows[0]["value"]) == best["value"]
        assert rows[0]["family"] == best["family"] and rows[0]["vacuous"] == str(best["vacuous"])
        assert [float(r["value"]) for r in rows[1:1 + len(cands)]] == [c["value"] for c in cands]
        kinds = [r["bound"] for r in rows[1 + len(cands):]]
        if mode[1] == "exact":
            assert kinds == ["document", "top-1", "top-10", "top-100"]
            assert float(rows[-1]["value"]) == res["topk"]["100"]["best"]["value"]
        else:
            assert kinds == ["paper"] and rows[-1]["certificate"] == "False"
            assert rows[0]["n"] == "40" and rows[-1]["n"] == "40"
    with pytest.raises(SystemExit):  # argparse: one output format
        main(["bound", str(out), "--message", str(msg), "--csv", "--json"])


# ---- evaluate: inputs that are the wrong kind of thing -------------------------------------
def test_empty_stream_is_refused(pipeline, tmp_path, capsys, bigram_source):
    _, _, _, _, msg = pipeline
    write_stream(tmp_path / "empty", [], {"tokenizer": "bytes", "vocab_size": 256,
                                          "eot_id": None, "start_id": 10})
    assert _evaluate(msg, tmp_path / "empty", tmp_path / "o") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{tmp_path / 'empty'} has no tokens;" in err
    assert not (tmp_path / "o").exists()  # refused before anything is written
    st = SimpleNamespace(tokens=np.zeros(0, np.uint16), doc_offsets=np.zeros(1, np.int64),
                         vocab_size=48, start_id=47, eot_id=47)
    with pytest.raises(UserError, match="has no tokens"):
        evaluate(bigram_source, st, str(tmp_path / "o2"), EvalConfig(context_len=8))


def test_training_run_directory_is_refused_with_the_compress_command(pipeline, capsys):
    root, _, _, run, _ = pipeline
    assert is_training_run(str(run))
    with pytest.raises(UserError, match=re.escape(f"{run} is a tokenbound training run; "
                                                  f"compress it first: tokenbound compress "
                                                  f"{run} --levels")):
        load_model_fn(str(run))
    assert _evaluate(run, root / "d" / "train", root / "o-run") == 2
    assert f"then pass --model {run}/model.tbm" in capsys.readouterr().err


def test_training_run_loads_as_a_source_with_the_run_weights(pipeline):
    import torch

    from tokenbound.fileio import file_sha256
    from tokenbound.sources import load_run_fn
    from tokenbound.training import load_run

    _, _, _, run, _ = pipeline
    src = load_run_fn(run)
    model, cfg, _ = load_run(run)
    idx = torch.randint(0, 256, (2, 32), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        assert torch.equal(src.fn(idx), model(idx))  # (2, 32, 256), bit for bit
    assert src.vocab_size == 256 and src.max_context == cfg.context_len == 32
    assert src.ident == {"kind": "run", "path": str(run.resolve()),
                         "sha256": file_sha256(str(run / "model.safetensors"))}


def test_compress_hf_rejects_an_unloadable_directory_in_one_line(tmp_path, capsys):
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    assert main(["compress", "--hf", str(tmp_path / "hf"), "--levels", "5",
                 "--out", str(tmp_path / "m.tbm")]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after transformers' warnings
    assert err.startswith(f"tokenbound compress: error: --hf {tmp_path / 'hf'}: cannot load it (")


def test_hf_directory_is_not_a_training_run(tmp_path, gpt2):
    gpt2.save_pretrained(tmp_path / "hf")
    assert not is_training_run(str(tmp_path / "hf"))


def test_unloadable_hf_directory_and_gguf_file(pipeline, tmp_path, capsys):
    _, data, _, _, _ = pipeline
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    (tmp_path / "bad.gguf").write_bytes(b"not a gguf file")
    for path in (tmp_path / "hf", tmp_path / "bad.gguf"):
        with pytest.raises(UserError, match=re.escape(f"--model {path}: cannot load it")):
            load_model_fn(str(path))
        assert _evaluate(path, data / "train", tmp_path / "o") == 2
        err = capsys.readouterr().err.strip().splitlines()[-1]  # after transformers' warnings
        assert err.startswith(f"tokenbound evaluate: error: --model {path}: cannot load it (")
        assert "a tokenbound message (.tbm" in err and "a .gguf file" in err


def test_prepared_root_names_its_splits(pipeline, tmp_path, capsys):
    _, data, _, _, msg = pipeline
    assert _evaluate(msg, data, tmp_path / "o") == 2
    assert capsys.readouterr().err == (f"tokenbound evaluate: error: {data} holds prepared "
                                       f"splits; pass --data {data}/train (or {data}/heldout)\n")


# ---- EvalConfig and flag validation --------------------------------------------------------
@pytest.mark.parametrize("kwargs, flag", [
    ({"shard_tokens": 0}, "--shard-tokens must be >= 1"),
    ({"shard_tokens": -8}, "--shard-tokens must be >= 1"),
    ({"vocab_chunk": 0}, "--vocab-chunk must be >= 1"),
    ({"vocab_chunk": -5}, "--vocab-chunk must be >= 1"),
    ({"seed": -1}, "--seed must be >= 0"),
    ({"context_len": 0}, "--context must be >= 1"),
    ({"mode": "sampled", "n_samples": -5}, "--samples must be >= 1"),
    ({"mode": "sampled"}, "--mode sampled needs --samples N"),
])
def test_eval_config_rejects(kwargs, flag):
    with pytest.raises(UserError, match=flag):
        EvalConfig(**{"context_len": 8, **kwargs})


def test_eval_config_accepts_the_edges():
    cfg = EvalConfig(context_len=1, shard_tokens=1, vocab_chunk=1, seed=0, mode="sampled",
                     n_samples=1)
    assert cfg.shard_windows == 1 and cfg.stride == 1


def test_context_zero_is_an_error_not_the_model_maximum(pipeline, tmp_path, capsys):
    _, data, _, _, msg = pipeline
    argv = ["evaluate", "--model", str(msg), "--data", str(data / "train"), "--out",
            str(tmp_path / "o"), "--context", "0"]
    assert main(argv) == 2
    assert "--context must be >= 1 (got 0)" in capsys.readouterr().err
    argv[-2:] = []  # no --context: the model's maximum (32)
    assert main(argv) == 0
    assert json.load(open(tmp_path / "o" / "eval.json"))["manifest"]["context_len"] == 32


# ---- tokenizers of the model and the stream -------------------------------------------------
def test_tokenizer_mismatch_is_refused_and_the_match_runs(pipeline, tmp_path, capsys):
    _, data, chars, _, msg = pipeline
    assert load_model_fn(str(msg)).tokenizer == "bytes"  # compress_run wrote it in the header
    assert _evaluate(msg, chars / "train", tmp_path / "bad") == 2
    err = capsys.readouterr().err
    assert "trained with tokenizer 'bytes'" in err and repr(CHARS) in err
    assert not (tmp_path / "bad").exists()
    assert _evaluate(msg, data / "train", tmp_path / "ok") == 0
    meta = json.load(open(data / "train" / "meta.json"))
    assert json.load(open(tmp_path / "ok" / "eval.json"))["totals"]["n_tokens"] == \
        meta["n_tokens"] > 0


@pytest.mark.parametrize("model_tok, stream_tok, ok", [
    ("bytes", "bytes", True),
    ("bytes", "chars:ab", False),
    ("chars:ab", "chars:ba", False),
    (None, "chars:ab", True),          # unknown on one side: nothing to compare
    ("bytes", None, True),
    ("hf:/a/tokenizer.json", "hf:/elsewhere/tokenizer.json", True),  # same file, moved
    ("hf:/a/tokenizer.json#eot=</s>", "hf:/a/tokenizer.json", False),
    ("gguf:smollm2", "gguf:/x/model.gguf", False),
])
def test_tokenizer_check_in_the_engine(tmp_path, bigram_source, model_tok, stream_tok, ok):
    st = make_stream([9, 14])
    st.meta = {"tokenizer": stream_tok}
    src = ModelSource(bigram_source.fn, bigram_source.vocab_size, None, bigram_source.ident,
                      tokenizer=model_tok)
    if ok:
        res = evaluate(src, st, str(tmp_path / "o"), EvalConfig(context_len=8))
        assert res["totals"]["n_tokens"] == 23
    else:
        with pytest.raises(UserError, match=re.escape(f"tokenizer {model_tok!r} but the "
                                                      f"stream was prepared with "
                                                      f"{stream_tok!r}")):
            evaluate(src, st, str(tmp_path / "o"), EvalConfig(context_len=8))


def test_evaluate_no_progress(pipeline, tmp_path, capsys):
    _, data, _, _, msg = pipeline
    assert _evaluate(msg, data / "train", tmp_path / "a") == 0
    assert "scoring" in capsys.readouterr().err  # the tqdm bar, on stderr
    assert _evaluate(msg, data / "train", tmp_path / "b", "--no-progress") == 0
    assert "scoring" not in capsys.readouterr().err


# ---- tokenbound.certify on a message: the certificate of `evaluate` + `bound` ---------------
def test_api_certifies_a_message_as_bound_does(pipeline, tmp_path):
    import tokenbound
    from tokenbound.bounds import Certification
    from tokenbound.experiments import steps

    _, data, _, _, msg = pipeline
    assert _evaluate(msg, data / "train", tmp_path / "ex") == 0
    res = steps.certify(tmp_path / "ex", 8 * msg.stat().st_size)
    want = Certification.from_dict(res.token)
    cert = tokenbound.certify(msg, data / "train", context_len=32, batch_size=4)
    assert cert == want and cert.best.code_bits == 8 * msg.stat().st_size
    with pytest.raises(UserError, match="C is at least"):
        tokenbound.certify(msg, data / "train", context_len=32,
                           code_bits=8 * msg.stat().st_size - 8)
