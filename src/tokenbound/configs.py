"""One dialect for every config dataclass (GPTConfig, TrainConfig, EvalConfig, QuantConfig, ...).

A config is a `@dataclass` that subclasses `Config` and declares each field with `setting`:

    steps: int = setting(2000, "optimizer steps")
    context_len: int | None = setting(None, "tokens per training sequence", flag="--seq-len")

From these declarations alone come (a) the CLI flags (`tokenbound.commands.flags` turns every
field into `--kebab-case` or its `flag`, with the help text), (b) the recipe schema (the keys
are the field names, their types the real annotations from `field_types`), and (c) the error
wording: `__post_init__` raises `ConfigError(field, message)`, which names the FIELD; the CLI
prints it with the field's flag (`--seq-len 17 exceeds ...`), a recipe with its key
(`` recipe `train: context_len:` 17 exceeds ... ``). Messages refer to other fields as
`{name}` (or `{name:value}` for a setting, e.g. `{tie_embeddings:false}` -> `--no-tie-embeddings`
or `` `tie_embeddings: false` ``) and to values through keyword arguments, so no caller ever
parses a message. A new field is one edit: its `setting(...)` line.

Importable by every package (like `tokenbound.errors`); imports nothing of tokenbound but errors.
"""

from __future__ import annotations

import dataclasses
import string
import typing
from typing import Any, Callable

from tokenbound.errors import UserError

MISSING = dataclasses.MISSING


def setting(default: Any = MISSING, help: str = "", *, flag: str | None = None,
            cli: dict | bool = True, show_default: bool | None = None, **field_kw: Any) -> Any:
    """A dataclass field carrying its help text (the per-field docstring).

    `flag`: the CLI spelling when it is not `--field-name`; `cli`: False for a field without
    a flag, or a dict of extra `argparse.add_argument` keywords (metavar, choices, type, action,
    nargs); `show_default`: whether the help ends with "(default: ...)" (None: the command's
    choice). A dict or list default is copied per instance.
    """
    meta = {"help": help, "flag": flag, "cli": cli, "show_default": show_default}
    if isinstance(default, (dict, list)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta,
                                 **field_kw)
    return dataclasses.field(default=default, metadata=meta, **field_kw)


def default_of(f: dataclasses.Field) -> Any:
    """The default value of a dataclass field (MISSING when it has none)."""
    if f.default_factory is not MISSING:
        return f.default_factory()
    return f.default


def cli_flag(owner: type | None, name: str) -> str:
    """The CLI flag of field `name` of config class `owner`: its `flag`, else `--name-kebab`."""
    fields = {f.name: f for f in dataclasses.fields(owner)} if owner is not None else {}
    flag = fields[name].metadata.get("flag") if name in fields else None
    return flag or "--" + name.replace("_", "-")


def field_types(cls: type, skip: tuple = ()) -> dict[str, Any]:
    """Field name -> its annotation as a type object (`int`, `int | None`, `tuple[float,
    float]`, ...), resolved with `typing.get_type_hints`; the recipe schema of `cls`."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.name not in skip}


def known(cls: type, d: dict) -> dict:
    """The items of `d` whose keys are fields of the dataclass `cls` (others are skipped)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in d.items() if k in names}


class ConfigError(UserError):
    """A config value is wrong: `field` names it, `message` says why and what to write instead.

    `message` may refer to fields as `{name}` or `{name:value}` (rendered by `render` as a CLI
    flag or a recipe key) and to values as `{key}` given in `values` (inserted as they are, so
    a value holding braces is safe). `owner` is the config class (set by `Config`); `str()` is
    the CLI wording, `field`'s flag first when the message starts with `{field}`.
    """

    def __init__(self, field: str, message: str, owner: type | None = None, **values: Any):
        self.field, self.message, self.owner, self.values = field, message, owner, values
        super().__init__(message)

    @property
    def leads(self) -> bool:
        """True when the message starts with its own field (`"{field} must be ..."`)."""
        first = next(iter(string.Formatter().parse(self.message)), None)
        return first is not None and first[0] == "" and first[1] == self.field

    def render(self, spell: Callable[[str, str | None], str],
               lead: Callable[[str], str] | None = None) -> str:
        """The message with every field reference spelled by `spell(name, value_or_None)`; a
        leading reference to `field` by `lead(field)` when given."""
        fmt, out = string.Formatter(), []
        for i, (literal, name, spec, conv) in enumerate(fmt.parse(self.message)):
            out.append(literal)
            if name is None:
                continue
            if name in self.values:
                out.append(fmt.format_field(fmt.convert_field(self.values[name], conv), spec))
            elif i == 0 and lead is not None and self.leads:
                out.append(lead(name))
            else:
                out.append(spell(name, spec or None))
        return "".join(out)

    def __str__(self) -> str:
        return self.render(lambda name, value: _cli_spelling(self.owner, name, value))


def _cli_spelling(owner: type | None, name: str, value: str | None) -> str:
    flag = cli_flag(owner, name)
    if value is None:
        return flag
    if value in ("true", "false"):
        return flag if value == "true" else "--no-" + flag[2:]
    return f"{flag} {value}"


class Config:
    """Base of the config dataclasses: a `ConfigError` raised while one is checked
    (`__post_init__`, and what it calls) is stamped with the class, so that its CLI wording
    uses that class's flags."""

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        post = cls.__dict__.get("__post_init__")
        if post is None:
            return

        def __post_init__(self, *args: Any) -> None:
            try:
                post(self, *args)
            except ConfigError as exc:
                if exc.owner is None:
                    exc.owner = cls
                raise

        __post_init__.__doc__ = post.__doc__
        cls.__post_init__ = __post_init__

    @classmethod
    def from_recipe(cls, d: dict):
        """An instance from a recipe section that may hold other configs' keys too (a
        `compress:` section holds QuantConfig and QATConfig keys): only this class's fields
        are read."""
        return cls(**known(cls, d))
