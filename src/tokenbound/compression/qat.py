"""Quantization-aware fine-tuning with a straight-through estimator and learnable centroids.

As in Lotfi et al. (ICML 2024, "SubLoRA", QAT of the quantized parameters): the forward pass
uses `w = c[s]` with `s = argmin_k |v - c_k|` (nearest centroid of the latent float value `v`);
the backward pass gives `v` the gradient of `w` unchanged (straight through) and each centroid
`c_k` the sum of its members' gradients. Implemented as `w = lookup(c, s) + (v - v.detach())`: its
value is exactly `c[s]`, its gradient is as stated. `lookup` is `c[s]` with its own backward: the
member gradients are summed in float64, in index order, by `np.bincount` (then rounded to the
centroid's dtype), because torch's backward of `c[s]` (an index_put with accumulate) adds them
with atomic float32 additions across threads on the CPU, whose order (hence last bits) changes
from run to run with more than one thread: the message would not be reproducible. The optimizer over latents and centroids is SGD
with momentum 0.9 (default) or Adam. Adam's per-coordinate step of about `lr` suits a long-trained
model whose coordinates sit in narrow bins: on the 6,500-step Shakespeare subspace model, SGD at
lr 0.01 recovered 0.01 of the 0.084 bits/byte a 65-level uniform codebook cost and Adam at lr 1e-3
recovered 0.06 (docs/RESULTS.md, the standing target).

Afterwards the centroids are rounded to float16, every latent takes its nearest float16
centroid, and the model's weights are set to those values: the returned state is what the
message stores and what is evaluated.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call
from tqdm import tqdm

from tokenbound.bounds.basics import LN2
from tokenbound.compression.adapters import builder_for
from tokenbound.compression.quantize import (QuantGroup, QuantizedState, _to_fp16, dequantized,
                                             nearest)

log = logging.getLogger(__name__)


def _param_names(model, state: dict) -> dict:
    """trained_state name -> named_parameters name (matched by storage identity)."""
    by_ptr = {p.data_ptr(): n for n, p in model.named_parameters()}
    out = {}
    for name, t in state.items():
        if t.data_ptr() not in by_ptr:
            raise ValueError(f"QAT needs trained_state()[{name!r}] to be a model parameter")
        out[name] = by_ptr[t.data_ptr()]
    return out


class _Lookup(torch.autograd.Function):
    """`c[s]` for centroids `c` (L,) and symbols `s` (n,) int64, whose backward sums each
    centroid's member gradients in a fixed order (float64, index order): the same bits on any
    thread count and any CPU."""

    @staticmethod
    def forward(ctx, c: torch.Tensor, sym: torch.Tensor) -> torch.Tensor:  # -> (n,)
        ctx.save_for_backward(sym)
        ctx.levels = c.shape[0]
        return c[sym]

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # grad (n,) -> (L,), None
        (sym,) = ctx.saved_tensors
        sums = np.bincount(sym.cpu().numpy(), weights=grad.detach().cpu().double().numpy(),
                           minlength=ctx.levels)  # (L,) float64, summed in index order
        return torch.from_numpy(sums).to(device=grad.device, dtype=grad.dtype), None


def codebook_lookup(c: torch.Tensor, sym: torch.Tensor) -> torch.Tensor:
    """`c[sym]` with a deterministic backward (see `_Lookup`)."""
    return _Lookup.apply(c, sym)


def _ste_weights(groups, latents, centroids, shapes) -> dict:
    """{trained name: STE tensor} for all quantized tensors (value = centroid[nearest])."""
    out = {}
    for g, v, c in zip(groups, latents, centroids):
        with torch.no_grad():
            sym = torch.from_numpy(nearest(v.detach().cpu().double().numpy(),
                                           c.detach().cpu().double().numpy())).to(v.device)
        w = codebook_lookup(c, sym) + (v - v.detach())  # (n_g,)
        pos = 0
        for name in g.names:
            n = int(np.prod(shapes[name]))
            out[name] = w[pos:pos + n].reshape(shapes[name])
            pos += n
    return out


QAT_OPTIMIZERS = ("sgd", "adam")


def qat_finetune(model, qstate: QuantizedState, batches, steps: int, lr: float,
                 momentum: float = 0.9, ignore_index: int = -100,
                 optimizer: str = "sgd", progress: bool | None = None) -> QuantizedState:
    """Fine-tune latents and centroids for `steps` batches `(x, y[, doc_ids])` (B, T) int64.

    Loss: mean next-token cross entropy of `model(x, doc_ids=doc_ids)` (B, T, V) against `y`
    (targets equal to `ignore_index` skipped; `doc_ids` passed only when the batch has them,
    as `tokenbound.training.batch_iterator` yields). `optimizer`: "sgd" (momentum `momentum`)
    or "adam" (torch defaults besides `lr`). `progress`: a progress bar (None: only when
    stderr is a terminal). Returns the new
    QuantizedState (float16 centroids, nearest-centroid symbols); the model's weights are set
    to it in place.
    """
    builder = builder_for(model)
    state = builder.trained_state(model)
    pnames = _param_names(model, state)
    shapes = {n: tuple(t.shape) for n, t in state.items()}
    device = next(iter(state.values())).device
    latents = [torch.tensor(g.latent if g.latent is not None else
                            g.codebook.astype(np.float32)[g.symbols], device=device,
                            requires_grad=True) for g in qstate.groups]
    centroids = [torch.tensor(g.codebook.astype(np.float32), device=device, requires_grad=True)
                 for g in qstate.groups]
    if optimizer == "sgd":
        opt = torch.optim.SGD(latents + centroids, lr=lr, momentum=momentum)
    elif optimizer == "adam":
        opt = torch.optim.Adam(latents + centroids, lr=lr)
    else:
        raise ValueError(f"QAT optimizer must be one of {QAT_OPTIMIZERS} (got {optimizer!r})")
    fixed = {pnames[n]: t.detach() for n, t in state.items() if n in set(qstate.raw_names)}
    model.train()
    it = iter(batches)
    bar = tqdm(total=steps, desc="qat", unit="step", disable=None if progress is None
               else not progress)
    for step in range(steps):
        batch = [t.to(device) for t in next(it)]
        x, y = batch[:2]
        kwargs = {"doc_ids": batch[2]} if len(batch) > 2 else {}
        weights = _ste_weights(qstate.groups, latents, centroids, shapes)
        params = {**fixed, **{pnames[n]: w for n, w in weights.items()}}
        logits = functional_call(model, params, (x,), kwargs)  # (B, T, V)
        loss = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), y.reshape(-1),
                               ignore_index=ignore_index)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        nats = loss.item()
        log.info("qat step %d/%d loss %.4f nats", step + 1, steps, nats)
        bar.update(1)
        bar.set_postfix(loss=f"{nats / LN2:.3f}b")
    bar.close()
    model.eval()
    return _finalize(model, builder, qstate, latents, centroids)


def _finalize(model, builder, qstate, latents, centroids) -> QuantizedState:
    state = {n: t.detach().cpu() for n, t in builder.trained_state(model).items()}
    groups = []
    for g, v, c in zip(qstate.groups, latents, centroids):
        cb = _to_fp16(c.detach().cpu().double().numpy())
        lat = v.detach().cpu().numpy().astype(np.float32)
        groups.append(QuantGroup(g.names, cb, nearest(lat.astype(np.float64), cb), lat))
    new_state = dict(state)
    for g in groups:
        new_state.update(dequantized(g, state))
    builder.load_trained_state(model, new_state)
    return QuantizedState(qstate.config, groups, qstate.raw_names)
