"""One dialect for configs (`tokenbound.configs`): a field declared once gives its CLI flag, its
recipe key and type, and errors that name it in either spelling."""

import argparse
import dataclasses
import typing
from dataclasses import dataclass

import pytest

from tokenbound.commands.flags import add_config_arguments, given
from tokenbound.configs import Config, ConfigError, cli_flag, field_types, setting
from tokenbound.errors import UserError
from tokenbound.experiments import recipes


@dataclass
class Knobs(Config):
    """A config with one field of each kind the commands use."""

    steps: int = setting(10, "optimizer steps")
    rate: float | None = setting(None, "a rate", flag="--speed")
    betas: tuple[float, float] = setting((0.9, 0.95), "two numbers")
    fast: bool = setting(True, "go fast")
    knob: int = setting(3, "the new field: one line is all it takes")

    def __post_init__(self):
        if self.knob < 0:
            raise ConfigError("knob", "{knob} must be >= 0, got {v}; or set {fast:false}",
                              v=self.knob)
        if self.rate is not None and self.rate <= 0:
            raise ConfigError("rate", "rate {v} is not positive; raise {rate}", v=self.rate)


def _parser():
    p = argparse.ArgumentParser()
    add_config_arguments(p, Knobs, show_defaults=True)
    return p


def test_a_new_field_is_one_edit_flag_recipe_key_and_error():
    args = _parser().parse_args(["--knob", "5", "--speed", "0.5", "--no-fast"])
    assert given(args, Knobs) == {"knob": 5, "rate": 0.5, "fast": False}
    assert Knobs(**given(args, Knobs)) == Knobs(knob=5, rate=0.5, fast=False)
    assert "the new field: one line is all it takes (default: 3)" in _parser().format_help()
    assert field_types(Knobs)["knob"] is int
    sec = recipes.section("knobs", {"knob": "7", "rate": "3e-1"}, field_types(Knobs))
    assert sec == {"knob": 7, "rate": 0.3}
    with pytest.raises(ConfigError) as err:
        Knobs(knob=-1)
    assert err.value.field == "knob" and err.value.owner is Knobs
    assert str(err.value) == "--knob must be >= 0, got -1; or set --no-fast"
    assert recipes.recipe_message("knobs", err.value) == \
        "`knobs: knob:` must be >= 0, got -1; or set `fast: false`"


def test_a_message_not_led_by_its_field_and_the_flag_spelling():
    with pytest.raises(ConfigError) as err:
        Knobs(rate=-2.0)
    assert str(err.value) == "rate -2.0 is not positive; raise --speed"
    assert recipes.recipe_message("knobs", err.value) == \
        "`knobs:` rate -2.0 is not positive; raise `rate:`"
    assert cli_flag(Knobs, "rate") == "--speed" and cli_flag(Knobs, "steps") == "--steps"


def test_values_with_braces_are_inserted_verbatim():
    e = ConfigError("steps", "{steps} got {v!r}", owner=Knobs, v={"a": "{b}"})
    assert str(e) == "--steps got {'a': '{b}'}"


def test_unset_flags_leave_the_dataclass_defaults():
    args = _parser().parse_args([])
    assert given(args, Knobs) == {} and Knobs(**given(args, Knobs)) == Knobs()
    assert _parser().parse_args(["--betas", "0.1", "0.2"]).betas == [0.1, 0.2]


def _configs():
    from tokenbound.compression import QuantConfig
    from tokenbound.evaluation import EvalConfig
    from tokenbound.experiments.steps import QATConfig
    from tokenbound.models import GPTConfig
    from tokenbound.training import TrainConfig

    return [GPTConfig, TrainConfig, EvalConfig, QuantConfig, QATConfig]


@pytest.mark.parametrize("cls", _configs(), ids=lambda c: c.__name__)
def test_every_config_field_has_help_and_a_real_type(cls):
    assert issubclass(cls, Config)
    for f in dataclasses.fields(cls):
        assert f.metadata.get("help"), f.name
    for name, typ in field_types(cls).items():
        assert not isinstance(typ, str), name  # real annotations, not strings to re-parse
        assert typ is typing.Any or typing.get_origin(typ) is not None or isinstance(typ, type)


def test_library_errors_name_the_field_and_each_layer_spells_it():
    """TrainConfig's context_len is `--seq-len` on the command line and `context_len:` in a
    recipe; the library names the field, never a flag."""
    from tokenbound.models import GPTConfig
    from tokenbound.training import TrainConfig

    with pytest.raises(ConfigError) as err:
        TrainConfig(data="d", out="o", model=GPTConfig(context_len=16), context_len=17)
    assert err.value.field == "context_len" and isinstance(err.value, UserError)
    assert str(err.value) == "--seq-len 17 exceeds the model's context_len 16"
    assert recipes.recipe_message("train", err.value) == \
        "`train: context_len:` 17 exceeds the model's context_len 16"
