"""Recipes: the ones shipped inside the package (`tokenbound/recipes/*.yaml`) and the checks
every recipe passes before any step runs.

`check_recipe` reads each section of a recipe (a YAML mapping, see `pipeline`'s docstring) once,
up front: every section must be a mapping whose keys are known (a misspelt key is an error that
suggests the spelling), numbers and booleans must have their type (`steps: 300`, `lr: 3e-4`,
`heldout: true`), and the configuration objects of the steps (`GPTConfig`, `TrainConfig`,
`QuantConfig`, `EvalConfig`) are built, so that their own checks run too. A typo in `evaluate:`
is then reported in a second, not after an hour of training. Values are only converted to their
type (a key that is not given stays absent), so a checked recipe equals the file it came from.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
from pathlib import Path

from tokenbound.errors import UserError

RECIPE_DIR = Path(__file__).resolve().parent.parent / "recipes"

# key -> annotation, read like a dataclass field's type ("int | None": a whole number or null)
TOP = {"name": "str", "out": "str", "description": "str", "delta": "float", "heldout": "bool",
       "extra_bits": "int", "hf": "str | None", "data": "dict", "model": "dict | None",
       "train": "dict", "compress": "dict", "evaluate": "dict"}
DATA = {"corpus": "str", "tokenizer": "str", "max_train_docs": "int | None",
        "heldout_fraction": "float | None", "doc_separator": "str | None", "glob": "str",
        "text_column": "str"}
# `compress:` keys read by `run` itself (the others are QuantConfig fields); they apply only to
# a model trained by the recipe (`hf:` models are quantized without fine-tuning)
COMPRESS_RUN = {"qat_steps": "int", "qat_lr": "float", "qat_optimizer": "str",
                "batch_size": "int", "eval_batches": "int"}
# CLI flags named in the configs' own error messages -> the recipe key
FLAG_KEYS = {"evaluate": {"--context": "context_len", "--samples": "n_samples"},
             "train": {"--seq-len": "context_len", "--data-seed": "seed",
                       "--warmup": "warmup_frac"},
             "model": {"--no-tie-embeddings": "tie_embeddings: false"}}
_KINDS = {"int": "a whole number", "float": "a number", "bool": "true or false",
          "str": "a string", "dict": "a mapping ({key: value, ...})", "None": "null",
          "tuple[float, float]": "a list of two numbers", "tuple[str, ...]": "a list of strings"}


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


def coerce(where: str, value, kind: str):
    """`value` converted to the annotated type `kind` ("int", "float | None", "bool", ...).

    Whole numbers may be written 300, 300.0 or "3e2"; numbers as 0.0003 or 3e-4 (which YAML
    reads as a string); booleans only as true/false. Kinds not listed in `_KINDS` pass through
    (the config object checks them).
    """
    kinds = [k.strip() for k in kind.split("|")]
    if value is None and "None" in kinds:
        return None
    for k in kinds:
        ok, v = _as(k, value)
        if ok:
            return v
    want = " or ".join(_KINDS.get(k, k) for k in kinds)
    raise UserError(f"recipe {where} must be {want}, got {value!r}")


def _as(kind: str, v) -> tuple[bool, object]:
    """(True, v converted to `kind`) or (False, v)."""
    if kind == "bool":
        return isinstance(v, bool), v
    if kind == "str":
        return isinstance(v, str), v
    if kind in ("int", "float"):
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
        if kind == "float":
            return True, float(x)
        return (True, int(x)) if float(x).is_integer() else (False, v)
    if kind == "tuple[float, float]":
        if not isinstance(v, (list, tuple)):
            return False, v
        items = [_as("float", x) for x in v]
        return all(ok for ok, _ in items), [x for _, x in items]
    if kind == "tuple[str, ...]":
        if isinstance(v, str):
            return True, [v]
        return isinstance(v, (list, tuple)) and all(isinstance(x, str) for x in v), v
    return True, v  # "Any", GPTConfig.linear's "dict" (or "attn=lora"), ...: the config checks


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


def field_types(cls, skip=()) -> dict:
    """Field name -> annotation string of a dataclass (its recipe key types)."""
    return {f.name: str(f.type) for f in dataclasses.fields(cls) if f.name not in skip}


def build(name: str, make, fields: dict):
    """`make()` (a config constructor); its UserError becomes one naming the recipe keys."""
    try:
        return make()
    except UserError as exc:
        msg = str(exc)
        flags = {f"--{k.replace('_', '-')}": k for k in fields} | FLAG_KEYS.get(name, {})
        for flag in sorted(flags, key=len, reverse=True):
            pattern = rf"(?<![\w-]){re.escape(flag)}(?![\w-])"
            key = flags[flag]
            msg = re.sub(pattern + ":?", f"`{key}`" if ":" in key else f"`{key}:`", msg)
        lead = re.match(r"`(\w+):`(.*)", msg, re.S)  # "`steps:` must be ..." leads
        where = f"`{name}: {lead[1]}:`{lead[2]}" if lead else f"`{name}:` {msg}"
        raise UserError(f"recipe {where}") from None


# ---- the sections of a recipe -----------------------------------------------------------------
def check_recipe(r: dict) -> dict:
    """The recipe `r` (section -> value) with every section checked and converted."""
    out = {k: (coerce(f"`{k}:`", v, TOP[k]) if TOP[k] not in ("dict", "dict | None") else v)
           for k, v in r.items()}
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
        need(not r.get("train"), "`train:`", "applies only to a model trained here (`model:`); "
             "remove it (an `hf:` model is used as it is)")
        return out
    out["model"], gcfg = check_model(r["model"])
    out["train"] = check_train(r.get("train"), gcfg)
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


def check_model(value):
    from tokenbound.models import GPTConfig

    types = field_types(GPTConfig)
    m = section("model", value, types)
    return m, build("model", lambda: GPTConfig(**m), types)


def check_train(value, gcfg):
    from tokenbound.training import TrainConfig

    types = field_types(TrainConfig, skip=("data", "out", "model"))
    t = section("train", value, types)
    build("train", lambda: TrainConfig(data="DATA", out="OUT", model=gcfg, **t), types)
    return t


def check_compress(value, *, trained: bool) -> dict:
    from tokenbound.compression import QuantConfig
    from tokenbound.compression.qat import QAT_OPTIMIZERS

    quant = field_types(QuantConfig)
    c = section("compress", value, {**quant, **COMPRESS_RUN}, required=("levels",))
    run_keys = sorted(set(c) & set(COMPRESS_RUN))
    need(trained or not run_keys, f"`compress: {', '.join(run_keys)}`",
         "applies only to a model trained here (`model:`); an `hf:` model is quantized "
         "without fine-tuning: remove it")
    for key, low in (("qat_steps", 0), ("batch_size", 1), ("eval_batches", 0)):
        need(c.get(key, low) >= low, f"`compress: {key}:`", f"must be >= {low}, got {c.get(key)}")
    need(c.get("qat_lr", 1.0) > 0, "`compress: qat_lr:`", f"must be > 0, got {c.get('qat_lr')}")
    need(c.get("qat_optimizer", "sgd") in QAT_OPTIMIZERS, "`compress: qat_optimizer:`",
         f"{c.get('qat_optimizer')!r}: use {' or '.join(QAT_OPTIMIZERS)}")
    build("compress", lambda: QuantConfig.from_recipe(c), quant)
    return c


def check_evaluate(value) -> dict:
    from tokenbound.evaluation import EvalConfig
    from tokenbound.evaluation.sources import DTYPES

    types = field_types(EvalConfig)
    e = section("evaluate", value, types, required=("context_len",))
    for key, low in (("n_samples", 1), ("seed", 0), ("shard_tokens", 1), ("vocab_chunk", 1)):
        if e.get(key) is not None:
            need(e[key] >= low, f"`evaluate: {key}:`", f"must be >= {low}, got {e[key]}")
    need(e.get("dtype", "fp32") in DTYPES, "`evaluate: dtype:`",
         f"{e.get('dtype')!r}: use one of {', '.join(DTYPES)}")
    build("evaluate", lambda: EvalConfig(**e), types)
    build("evaluate", lambda: EvalConfig(**heldout_eval(e)), types)
    return e


def heldout_eval(e: dict) -> dict:
    """The held-out evaluation's settings: the recipe's, every token scored (exact mode)."""
    return {**e, "mode": "exact", "n_samples": None}
