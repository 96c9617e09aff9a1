"""CLI flags generated from config dataclasses (`tokenbound.configs.setting` fields).

`add_config_arguments(group, Cls)` adds one flag per field (`--field-name`, or the field's own
`flag`) with the field's help text; every flag defaults to `None` (= not given), so that
`given(args, Cls)` returns exactly the fields the user wrote and the dataclass defaults fill in
the rest. Type handling: bool -> `--x/--no-x`; `tuple[T, T]` -> two values; `int`, `float`,
`str` (and `X | None`) -> that type; anything else or odd is set by the field's `cli` dict.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any

from tokenbound.configs import cli_flag, default_of, field_types


def dest(cls: type, name: str) -> str:
    """The argparse destination of field `name` (from its flag: `--data-seed` -> data_seed)."""
    return cli_flag(cls, name)[2:].replace("-", "_")


def add_config_arguments(group, cls: type, *, skip: tuple = (), show_defaults: bool = False,
                         defaults: dict[str, str] | None = None,
                         overrides: dict | None = None) -> None:
    """Add a flag for every field of `cls` not in `skip` (nor marked `cli=False`).

    `show_defaults` appends "(default: X)" to the help (a field's `show_default` wins);
    `defaults`: field -> the default in words, for fields whose default the command takes from
    elsewhere (train: vocab_size from the data); `overrides` maps a field name to extra
    `add_argument` keywords (CLI-only differences).
    """
    hints = field_types(cls)
    for f in dataclasses.fields(cls):
        meta = f.metadata
        if f.name in skip or meta.get("cli") is False:
            continue
        kw = _kwargs(hints[f.name])
        kw.update(meta.get("cli") if isinstance(meta.get("cli"), dict) else {})
        kw.update((overrides or {}).get(f.name, {}))
        helptext = meta.get("help", "")
        shown = meta.get("show_default")
        if (show_defaults if shown is None else shown) and default_of(f) is not dataclasses.MISSING:
            helptext += f" (default: {(defaults or {}).get(f.name, show(default_of(f)))})"
        kw.setdefault("default", None)
        group.add_argument(cli_flag(cls, f.name), dest=dest(cls, f.name), help=helptext, **kw)


def _kwargs(typ: Any) -> dict:
    """argparse keywords for a field annotation (see the module docstring)."""
    args = [a for a in typing.get_args(typ) if a is not type(None)]
    if typing.get_origin(typ) in (typing.Union, types.UnionType) and len(args) == 1:
        typ = args[0]
    if typ is bool:
        return {"action": argparse.BooleanOptionalAction}
    if typing.get_origin(typ) is tuple and Ellipsis not in typing.get_args(typ):
        inner = typing.get_args(typ)
        return {"type": inner[0], "nargs": len(inner)}
    if typ in (int, float, str):
        return {"type": typ}
    return {}


def show(value: Any) -> str:
    """A default as the help prints it: dict -> k=v,..., tuple -> space-separated, None ->
    unset."""
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, (tuple, list)):
        return " ".join(str(v) for v in value)
    return "unset" if value is None else str(value)


def given(args: argparse.Namespace, cls: type, *, skip: tuple = ()) -> dict:
    """Field name -> value for every flag of `cls` the user gave (not None)."""
    out = {}
    for f in dataclasses.fields(cls):
        if f.name in skip or f.metadata.get("cli") is False:
            continue
        value = getattr(args, dest(cls, f.name), None)
        if value is not None:
            out[f.name] = value
    return out


# ---- the model flags (`train`, `model-info`) --------------------------------------------------
def add_model_arguments(parser: argparse.ArgumentParser,
                        defaults: dict[str, str] | None = None) -> None:
    """The `GPTConfig` flags (help from the fields, defaults shown; `defaults` as for
    `add_config_arguments`) and the `--arch` shorthand."""
    from tokenbound.models.config import LINEAR_KINDS, GPTConfig

    group = parser.add_argument_group("model")
    group.add_argument("--arch", choices=LINEAR_KINDS, default=None,
                       help="shorthand for --linear: parametrize attn and mlp (and an untied "
                            "head) with this kind: " + ", ".join(LINEAR_KINDS))
    add_config_arguments(group, GPTConfig, show_defaults=True, defaults=defaults)


def config_from_args(args: argparse.Namespace, base=None):
    """The `GPTConfig` of `base` (default `GPTConfig()`) with every model flag given applied.

    `--arch K` sets attn and mlp to K, and the head too when `--no-tie-embeddings`; an explicit
    `--linear` is applied after it.
    """
    from tokenbound.models.config import GPTConfig

    d = (base or GPTConfig()).to_dict()
    d.update(given(args, GPTConfig, skip=("linear",)))
    arch = getattr(args, "arch", None)
    if arch is not None:
        d["linear"] = {"attn": arch, "mlp": arch,
                       "head": "dense" if d["tie_embeddings"] else arch}
    if getattr(args, "linear", None) is not None:
        d["linear"] = {**d["linear"], **args.linear}
    return GPTConfig.from_dict(d)
