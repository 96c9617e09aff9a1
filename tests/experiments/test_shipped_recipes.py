"""Every shipped recipe (tokenbound/recipes/*.yaml) loads and builds valid configs.

A typo in a shipped recipe would otherwise surface only after minutes of training (the
`compress:` and `evaluate:` sections are read after the train step).
"""

import pytest

from tokenbound.compression import QuantConfig
from tokenbound.evaluation import EvalConfig
from tokenbound.experiments import pipeline
from tokenbound.compression.groupwise import GroupConfig
from tokenbound.experiments.recipes import GROUP_LOSS, is_groupwise, recipe_path, shipped
from tokenbound.models import GPTConfig, build_model
from tokenbound.training import TrainConfig

NAMES = shipped()


def test_the_documented_recipes_are_shipped():
    assert {"demo", "demo-quick", "hf-own-model", "shakespeare-60min"} <= set(NAMES)


def test_the_own_model_recipe_quantizes_per_group():
    """17-level k-means per tensor wrecked SmolLM2 (5.5 -> 16.4 bits/token): not shipped."""
    r = pipeline.Recipe.load(recipe_path("hf-own-model"))
    assert is_groupwise(r.compress) and r.compress["bits"] == 4


@pytest.mark.parametrize("name", NAMES)
def test_shipped_recipe_builds_every_config(name, tmp_path):
    r = pipeline.Recipe.load(recipe_path(name), out=str(tmp_path / "out"))
    assert r.name == name
    if is_groupwise(r.compress):  # per-group quantization of an hf: model
        assert r.model is None
        c = {k: v for k, v in r.compress.items() if k not in GROUP_LOSS}
        GroupConfig(**c)  # raises on bad bits / group size
        assert set(c) <= {"bits", "group_size", "symmetric", "exclude", "overrides"}
    else:
        QuantConfig.from_recipe(r.compress)  # raises on an unknown method / bad level count
        assert set(r.compress) <= {"levels", "method", "grouping", "exclude", "kmeans_iters",
                                   "qat_steps", "qat_lr", "qat_optimizer", "batch_size",
                                   "eval_batches"}
    EvalConfig(**r.evaluate)
    if r.model is not None:
        gcfg = GPTConfig.from_dict(dict(r.model))
        TrainConfig(data="d", out="o", model=gcfg, **r.train)
        assert r.evaluate["context_len"] <= gcfg.context_len
        assert sum(p.numel() for p in build_model(gcfg).parameters() if p.requires_grad) > 0


def test_the_60_minute_recipe_is_the_demo_trained_longer():
    demo = pipeline.Recipe.load(recipe_path("demo"))
    target = pipeline.Recipe.load(recipe_path("shakespeare-60min"))
    assert target.model == demo.model
    assert target.evaluate == demo.evaluate and target.data == demo.data
    assert target.train["steps"] > demo.train["steps"]
    assert target.extra_bits == 8  # 5 sweep settings (3 bits) + 29 compression settings (5 bits)
