"""Model adapters ("builders"): how a message names, rebuilds and reads a model family.

A builder knows, for one family of models, how to describe `(model, cfg)` as a JSON-able dict
(stored in the message header), how to rebuild a model from that dict (frozen tensors are
regenerated there, bit for bit), and how to read/write the *charged* tensors (`trained_state`).
Builders are looked up by name from a fixed registry: decoding a message never imports or runs
anything named by the message itself.

Registered here:
- ``"tokenbound-gpt"``: `tokenbound.models` (`GPTConfig.to_dict/from_dict`, `build_model`,
  `model.trained_state()`, `model.load_trained_state(d)`).
- ``"hf"``: a Hugging Face causal LM; every parameter is charged, tied tensors once
  (`named_parameters()` removes duplicates); the class must be one of transformers' causal-LM
  classes (`MODEL_FOR_CAUSAL_LM_MAPPING_NAMES`); `trust_remote_code` is never used.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, Callable

import torch

from tokenbound.compression.wire import MessageError


@dataclass(frozen=True)
class Builder:
    """How a message describes, rebuilds and reads one family of models."""

    name: str
    owns: Callable[[Any], bool]                      # model -> is it of this family?
    describe: Callable[[Any, Any], dict]             # (model, cfg) -> JSON-able dict
    build: Callable[[dict], tuple[Any, Any]]         # dict -> (model, cfg), deterministic
    trained_state: Callable[[Any], dict]             # model -> {name: Tensor} (charged)
    load_trained_state: Callable[[Any, dict], None]  # (model, {name: Tensor}) -> None


BUILDERS: dict[str, Builder] = {}


def register_builder(builder: Builder) -> Builder:
    """Add `builder` to the registry (later registrations are tried first by `builder_for`)."""
    BUILDERS[builder.name] = builder
    return builder


def builder_for(model) -> Builder:
    """The registered builder that owns `model` (most recently registered first)."""
    for builder in reversed(list(BUILDERS.values())):
        if builder.owns(model):
            return builder
    raise TypeError(f"no compression builder for {type(model).__name__}: expected a tokenbound "
                    "model (trained_state/load_trained_state) or a transformers causal LM")


def get_builder(name: str) -> Builder:
    if name not in BUILDERS:
        raise MessageError(f"message names an unknown model family {name!r}; known: "
                           f"{sorted(BUILDERS)}")
    return BUILDERS[name]


# --- tokenbound's own models -------------------------------------------------------------------

def _tb_build(d: dict):
    from tokenbound.models import GPTConfig, build_model

    cfg = GPTConfig.from_dict(d)
    model = build_model(cfg)
    model.eval()
    return model, cfg


register_builder(Builder(
    name="tokenbound-gpt",
    owns=lambda m: hasattr(m, "trained_state") and hasattr(m, "load_trained_state"),
    describe=lambda model, cfg: cfg.to_dict(),
    build=_tb_build,
    trained_state=lambda m: m.trained_state(),
    load_trained_state=lambda m, d: m.load_trained_state(d),
))


# --- Hugging Face causal LMs ---------------------------------------------------------------------

def _causal_lm_classes() -> set:
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    names = set()
    for v in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values():
        names.update([v] if isinstance(v, str) else v)
    return names


def _hf_owns(model) -> bool:
    if "transformers" not in sys.modules:
        return False
    from transformers import PreTrainedModel

    return isinstance(model, PreTrainedModel)


def _hf_describe(model, cfg) -> dict:
    cfg = model.config if cfg is None else cfg
    return {"class": type(model).__name__, "config": {"model_type": cfg.model_type,
                                                      **cfg.to_diff_dict()}}


def _hf_build(d: dict):
    import transformers

    cls_name = d.get("class") if isinstance(d, dict) else None
    conf = d.get("config") if isinstance(d, dict) else None
    if not isinstance(cls_name, str) or cls_name not in _causal_lm_classes() \
            or not isinstance(conf, dict):
        raise MessageError("message header: 'hf' model needs a transformers causal-LM class "
                           "name and a config dict")
    cls = getattr(transformers, cls_name, None)
    if cls is None:
        raise MessageError(f"message header: transformers has no class {cls_name}")
    conf = dict(conf)
    model_type = conf.pop("model_type", None)
    try:
        cfg = transformers.AutoConfig.for_model(model_type, **conf)
        torch.manual_seed(0)  # every parameter is overwritten; seed only for determinism
        model = cls(cfg)
    except (ValueError, TypeError, KeyError) as exc:
        raise MessageError(f"message header: cannot build {cls_name} from its config ({exc})") \
            from None
    model.eval()
    return model, cfg


def _hf_trained_state(model) -> dict:
    return {n: p.detach() for n, p in model.named_parameters()}


def _hf_load(model, d: dict) -> None:
    params = dict(model.named_parameters())
    if list(params) != list(d) or any(params[n].shape != d[n].shape for n in d):
        raise MessageError("message tensors do not match the rebuilt transformers model")
    with torch.no_grad():
        for n, t in d.items():
            params[n].copy_(t)


register_builder(Builder(
    name="hf",
    owns=_hf_owns,
    describe=_hf_describe,
    build=_hf_build,
    trained_state=_hf_trained_state,
    load_trained_state=_hf_load,
))
