"""The split prior as a recipe: `data: prior_split:` + `finetune:` (base on DATA/prior, adapters
trained on DATA/train, certified on DATA/bound only)."""

import json

import pytest

from tokenbound.errors import UserError
from tokenbound.experiments.pipeline import Recipe, run

TEXT = "To be, or not to be, that is the question:\nWhether 'tis nobler in the mind\n"


def _recipe(corpus, out, **kw) -> Recipe:
    base = dict(
        name="split", out=str(out), delta=0.05,
        data={"corpus": str(corpus), "tokenizer": "bytes", "prior_split": 0.5, "split_seed": 0},
        model={"vocab_size": 256, "context_len": 32, "n_layer": 1, "n_head": 2, "d_model": 16,
               "seed": 0},
        train={"steps": 4, "batch_size": 4, "lr": 0.05, "eval_interval": 0, "eval_batches": 0,
               "ckpt_interval": 0, "device": "cpu", "bf16": False},
        finetune={"lora_rank": 2, "subspace_dim": 40,
                  "train": {"steps": 3, "batch_size": 4, "lr": 0.05, "eval_interval": 0,
                            "eval_batches": 0, "ckpt_interval": 0, "device": "cpu",
                            "bf16": False}},
        compress={"levels": 9, "eval_batches": 0},
        evaluate={"context_len": 32, "stride": 32, "mode": "exact", "batch_size": 4},
        heldout=False)
    return Recipe(**(base | kw))


@pytest.mark.slow  # two pipeline runs
def test_split_recipe_certifies_the_bound_part(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(8):
        (corpus / f"d{i}.txt").write_text(TEXT * (1 + i % 2) + f"scene {i}\n")
    rep = run(_recipe(corpus, tmp_path / "out"))
    split = json.loads((tmp_path / "out/data/bound/meta.json").read_text())["prior_split"]
    assert split["n_docs"] == [4, 4]
    assert rep["n_tokens"] == split["n_tokens"][1]  # m = m_1: the bound part only
    assert rep["prior"]["kind"] == "split" and rep["prior"]["covers"]["n_tokens"] == rep["n_tokens"]
    cfg = json.loads((tmp_path / "out/train/config.json").read_text())
    assert cfg["model"]["base"]["kind"] == "run"
    assert cfg["model"]["base"]["path"] == str((tmp_path / "out/base").resolve())
    assert "bound part only" in (tmp_path / "out/report.md").read_text() or \
        "bound part" in json.dumps(rep["notes"])
    again = run(_recipe(corpus, tmp_path / "out"))  # every step reused
    assert again["bound_bits_per_token"] == rep["bound_bits_per_token"]


@pytest.mark.parametrize("change, words", [
    ({"finetune": None}, "go together"),
    ({"data": {"corpus": "x", "prior_split": 1.5}}, "strictly between"),
    # the model's rank-2 LoRA tensors have 2 x (16 + 48) + 2 x (16 + 64) = 288 entries: a larger
    # subspace is refused when the recipe is read, not after the base has trained
    ({"finetune": {"lora_rank": 2, "subspace_dim": 289}},
     r"subspace_dim:` 289 exceeds the 288 LoRA parameters.*choose <= 288"),
])
def test_split_recipe_checks(tmp_path, change, words):
    with pytest.raises(UserError, match=words):
        _recipe(tmp_path, tmp_path / "o", **change)
