"""Recipe checks (`recipes.check_recipe`): every mistake in a recipe is one UserError naming the
key and the fix, raised when the recipe is read, before any step (training above all) runs."""

import subprocess
import sys

import pytest
import yaml

from tokenbound.errors import UserError
from tokenbound.experiments import recipes
from tokenbound.experiments.pipeline import Recipe

BASE = """
name: tiny
delta: 0.05
data: {corpus: CORPUS, tokenizer: bytes}
model: {vocab_size: 256, context_len: 32, n_layer: 1, n_head: 2, d_model: 16, seed: 0}
train: {steps: 6, batch_size: 4, lr: 0.05, eval_interval: 0, device: cpu, bf16: false}
compress: {levels: 9, method: uniform, eval_batches: 1, batch_size: 2}
evaluate: {context_len: 32, stride: 32, mode: exact, batch_size: 4}
heldout: true
"""


def _load(tmp_path, **changes):
    """BASE with `changes` (section -> value, or (section, key) -> value; None deletes)."""
    raw = yaml.safe_load(BASE.replace("CORPUS", str(tmp_path / "c.txt")))
    for where, value in changes.items():
        sec, _, key = where.partition("__")
        target, name = (raw[sec], key) if key else (raw, sec)
        if value is None:
            target.pop(name)
        else:
            target[name] = value
    p = tmp_path / "r.yaml"
    p.write_text(yaml.safe_dump(raw))
    return Recipe.load(p, out=str(tmp_path / "out"))


BAD = [  # (changes, the message must match)
    ({"delta": "abc"}, r"`delta:` must be a number, got 'abc'"),
    ({"delta": 1.5}, r"`delta:` must lie in \(0, 1\)"),
    ({"compress__levels": "eleven"}, r"`compress: levels:` must be a whole number, got 'eleven'"),
    ({"compress__levels": 0}, r"`compress: levels:` 0: use an integer in 1\.\.65535"),
    ({"compress": 17}, r"`compress:` must be a mapping .*got 17"),
    ({"train": 5}, r"`train:` must be a mapping .*got 5"),
    ({"train": {"step": 300}}, r"`train:` has unknown key\(s\) \['step'\] \(did you mean "
                               r"'steps'.*allowed: batch_size, betas"),
    ({"train__steps": 0}, r"`train: steps:` must be a positive integer, got 0"),
    ({"train__lr": "fast"}, r"`train: lr:` must be a number, got 'fast'"),
    ({"train__bf16": "on"}, r"`train: bf16:` must be true or false, got 'on'"),
    ({"evaluate__strid": 32}, r"`evaluate:` has unknown key\(s\) \['strid'\] \(did you mean "
                              r"'stride'"),
    ({"evaluate__stride": 40}, r"`evaluate: stride:` must be in \[1, `context_len:`=32\]"),
    ({"evaluate__context_len": 64}, r"`evaluate: context_len:` 64 exceeds the model's "
                                    r"context_len 32"),
    ({"evaluate__mode": "sampled", "evaluate__n_samples": -5},
     r"`evaluate: n_samples:` must be >= 1, got -5"),
    ({"evaluate__dtype": "fp16"}, r"`evaluate: dtype:` 'fp16': use one of fp32, bf16"),
    ({"evaluate__context_len": None}, r"`evaluate:` needs `context_len:`"),
    ({"data__shuffle": True}, r"`data:` has unknown key\(s\) \['shuffle'\]; allowed: corpus, "),
    ({"data__tokeniser": "bytes"}, r"\['tokeniser'\] \(did you mean 'tokenizer'"),
    ({"data__heldout_fraction": 2}, r"`data: heldout_fraction:` must be in \[0, 1\)"),
    ({"data__max_train_docs": 0}, r"`data: max_train_docs:` must be >= 1"),
    ({"heldout": "maybe"}, r"`heldout:` must be true or false, got 'maybe'"),
    ({"compress__qat_steps": -1}, r"`compress: qat_steps:` must be >= 0, got -1"),
    ({"compress__qat_lr": 0}, r"`compress: qat_lr:` must be > 0"),
    ({"model__d_model": 15}, r"`model:` d_model=15 is not divisible by n_head=2; choose "
                             r"`n_head:` dividing `d_model:`"),
    ({"model__n_layers": 2}, r"`model:` has unknown key\(s\) \['n_layers'\] \(did you mean "
                             r"'n_layer'"),
    ({"name": 17}, r"`name:` must be a string, got 17"),
    ({"evalute": {}}, r"unknown key\(s\) \['evalute'\] \(did you mean 'evaluate'"),
    ({"hf": "some/dir"}, r"exactly one of `model:`"),
]


@pytest.mark.parametrize("changes, message", BAD, ids=[str(c) for c, _ in BAD])
def test_a_bad_recipe_is_one_user_error_naming_the_key(tmp_path, changes, message):
    with pytest.raises(UserError, match=message):
        _load(tmp_path, **changes)


def test_values_are_converted_to_their_type_and_nothing_is_added(tmp_path):
    """YAML reads 3e-4 as a string; "300" and 300.0 are whole numbers. Absent keys stay absent
    (so a checked recipe still equals the settings stored by an earlier run)."""
    r = _load(tmp_path, train__lr="3e-4", train__steps=300.0, train__betas=[0.9, "0.95"],
              compress__levels="17", compress__exclude="*norm*")
    assert r.train["lr"] == 0.0003 and isinstance(r.train["lr"], float)
    assert r.train["steps"] == 300 and isinstance(r.train["steps"], int)
    assert r.train["betas"] == [0.9, 0.95]
    assert r.compress == {"levels": 17, "method": "uniform", "eval_batches": 1, "batch_size": 2,
                          "exclude": ["*norm*"]}
    assert set(r.evaluate) == {"context_len", "stride", "mode", "batch_size"}


def test_hf_recipes_refuse_settings_they_would_ignore(tmp_path):
    with pytest.raises(UserError, match=r"`compress: qat_steps` applies only to a model trained"):
        _load(tmp_path, model=None, train=None, hf="dir", compress__qat_steps=10,
              compress__eval_batches=None, compress__batch_size=None)
    with pytest.raises(UserError, match=r"`train:` applies only to a model trained here"):
        _load(tmp_path, model=None, hf="dir", compress__eval_batches=None,
              compress__batch_size=None)
    r = _load(tmp_path, model=None, train=None, hf="dir", compress__eval_batches=None,
              compress__batch_size=None)
    assert r.hf == "dir" and r.train == {}


@pytest.mark.parametrize("name", recipes.shipped())
def test_shipped_recipes_pass_and_are_unchanged_by_the_checks(name):
    path = recipes.recipe_path(name)
    raw = yaml.safe_load(path.read_text())
    r = Recipe.load(path)
    for sec in ("data", "model", "train", "compress", "evaluate"):
        assert getattr(r, sec) == (raw.get(sec) or ({} if sec == "train" else None)), sec


def test_the_cli_prints_one_line_and_trains_nothing(tmp_path):
    """A typo in evaluate: is reported before the (long) train step starts."""
    (tmp_path / "c.txt").write_text("some text\n" * 50)
    raw = yaml.safe_load(BASE.replace("CORPUS", str(tmp_path / "c.txt")))
    raw["evaluate"]["strid"] = 32
    p = tmp_path / "r.yaml"
    p.write_text(yaml.safe_dump(raw))
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "tokenbound", "run", str(p), "--out", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "Traceback" not in r.stderr
    assert "did you mean 'stride'" in r.stderr
    assert not (out / "train").exists() and not (out / "data").exists()


def test_data_settings_reach_prepare(tmp_path):
    """doc_separator splits a single text file into documents, so heldout_fraction can hold
    some out (without it the file is one document and the held-out split is empty)."""
    from tokenbound.experiments import steps

    f = tmp_path / "c.txt"
    f.write_text("\n\n".join(f"document number {i}" for i in range(40)))
    one = steps.prepare(str(f), "bytes", tmp_path / "one")
    assert one["train"].n_docs == 1 and one["heldout"].n_tokens == 0
    split = steps.prepare(str(f), "bytes", tmp_path / "split", doc_separator="\\n\\n",
                          heldout_fraction=0.5)
    assert split["train"].n_docs + split["heldout"].n_docs == 40
    assert split["heldout"].n_docs > 0
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.txt").write_text("text")
    with pytest.raises(UserError, match="doc_separator applies to a single text file"):
        steps.prepare(str(tmp_path / "d"), "bytes", tmp_path / "dir", doc_separator="x")


@pytest.mark.parametrize("content, message", [
    (bytes(range(256)) * 2, "not a text file"),
    (b"name:\n", "missing section(s) data, compress, evaluate"),
    (b"name: x\ndata: {corpus: shakespeare}\n", "missing section(s) compress, evaluate"),
])
def test_a_binary_or_incomplete_recipe_is_one_line_naming_the_file(tmp_path, content, message):
    p = tmp_path / "r.yaml"
    p.write_bytes(content)
    with pytest.raises(UserError) as info:
        Recipe.load(p)
    assert str(p) in str(info.value) and message in str(info.value)
    assert "\n" not in str(info.value)
