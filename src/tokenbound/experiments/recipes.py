"""Recipes: the `Recipe` of a whole certificate run, the ones shipped inside the package
(`tokenbound/recipes/*.yaml`) and the checks every recipe passes before any step runs.

`check_recipe` reads each section of a recipe (a YAML mapping, see `pipeline`'s docstring) once,
up front: every section must be a mapping whose keys are known (a misspelt key is an error that
suggests the spelling), numbers and booleans must have their type (`steps: 300`, `lr: 3e-4`,
`heldout: true`), and the configuration objects of the steps (`GPTConfig`, `TrainConfig`,
`QuantConfig`, `QATConfig`, `EvalConfig`) are built, so that their own checks run too. A typo in
`evaluate:` is then reported in a second, not after an hour of training. Values are only
converted to their type (a key that is not given stays absent), so a checked recipe equals the
file it came from.

The keys and types of a section are the fields of its config class (`configs.field_types`, the
real annotations); a config's `ConfigError` is worded with recipe keys (`` `train: steps:` ``)
from its structured field references (`recipe_message`), never by parsing its text.
"""

from __future__ import annotations

import difflib
import math
import types
import typing
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

from tokenbound.configs import ConfigError, field_types
from tokenbound.errors import UserError

RECIPE_DIR = Path(__file__).resolve().parent.parent / "recipes"

# the `data:` section: `load_corpus`'s settings, as for `tokenbound prepare`
DATA = {"corpus": str, "tokenizer": str, "max_train_docs": int | None,
        "heldout_fraction": float | None, "doc_separator": str | None, "glob": str,
        "text_column": str, "prior_split": float | None, "split_seed": int}
# `finetune:` (with `data: prior_split:`): adapters on the GPT that `model:`/`train:` train on
# DATA/prior; the final model is trained on DATA/train and certified on DATA/bound (METHOD 2.9)
FINETUNE = {"lora_rank": int, "lora_alpha": float, "lora_targets": tuple[str, ...],
            "subspace_dim": int | None, "seed": int, "train": dict}
_KINDS = {int: "a whole number", float: "a number", bool: "true or false", str: "a string",
          dict: "a mapping ({key: value, ...})", type(None): "null"}


@dataclass
class Recipe:
    """A whole certificate run, fixed in advance (see `pipeline`'s docstring for the fields).

    Every section is checked on construction (`check_recipe`: known keys, value types, and the
    step configs built), so a mistake is reported before any step runs.
    """

    name: str
    out: str
    data: dict
    compress: dict
    evaluate: dict
    model: dict | None = None
    train: dict = field(default_factory=dict)
    hf: str | None = None
    delta: float = 0.05
    heldout: bool = True
    description: str = ""
    extra_bits: int = 0
    finetune: dict | None = None

    def __post_init__(self):
        checked = check_recipe({f.name: getattr(self, f.name) for f in fields(self)})
        for k, v in checked.items():
            setattr(self, k, v)

    @staticmethod
    def load(path: str | Path, out: str | None = None) -> "Recipe":
        import yaml

        p = Path(path)
        if not p.is_file():
            raise UserError(f"recipe {path}: no such file")
        try:
            raw = yaml.safe_load(p.read_text(encoding="utf-8"))
        except UnicodeDecodeError:
            raise UserError(f"recipe {path}: not a text file; pass a YAML recipe (see "
                            "src/tokenbound/recipes/demo.yaml)") from None
        except yaml.YAMLError as exc:
            raise UserError(f"recipe {path}: not valid YAML ({exc})") from None
        if not isinstance(raw, dict):
            raise UserError(f"recipe {path}: expected a mapping of sections")
        check_keys(f"{path}", raw, TOP)
        missing = [f.name for f in fields(Recipe) if f.name not in raw
                   and f.name not in ("name", "out") and f.default is MISSING
                   and f.default_factory is MISSING]
        if missing:
            raise UserError(f"recipe {path}: missing section(s) {', '.join(missing)}; see "
                            "src/tokenbound/recipes/demo.yaml for a complete recipe")
        raw["name"] = coerce("`name:`", raw.get("name", p.stem), str)
        if out is not None:
            raw["out"] = out
        raw["out"] = coerce("`out:`", raw.get("out", str(Path("runs") / raw["name"])), str)
        return Recipe(**raw)

    def to_dict(self) -> dict:
        d = {k: getattr(self, k) for k in ("name", "out", "delta", "data", "model", "train",
                                           "hf", "compress", "evaluate", "heldout",
                                           "extra_bits")}
        return d | ({"finetune": self.finetune} if self.finetune is not None else {})


TOP = field_types(Recipe)
"""The recipe's top-level keys and their types."""


def shipped() -> list[str]:
    return sorted(p.stem for p in RECIPE_DIR.glob("*.yaml"))


def recipe_path(name_or_path: str) -> Path:
    """A path to a recipe file, or the name of a shipped one (`demo`, `demo-quick`, ...)."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    shipped_p = RECIPE_DIR / f"{name_or_path}.yaml"
    if shipped_p.is_file():
        return shipped_p
    raise UserError(f"recipe {name_or_path!r}: no such file, and not a shipped recipe "
                    f"({', '.join(shipped())})")


# ---- generic checks ---------------------------------------------------------------------------
def check_keys(where: str, given, allowed) -> None:
    """UserError naming the unknown keys of `given`, a likely spelling, and the allowed keys."""
    allowed = sorted(allowed)
    unknown = sorted((k for k in given if k not in allowed), key=str)
    if not unknown:
        return
    hints = [f"{m[0]!r} for {k!r}" for k in unknown
             if (m := difflib.get_close_matches(str(k), allowed, n=1))]
    hint = f" (did you mean {', '.join(hints)}?)" if hints else ""
    raise UserError(f"recipe {where} has unknown key(s) {unknown}{hint}; allowed: "
                    f"{', '.join(allowed)}")


def coerce(where: str, value, kind):
    """`value` converted to the type `kind` (`int`, `float | None`, `bool`, `tuple[float,
    float]`, ...: a real annotation).

    Whole numbers may be written 300, 300.0 or "3e2"; numbers as 0.0003 or 3e-4 (which YAML
    reads as a string); booleans only as true/false. Other types (`Any`, `dict`, ...) pass
    through (the config object checks them).
    """
    kinds = _alternatives(kind)
    if value is None and type(None) in kinds:
        return None
    for k in kinds:
        ok, v = _as(k, value)
        if ok:
            return v
    want = " or ".join(_describe(k) for k in kinds)
    raise UserError(f"recipe {where} must be {want}, got {value!r}")


def _alternatives(kind) -> list:
    """The members of a union annotation (`int | None` -> [int, NoneType]), else [kind]."""
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        return list(typing.get_args(kind))
    return [kind]


def _describe(kind) -> str:
    if kind in _KINDS:
        return _KINDS[kind]
    args = typing.get_args(kind)
    if typing.get_origin(kind) is tuple and Ellipsis in args:
        return "a list of strings" if args[0] is str else f"a list of {_describe(args[0])}s"
    if typing.get_origin(kind) is tuple:
        return f"a list of {len(args)} numbers" if args[0] is float else f"a list of {len(args)}"
    return getattr(kind, "__name__", str(kind))


def _as(kind, v) -> tuple[bool, object]:
    """(True, v converted to `kind`) or (False, v)."""
    if kind in (bool, str):
        return isinstance(v, kind), v
    if kind in (int, float):
        x = v
        if isinstance(v, str):
            try:
                x = float(v)
            except ValueError:
                return False, v
        elif isinstance(v, bool) or not isinstance(v, (int, float)):
            return False, v
        if not math.isfinite(x):
            return False, v
        if kind is float:
            return True, float(x)
        return (True, int(x)) if float(x).is_integer() else (False, v)
    args = typing.get_args(kind)
    if typing.get_origin(kind) is tuple and Ellipsis not in args:  # tuple[float, float]
        if not isinstance(v, (list, tuple)) or len(v) != len(args):
            return False, v
        items = [_as(k, x) for k, x in zip(args, v)]
        return all(ok for ok, _ in items), [x for _, x in items]
    if typing.get_origin(kind) is tuple:  # tuple[str, ...]: one string or a list of them
        if isinstance(v, str):
            return True, [v]
        return isinstance(v, (list, tuple)) and all(isinstance(x, args[0]) for x in v), v
    return True, v  # Any, GPTConfig.linear's dict (or "attn=lora"), ...: the config checks


def need(ok: bool, where: str, message: str) -> None:
    if not ok:
        raise UserError(f"recipe {where} {message}")


def section(name: str, value, types: dict, required: tuple = ()) -> dict:
    """A recipe section checked against `types` (key -> annotation): a new dict with the given
    keys converted; UserError for a non-mapping, an unknown or a missing key."""
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise UserError(f"recipe `{name}:` must be a mapping of settings (e.g. {name}: "
                        f"{{{next(iter(types))}: ...}}), got {value!r}")
    check_keys(f"`{name}:`", value, types)
    for key in required:
        if key not in value:
            raise UserError(f"recipe `{name}:` needs `{key}:`")
    return {k: coerce(f"`{name}: {k}:`", v, types[k]) for k, v in value.items()}


def build(name: str, make):
    """`make()` (a config constructor); its error becomes one naming the recipe keys."""
    try:
        return make()
    except ConfigError as exc:
        raise UserError(f"recipe {recipe_message(name, exc)}") from None
    except UserError as exc:
        raise UserError(f"recipe `{name}:` {exc}") from None


def recipe_message(section: str, exc: ConfigError) -> str:
    """`exc` worded for recipe section `section`: its field as `` `section: key:` `` when the
    message starts with it (else after `` `section:` ``), other fields as `` `key:` `` and
    settings as `` `key: value` ``."""
    text = exc.render(lambda name, value: f"`{name}: {value}`" if value else f"`{name}:`",
                      lead=lambda name: f"`{section}: {name}:`")
    return text if exc.leads else f"`{section}:` {text}"


# ---- the sections of a recipe -----------------------------------------------------------------
def check_recipe(r: dict) -> dict:
    """The recipe `r` (section -> value) with every section checked and converted."""
    out = {k: coerce(f"`{k}:`", v, TOP[k]) for k, v in r.items()}
    if (out["model"] is None) == (out["hf"] is None):
        raise UserError("a recipe needs exactly one of `model:` (train a GPT here) or "
                        "`hf: DIR` (a local Hugging Face causal LM)")
    need(0 < out["delta"] < 1, "`delta:`", f"must lie in (0, 1), got {out['delta']}")
    need(out["extra_bits"] >= 0, "`extra_bits:`",
         f"must be a whole number of bits >= 0, got {out['extra_bits']}")
    out["data"] = check_data(r["data"])
    out["evaluate"] = check_evaluate(r["evaluate"])
    out["compress"] = check_compress(r["compress"], trained=out["model"] is not None)
    if out["model"] is None:
        need(not r.get("finetune") and out["data"].get("prior_split") is None,
             "`finetune:` and `data: prior_split:`", "need a base trained here (`model:`)")
        need(not r.get("train"), "`train:`", "applies only to a model trained here (`model:`); "
             "remove it (an `hf:` model is used as it is)")
        return out
    out["model"], gcfg = check_model(r["model"])
    out["train"] = check_train(r.get("train"), gcfg)
    if r.get("finetune") is not None or out["data"].get("prior_split") is not None:
        out["finetune"] = check_finetune(r.get("finetune"), out["data"], gcfg)
    ctx = out["evaluate"]["context_len"]
    need(ctx <= gcfg.context_len, "`evaluate: context_len:`",
         f"{ctx} exceeds the model's context_len {gcfg.context_len}; use {gcfg.context_len} "
         "or less")
    return out


def check_data(value) -> dict:
    d = section("data", value, DATA, required=("corpus",))
    need(bool(d["corpus"]), "`data: corpus:`", "is empty; give shakespeare, pystdlib or a path")
    if d.get("max_train_docs") is not None:
        need(d["max_train_docs"] >= 1, "`data: max_train_docs:`",
             f"must be >= 1 (or null for all), got {d['max_train_docs']}")
    if d.get("heldout_fraction") is not None:
        need(0 <= d["heldout_fraction"] < 1, "`data: heldout_fraction:`",
             f"must be in [0, 1), got {d['heldout_fraction']}")
    return d


def check_finetune(value, data: dict, gcfg) -> dict:
    """`finetune:` (needs `data: prior_split:`, and the reverse): adapter keys + `train:`."""
    need(value is not None and data.get("prior_split") is not None,
         "`finetune:` and `data: prior_split:`", "go together: the base is trained on the "
         "prior part, the fine-tuned model is certified on the bound part; give both")
    need(0 < data["prior_split"] < 1, "`data: prior_split:`",
         f"must lie strictly between 0 and 1, got {data['prior_split']}")
    f = section("finetune", value, FINETUNE)
    for key in ("lora_rank", "subspace_dim"):
        need(f.get(key) is None or f[key] >= 1, f"`finetune: {key}:`",
             f"must be a positive integer, got {f.get(key)}")
    f["train"] = check_train(f.get("train"), gcfg)
    if f.get("subspace_dim") and gcfg is not None:  # before the base trains, not after
        from tokenbound.models import build_model
        from tokenbound.models.finetune import check_subspace_dim, lora_size

        D = lora_size(build_model(gcfg, device="meta"), f.get("lora_rank", 4),
                      f.get("lora_targets", ()))
        check_subspace_dim(f["subspace_dim"], D, name="`finetune: subspace_dim:`")
    return f


def check_model(value):
    from tokenbound.models import GPTConfig

    m = section("model", value, field_types(GPTConfig))
    return m, build("model", lambda: GPTConfig(**m))


def check_train(value, gcfg):
    from tokenbound.training import TrainConfig

    t = section("train", value, field_types(TrainConfig, skip=("data", "out", "model")))
    build("train", lambda: TrainConfig(data="DATA", out="OUT", model=gcfg, **t))
    return t


GROUP_LOSS = {"loss_windows": int, "loss_context": int}


def is_groupwise(c) -> bool:
    """A `compress:` section of per-group quantization (`bits:` / `group_size:`, no `levels:`)."""
    return isinstance(c, dict) and "levels" not in c and bool({"bits", "group_size"} & set(c))


def check_group_compress(value) -> dict:
    """`compress: {bits: 4, group_size: 32, ...}`: per-group quantization of an `hf:` model
    (`GroupConfig` fields, plus loss_windows / loss_context of the loss sample)."""
    from tokenbound.compression.groupwise import GroupConfig

    types = {**field_types(GroupConfig), "overrides": Any, **GROUP_LOSS}  # GroupConfig checks
    c = section("compress", value, types)
    for key in GROUP_LOSS:
        need(c.get(key, 1) >= 1, f"`compress: {key}:`", f"must be >= 1, got {c.get(key)}")
    build("compress", lambda: GroupConfig(**{k: v for k, v in c.items() if k not in GROUP_LOSS}))
    return c


def check_compress(value, *, trained: bool) -> dict:
    """`compress:` holds the QuantConfig keys and, for a model trained here, the QATConfig
    keys."""
    from tokenbound.compression import QuantConfig
    from tokenbound.experiments.steps import QATConfig

    if not trained and is_groupwise(value):
        return check_group_compress(value)

    qat = field_types(QATConfig)
    c = section("compress", value, {**field_types(QuantConfig), **qat}, required=("levels",))
    run_keys = sorted(set(c) & set(qat))
    need(trained or not run_keys, f"`compress: {', '.join(run_keys)}`",
         "applies only to a model trained here (`model:`); an `hf:` model is quantized "
         "without fine-tuning: remove it")
    build("compress", lambda: QATConfig.from_recipe(c))
    build("compress", lambda: QuantConfig.from_recipe(c))
    return c


def check_evaluate(value) -> dict:
    from tokenbound.evaluation import EvalConfig

    e = section("evaluate", value, field_types(EvalConfig), required=("context_len",))
    build("evaluate", lambda: EvalConfig(**e))
    build("evaluate", lambda: EvalConfig(**heldout_eval(e)))
    return e


def heldout_eval(e: dict) -> dict:
    """The held-out evaluation's settings: the recipe's, every token scored (exact mode)."""
    return {**e, "mode": "exact", "n_samples": None}
