"""A small pre-LN GPT (Radford et al. 2019; layout of karpathy/nanoGPT `model.py`).

    idx (B, T) -> wte(idx) [+ wpe(pos)] -> n_layer x [x + attn(ln1(x)); x + mlp(ln2(x))]
               -> ln_f -> logits (B, T, V) = x wte^T (tied) or lm_head(x)

- Attention is causal (`F.scaled_dot_product_attention`). With `doc_ids` (B, T) it is
  block-diagonal causal: a token attends only to earlier tokens of its own document (a
  document is a maximal run of equal consecutive ids), and position ids restart at 0 at each
  document start, so a document inside a packed row gets exactly the logits it gets alone.
- `max_context = k` bands the mask in every layer: token i attends to tokens i-k+1 .. i only.
  Layers compose, so the logits at i depend on the last `R = n_layer (k - 1) + 1` tokens
  (the receptive field; exactly k when n_layer = 1). With `position="rope"` (relative) or
  `"none"` they are a function of those R tokens alone (an order-(R-1) Markov predictor); with
  learned absolute positions they also depend on the position id of i. (For an exact k-token
  context with any model, evaluate with context k and stride 1 instead.)
- Linear maps of the attention (`attn`: qkv, proj), MLP (`mlp`: fc, proj) and untied head
  (`head`) use the parametrization chosen in `cfg.linear` (see `linear.py`).
- No biases and parameter-free LayerNorms by default. Init as nanoGPT: N(0, init_std), the
  residual output projections N(0, init_std / sqrt(2 n_layer)).

`trained_state()` lists exactly the trained (charged) tensors: every parameter with
`requires_grad`; frozen tensors (LoRA bases) are buffers regenerated from `cfg.seed`.
"""

from __future__ import annotations

import math
import zlib
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from tokenbound.errors import UserError
from tokenbound.models.config import GPTConfig
from tokenbound.models.linear import make_linear


def derived_seed(seed: int, name: str) -> int:
    """A seed for the frozen tensor `name`, fixed by the model seed (stable across runs)."""
    return (int(seed) * 1_000_003 + zlib.crc32(name.encode())) % (2**63)


def positions_and_segments(doc_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Position ids (offset from the document start) and segment ids, both (B, T) int64.

    A document is a maximal run of equal consecutive `doc_ids`; e.g. doc_ids [7 7 3 3 3 7] ->
    segments [1 1 2 2 2 3], positions [0 1 0 1 2 0].
    """
    B, T = doc_ids.shape
    new = torch.ones_like(doc_ids, dtype=torch.bool)  # (B, T): a document starts here
    new[:, 1:] = doc_ids[:, 1:] != doc_ids[:, :-1]
    t = torch.arange(T, device=doc_ids.device).expand(B, T)
    start = torch.where(new, t, torch.zeros_like(t)).cummax(dim=1).values  # (B, T)
    return t - start, new.long().cumsum(dim=1)


def attention_mask(T: int, segments: torch.Tensor | None, max_context: int | None,
                   device: torch.device) -> torch.Tensor | None:
    """Boolean mask (B or 1, 1, T, T), True = may attend; None = plain causal (is_causal)."""
    if segments is None and max_context is None:
        return None
    i = torch.arange(T, device=device)[:, None]
    j = torch.arange(T, device=device)[None, :]
    allowed = j <= i  # (T, T)
    if max_context is not None:
        allowed = allowed & (i - j < max_context)
    if segments is not None:
        allowed = allowed & (segments[:, :, None] == segments[:, None, :])  # (B, T, T)
    else:
        allowed = allowed[None]
    return allowed[:, None]  # (B, 1, T, T)


def rope(x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """Rotary embedding (Su et al. 2021, half-split form) of x (B, H, T, hd) at pos (B|1, T)."""
    hd = x.shape[-1]
    inv_freq = 10000.0 ** (-torch.arange(0, hd, 2, device=x.device, dtype=torch.float32) / hd)
    ang = pos.to(torch.float32)[:, None, :, None] * inv_freq  # (B, 1, T, hd/2)
    cos, sin = ang.cos(), ang.sin()
    x1, x2 = x.float()[..., : hd // 2], x.float()[..., hd // 2:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).to(x.dtype)


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig, prefix: str):
        super().__init__()
        d, std = cfg.d_model, cfg.init_std
        self.n_head, self.dropout, self.use_rope = cfg.n_head, cfg.dropout, cfg.position == "rope"
        self.qkv = _linear(cfg, "attn", d, 3 * d, std, prefix + ".qkv")
        self.proj = _linear(cfg, "attn", d, d, std / math.sqrt(2 * cfg.n_layer), prefix + ".proj")

    def forward(self, x, mask, pos):
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)  # 3 x (B, T, C)
        q, k, v = (z.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
                   for z in (q, k, v))  # (B, H, T, hd)
        if self.use_rope:
            q, k = rope(q, pos), rope(k, pos)
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p,
                                           is_causal=mask is None)  # (B, H, T, hd)
        y = y.transpose(1, 2).reshape(B, T, C)
        return F.dropout(self.proj(y), p, self.training)


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig, prefix: str):
        super().__init__()
        d, h, std = cfg.d_model, cfg.mlp_ratio * cfg.d_model, cfg.init_std
        self.dropout = cfg.dropout
        self.fc = _linear(cfg, "mlp", d, h, std, prefix + ".fc")
        self.proj = _linear(cfg, "mlp", h, d, std / math.sqrt(2 * cfg.n_layer), prefix + ".proj")

    def forward(self, x):
        return F.dropout(self.proj(F.gelu(self.fc(x))), self.dropout, self.training)


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig, prefix: str):
        super().__init__()
        self.ln1 = _norm(cfg)
        self.attn = CausalSelfAttention(cfg, prefix + ".attn")
        self.ln2 = _norm(cfg)
        self.mlp = MLP(cfg, prefix + ".mlp")

    def forward(self, x, mask, pos):
        x = x + self.attn(self.ln1(x), mask, pos)
        return x + self.mlp(self.ln2(x))


def _norm(cfg: GPTConfig) -> nn.LayerNorm:
    return nn.LayerNorm(cfg.d_model, elementwise_affine=cfg.norm_affine,
                        bias=cfg.norm_affine and cfg.bias)


def _linear(cfg: GPTConfig, group: str, n_in: int, n_out: int, std: float, name: str):
    return make_linear(cfg.linear[group], n_in, n_out, std=std, bias=cfg.bias,
                       lora_rank=cfg.lora_rank, monarch_blocks=cfg.monarch_blocks,
                       seed=derived_seed(cfg.seed, name))


class TrainedStateMixin:
    """`trained_state` / `load_trained_state` / `trainable_parameters` over the parameters
    with `requires_grad` (shared by `GPT` and the subspace wrapper)."""

    def trained_state(self) -> "OrderedDict[str, torch.Tensor]":
        """Exactly the charged tensors, in a fixed order (detached views: clone to keep)."""
        return OrderedDict((n, p.detach()) for n, p in self.named_parameters()
                           if p.requires_grad)

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The parameters the optimizer updates (same tensors as `trained_state`)."""
        return [p for p in self.parameters() if p.requires_grad]

    def load_trained_state(self, state: dict) -> None:
        """Set the trained tensors; strict: same names, shapes and dtypes, else `UserError`."""
        own = dict((n, p) for n, p in self.named_parameters() if p.requires_grad)
        if set(own) != set(state):
            missing, extra = sorted(set(own) - set(state)), sorted(set(state) - set(own))
            raise UserError(f"trained state does not fit this model config: missing "
                            f"{missing[:5]}, unexpected {extra[:5]}; use the config it was "
                            f"trained with")
        for n, p in own.items():
            t = state[n]
            if t.shape != p.shape or t.dtype != p.dtype:
                raise UserError(f"trained tensor {n} is {tuple(t.shape)} {t.dtype}, the model "
                                f"expects {tuple(p.shape)} {p.dtype}; use the matching config")
        with torch.no_grad():
            for n, p in own.items():
                p.copy_(state[n])


class GPT(TrainedStateMixin, nn.Module):
    """(B, T) int64 token ids [, doc_ids (B, T)] -> logits (B, T, V); see module docstring."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.cfg = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.d_model)
        nn.init.normal_(self.wte.weight, 0.0, cfg.init_std)
        if cfg.position == "learned":
            self.wpe = nn.Embedding(cfg.context_len, cfg.d_model)
            nn.init.normal_(self.wpe.weight, 0.0, cfg.init_std)
        self.blocks = nn.ModuleList(Block(cfg, f"blocks.{i}") for i in range(cfg.n_layer))
        self.ln_f = _norm(cfg)
        if not cfg.tie_embeddings:
            self.lm_head = _linear(cfg, "head", cfg.d_model, cfg.vocab_size, cfg.init_std,
                                   "lm_head")

    def forward(self, idx: torch.Tensor, doc_ids: torch.Tensor | None = None) -> torch.Tensor:
        B, T = idx.shape
        if T > self.cfg.context_len:
            raise UserError(f"sequence length {T} exceeds the model's context_len="
                            f"{self.cfg.context_len}; evaluate with a context <= "
                            f"{self.cfg.context_len}")
        if doc_ids is None:
            pos, seg = torch.arange(T, device=idx.device)[None], None  # (1, T)
        else:
            pos, seg = positions_and_segments(doc_ids)  # (B, T) each
        mask = attention_mask(T, seg, self.cfg.max_context, idx.device)
        x = self.wte(idx)  # (B, T, C)
        if self.cfg.position == "learned":
            x = x + self.wpe(pos)
        x = F.dropout(x, self.cfg.dropout, self.training)
        for block in self.blocks:
            x = block(x, mask, pos)
        x = self.ln_f(x)
        if self.cfg.tie_embeddings:
            return F.linear(x, self.wte.weight)  # (B, T, V)
        return self.lm_head(x)  # (B, T, V)
