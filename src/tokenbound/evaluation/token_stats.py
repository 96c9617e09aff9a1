"""Per-token statistics from one logits row (DESIGN 1, 2.4 and 3).

For a logits row `z` (V,) and its target `x`, with `log p = log_softmax(z)` computed in float32
(even when the model ran in bf16) and everything after it in float64 where it is per token:

* `logp`: ln p(x), nats (may be -inf if the model puts exactly zero mass on x).
* for each alpha of the grid, `q = (1 - alpha) p + alpha / V`:
  `l = -log2 q(x)` via `logaddexp(ln(1 - alpha) + ln p(x), ln(alpha / V)) / ln 2` (no
  clamping), `X = clip(l - a, 0, c)` with `a = -log2(1 - alpha + alpha / V)`,
  `c = log2(1 + (1 - alpha) V / alpha)`;
* centers (predictable: they use the row, never x), clipped to [0, c]:
  "entropy" `clip(H(q) - a, 0, c)`, H in bits; "expected" `clip(E_{y~p}[-log2 q(y)] - a, 0, c)`;
* for each k of TOPK: `err = 1[rank(x) >= k]` with
  `rank(x) = #{y : z_y > z_x} + #{y < x : z_y == z_x}` (ties broken by token id: among equal
  logits the smaller id ranks first) and center `= clip(1 - (p-mass of the k most probable
  tokens), 0, 1)` (tie-invariant: tied tokens carry equal mass). For k >= V, err = center = 0.

Three implementations: `token_stats_naive` (Python loop over rows, float64 numpy after the fp32
log-softmax; the reference), `token_stats` (vectorized torch, row chunks) and
`token_stats_vchunked` (two passes over vocabulary chunks; never materializes a float32 (N, V)
tensor; for large vocabularies on GPUs). The full-vocabulary sums of the centers are float32
elementwise with float32 reductions in the fast paths: centers only need to be predictable and
clipped, not exact (DESIGN 2.4); the target's loss `X` is float64 after the fp32 log-softmax.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from tokenbound.bounds.grids import ALPHA_GRID, TOPK

LN2 = math.log(2.0)


def smoothing_range(alpha: float, vocab_size: int) -> tuple[float, float]:
    """(a, c) of DESIGN 1 in bits: l = -log2 q lies in [a, a + c]."""
    a = -math.log2(1.0 - alpha + alpha / vocab_size)
    c = math.log2(1.0 + (1.0 - alpha) * vocab_size / alpha)
    return a, c


@dataclass
class TokenStats:
    """Per-token arrays (N tokens, A alphas, C = 2 centers, K top-k values), float64.

    logp (N,) nats; x (N, A) = X in [0, c]; center (N, A, C) in [0, c];
    topk_err (N, K) in {0, 1}; topk_center (N, K) in [0, 1].
    """

    logp: np.ndarray
    x: np.ndarray
    center: np.ndarray
    topk_err: np.ndarray
    topk_center: np.ndarray

    @staticmethod
    def concat(parts: list["TokenStats"]) -> "TokenStats":
        return TokenStats(*(np.concatenate([getattr(p, f) for p in parts])
                            for f in ("logp", "x", "center", "topk_err", "topk_center")))


def _x_from_logp(logp: np.ndarray, vocab_size: int, alphas) -> np.ndarray:
    """X (N, A) float64 from ln p(x) (N,) float64: clip(-log2 q(x) - a, 0, c)."""
    out = np.empty((logp.shape[0], len(alphas)))
    with np.errstate(divide="ignore"):
        for i, al in enumerate(alphas):
            a, c = smoothing_range(al, vocab_size)
            lnq = np.logaddexp(math.log1p(-al) + logp, math.log(al / vocab_size))
            out[:, i] = np.clip(-lnq / LN2 - a, 0.0, c)
    return out


def _clip_centers(h_bits: np.ndarray, e_bits: np.ndarray, vocab_size: int, alphas) -> np.ndarray:
    """Centers (N, A, 2) from H(q) and E_p[-log2 q] in bits, each (N, A) float64."""
    out = np.empty(h_bits.shape + (2,))
    for i, al in enumerate(alphas):
        a, c = smoothing_range(al, vocab_size)
        out[:, i, 0] = np.clip(h_bits[:, i] - a, 0.0, c)
        out[:, i, 1] = np.clip(e_bits[:, i] - a, 0.0, c)
    return out


def token_stats_naive(logits: torch.Tensor, targets: torch.Tensor, alphas=ALPHA_GRID,
                      topk=TOPK) -> TokenStats:
    """Reference: one row at a time, float64 numpy after the fp32 log-softmax.

    logits: (N, V) any float dtype; targets: (N,) int64.
    """
    N, V = logits.shape
    logp_all = torch.log_softmax(logits.float(), dim=-1).double().numpy()  # (N, V)
    z = logits.float().numpy()  # (N, V)
    logp, hq, ep = np.empty(N), np.empty((N, len(alphas))), np.empty((N, len(alphas)))
    err, tc = np.empty((N, len(topk))), np.empty((N, len(topk)))
    for r in range(N):
        x, lp = int(targets[r]), logp_all[r]
        logp[r] = lp[x]
        p = np.exp(lp)
        for i, al in enumerate(alphas):
            q = (1 - al) * p + al / V
            hq[r, i] = -np.sum(q * np.log2(q))
            ep[r, i] = -np.sum(p * np.log2(q))
        rank = sum(1 for y in range(V) if z[r, y] > z[r, x] or (z[r, y] == z[r, x] and y < x))
        order = sorted(range(V), key=lambda y: (-z[r, y], y))
        for i, k in enumerate(topk):
            err[r, i] = float(rank >= k)
            mass_out = 0.0 if k >= V else 1.0 - sum(p[y] for y in order[:k])
            tc[r, i] = min(1.0, max(0.0, mass_out))
    return TokenStats(logp, _x_from_logp(logp, V, alphas),
                      _clip_centers(hq, ep, V, alphas), err, tc)


def _rank(z: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """rank(x) (N,) int64: #{y: z_y > z_x} + #{y < x: z_y == z_x}; z (N, V) float32."""
    zx = z.gather(1, targets[:, None])  # (N, 1)
    ids = torch.arange(z.shape[1], device=z.device)[None, :]  # (1, V)
    ahead = (z > zx) | ((z == zx) & (ids < targets[:, None]))  # (N, V)
    return ahead.sum(dim=1)


def _finish(logp_x, hq, ep, rank, topmass, V, alphas, topk) -> TokenStats:
    """Assemble TokenStats from torch pieces: (N,), (N,A), (N,A), (N,), (N,K)."""
    logp = logp_x.double().cpu().numpy()
    r = rank.cpu().numpy()
    err = np.stack([(r >= k) for k in topk], axis=1).astype(np.float64)  # (N, K)
    tc = np.clip(1.0 - topmass.double().cpu().numpy(), 0.0, 1.0)  # (N, K)
    for i, k in enumerate(topk):
        if k >= V:
            tc[:, i] = 0.0
    return TokenStats(logp, _x_from_logp(logp, V, alphas),
                      _clip_centers(hq.double().cpu().numpy(), ep.double().cpu().numpy(), V,
                                    alphas), err, tc)


def _topmass(p_sorted_top: torch.Tensor, topk) -> torch.Tensor:
    """(N, K) mass of the k most probable tokens from (N, kmax) descending probabilities."""
    cs = p_sorted_top.double().cumsum(dim=1)  # (N, kmax)
    kmax = cs.shape[1]
    return torch.stack([cs[:, min(k, kmax) - 1] for k in topk], dim=1)


def token_stats(logits: torch.Tensor, targets: torch.Tensor, alphas=ALPHA_GRID, topk=TOPK,
                row_chunk: int = 1024) -> TokenStats:
    """Vectorized statistics; logits (N, V) any float dtype/device, targets (N,) int64."""
    N, V = logits.shape
    parts = []
    for r0 in range(0, N, row_chunk):
        z = logits[r0:r0 + row_chunk].float()  # (n, V) fp32
        t = targets[r0:r0 + row_chunk].to(z.device)
        lp = torch.log_softmax(z, dim=-1)  # (n, V) fp32
        p = lp.exp()
        hq, ep = [], []
        for al in alphas:
            # centers only need to be predictable (DESIGN 2.4): q formed directly in fp32 (one
            # log per entry, ~3x cheaper than logaddexp); the target's X stays exact (float64)
            q = p * (1.0 - al) + al / V  # (n, V) fp32, >= al / V > 0
            lq = torch.log(q)  # (n, V)
            hq.append(-(q * lq).sum(dim=1) / LN2)
            ep.append(-(p * lq).sum(dim=1) / LN2)
        top = torch.topk(p, min(max(topk), V), dim=1).values  # (n, kmax) descending
        parts.append(_finish(lp.gather(1, t[:, None])[:, 0], torch.stack(hq, 1),
                             torch.stack(ep, 1), _rank(z, t), _topmass(top, topk), V, alphas,
                             topk))
    return TokenStats.concat(parts) if parts else _empty(len(alphas), len(topk))


def _empty(A: int, K: int) -> TokenStats:
    return TokenStats(np.empty(0), np.empty((0, A)), np.empty((0, A, 2)), np.empty((0, K)),
                      np.empty((0, K)))


def token_stats_vchunked(logits: torch.Tensor, targets: torch.Tensor, alphas=ALPHA_GRID,
                         topk=TOPK, vocab_chunk: int = 8192) -> TokenStats:
    """Same values as `token_stats`, computed over vocabulary chunks (N, Vc).

    Pass 1: logsumexp, rank counts and running top-k values per chunk; pass 2: the center
    sums. No float32 (N, V) tensor is created (the input may be bf16).
    """
    N, V = logits.shape
    if N == 0:
        return _empty(len(alphas), len(topk))
    t = targets.to(logits.device)
    zx = logits.gather(1, t[:, None]).float()  # (N, 1)
    kmax = min(max(topk), V)
    lse_parts, rank, top = [], torch.zeros(N, dtype=torch.int64, device=logits.device), None
    for v0 in range(0, V, vocab_chunk):
        z = logits[:, v0:v0 + vocab_chunk].float()  # (N, Vc)
        lse_parts.append(torch.logsumexp(z, dim=1))
        ids = torch.arange(v0, v0 + z.shape[1], device=z.device)[None, :]
        rank += ((z > zx) | ((z == zx) & (ids < t[:, None]))).sum(dim=1)
        cand = z if top is None else torch.cat([top, z], dim=1)
        top = torch.topk(cand, min(kmax, cand.shape[1]), dim=1).values  # (N, <=kmax)
    lse = torch.logsumexp(torch.stack(lse_parts, 1), dim=1)[:, None]  # (N, 1)
    hq = torch.zeros(N, len(alphas), device=logits.device)
    ep = torch.zeros_like(hq)
    for v0 in range(0, V, vocab_chunk):
        lp = logits[:, v0:v0 + vocab_chunk].float() - lse  # (N, Vc)
        p = lp.exp()
        for i, al in enumerate(alphas):
            lq = torch.logaddexp(lp + math.log1p(-al),
                                 torch.tensor(math.log(al / V), device=lp.device))
            hq[:, i] -= (lq.exp() * lq).sum(dim=1) / LN2
            ep[:, i] -= (p * lq).sum(dim=1) / LN2
    return _finish((zx - lse)[:, 0], hq, ep, rank, _topmass((top - lse).exp(), topk), V,
                   alphas, topk)
