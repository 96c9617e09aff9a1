"""Parameter counts of a built model, by part (for `tokenbound model-info` and reports).

"trained" = entries of `model.trained_state()` (what is charged in the code length);
"frozen" = floating-point entries regenerated from the seed (LoRA bases `W0`, subspace origin
`theta0` and projection factors). Integer index buffers (Monarch permutations) are not
parameters and are not counted. Parts: embeddings (token and position tables; a tied head is
counted here, not under head), attn, mlp, head (an untied head), norms, subspace (`w` and the
factors of P).
"""

from __future__ import annotations

from torch import nn

PARTS = ("embeddings", "attn", "mlp", "head", "norms", "subspace")


def part_of(name: str) -> str:
    """The part a tensor belongs to, from its name (e.g. `blocks.0.attn.qkv.weight` -> attn)."""
    name = name.removeprefix("base.")
    if name.startswith(("wte.", "wpe.")):
        return "embeddings"
    if name.startswith("subspace."):
        return "subspace"
    if name.startswith("lm_head."):
        return "head"
    if ".attn." in name:
        return "attn"
    if ".mlp." in name:
        return "mlp"
    if name.startswith("ln_f.") or ".ln1." in name or ".ln2." in name:
        return "norms"
    raise ValueError(f"tensor {name!r} belongs to no known part")


def param_counts(model: nn.Module) -> dict:
    """`{"total", "trained", "frozen", "parts": {part: {"trained", "frozen"}}}` (+ "ambient_dim"
    D for a subspace model: the number of base entries that `theta0 + P w` reparametrizes)."""
    parts = {p: {"trained": 0, "frozen": 0} for p in PARTS}
    for name, p in model.named_parameters():  # shared (tied) tensors appear once
        parts[part_of(name)]["trained" if p.requires_grad else "frozen"] += p.numel()
    for name, b in model.named_buffers():
        if b.is_floating_point():
            parts[part_of(name)]["frozen"] += b.numel()
    trained = sum(v["trained"] for v in parts.values())
    frozen = sum(v["frozen"] for v in parts.values())
    out = {"total": trained + frozen, "trained": trained, "frozen": frozen, "parts": parts}
    if hasattr(model, "ambient_dim"):
        out["ambient_dim"] = model.ambient_dim
    return out
