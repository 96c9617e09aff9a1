"""Model adapters ("builders"): how a message names, rebuilds and reads a model family.

A builder knows, for one family of models, how to describe `(model, cfg)` as a JSON-able dict
(stored in the message header), how to rebuild a model from that dict (frozen tensors are
regenerated there, bit for bit), and how to read/write the *charged* tensors (`trained_state`).
Builders are looked up by name from a fixed registry: decoding a message never imports or runs
anything named by the message itself.

A builder may also `plan` a dict: the trained tensors a build would have (as "meta" tensors:
shapes and dtypes, no memory) and the number of values (trained + frozen) it would allocate,
computed without allocating. The decoder compares both with what the message carries before it
builds anything, so a crafted header cannot make it allocate a huge model. Both builders below
plan; they also refuse more than `MAX_LAYERS` blocks (each block is Python objects, slow to
create even on the meta device).

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
from torch.overrides import TorchFunctionMode

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
    plan: Callable[[dict], tuple[dict, int]] | None = None
    """dict -> ({trained name: meta Tensor}, values a build allocates), allocating nothing."""


MAX_LAYERS = 256
"""Most transformer blocks a message's config may ask for (more is refused as corrupt)."""


def _check_layers(n: Any) -> None:
    if isinstance(n, int) and n > MAX_LAYERS:
        raise MessageError(f"message header asks for {n:,} layers (limit {MAX_LAYERS:,}); the "
                           "message is corrupt or crafted")


class _SkipMetaInit(TorchFunctionMode):
    """Random normal inits on meta tensors are skipped (they set no shape): their meta kernel
    is written in Python and its first call imports torch._dynamo, seconds per process. Other
    Python meta kernels (LoRA's seeded bases, Monarch and Kronecker factors) still pay that
    import once per process (4-5 s measured on the busy 2-core development machine)."""

    SKIP = (torch.Tensor.normal_, torch.nn.init.normal_, torch.nn.init.trunc_normal_)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in self.SKIP:
            t = args[0] if args else kwargs.get("tensor")
            if isinstance(t, torch.Tensor) and t.is_meta:
                return t
        return func(*args, **kwargs)


def _meta_values(model) -> int:
    """Floating-point values of `model`'s parameters and buffers (tied tensors once)."""
    return int(sum(p.numel() for p in model.parameters())
               + sum(b.numel() for b in model.buffers() if b.is_floating_point()))


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


def _tb_plan(d: dict) -> tuple[dict, int]:
    """Trained tensors and values of `_tb_build(d)`, from a meta-device build of the GPT; a
    subspace model trains only `subspace.w` (d,) and adds its two projection factors."""
    from tokenbound.models import GPTConfig, build_model
    from tokenbound.models.subspace import projection_shapes

    _check_layers(d.get("n_layer") if isinstance(d, dict) else None)
    cfg = GPTConfig.from_dict(d)
    with _SkipMetaInit():
        base = build_model(cfg.replace(subspace_dim=None) if cfg.subspace_dim else cfg,
                           device="meta")
    values = _meta_values(base)
    if not cfg.subspace_dim:
        return base.trained_state(), values
    D = sum(t.numel() for t in base.trained_state().values())
    D1, d1, D2, d2 = projection_shapes(D, cfg.subspace_dim)
    w = torch.empty(cfg.subspace_dim, device="meta")
    return {"subspace.w": w}, values + D1 * d1 + D2 * d2 + cfg.subspace_dim


register_builder(Builder(
    name="tokenbound-gpt",
    owns=lambda m: hasattr(m, "trained_state") and hasattr(m, "load_trained_state"),
    describe=lambda model, cfg: cfg.to_dict(),
    build=_tb_build,
    trained_state=lambda m: m.trained_state(),
    load_trained_state=lambda m, d: m.load_trained_state(d),
    plan=_tb_plan,
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


def _hf_config(d: dict):
    """(class, config) named by an 'hf' header dict; MessageError when not a causal LM."""
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
    except (ValueError, TypeError, KeyError) as exc:
        raise MessageError(f"message header: bad {cls_name} config ({exc})") from None
    _check_layers(getattr(cfg, "num_hidden_layers", None))
    return cls, cfg


def _hf_build(d: dict):
    cls, cfg = _hf_config(d)
    try:
        torch.manual_seed(0)  # every parameter is overwritten; seed only for determinism
        model = cls(cfg)
    except (ValueError, TypeError, KeyError) as exc:
        raise MessageError(f"message header: cannot build {cls.__name__} from its config "
                           f"({exc})") from None
    model.eval()
    return model, cfg


def _hf_plan(d: dict) -> tuple[dict, int]:
    cls, cfg = _hf_config(d)
    try:
        with _SkipMetaInit(), torch.device("meta"):
            model = cls(cfg)
    except (ValueError, TypeError, KeyError) as exc:
        raise MessageError(f"message header: cannot build {cls.__name__} from its config "
                           f"({exc})") from None
    return _hf_trained_state(model), _meta_values(model)


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
    plan=_hf_plan,
))
