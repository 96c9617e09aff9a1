"""Per-token statistics from one logits row (METHOD 1, 2.4 and 3).

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
log-softmax; the reference), `token_stats` (torch, row chunks of a few MB, for the CPU) and
`token_stats_vchunked` (two passes over vocabulary chunks; never materializes a float32 (N, V)
tensor; for large vocabularies on GPUs). `token_stats` reads each chunk of rows once for all
alphas: q = (1 - alpha) p + alpha / V formed in float32 (one log per entry and alpha) into one
reused (rows, A, V) buffer, and the centers from two float32 row sums of one sign each,
`sum_y p_y ln q_y` and `sum_y ln q_y` (`H = -(c1 sum p ln q + c0 sum ln q) / ln 2`,
c1 = 1 - alpha, c0 = alpha / V), combined in float64. Probabilities for the centers and the
top-k masses are `exp(max(ln p, LP_FLOOR))` (no probability moves by more than 5e-38): no
product or sum there is subnormal, so neither speed nor values depend on the CPU's
flush-to-zero mode (which `torch.set_flush_denormal` sets for the calling thread only, and which
scoring therefore no longer uses). Centers only need to be predictable and clipped, not exact
(METHOD 2.4): they are fixed functions of the row, within float32 rounding of the float64
reference; the target's loss `X` is float64 after the fp32 log-softmax.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from tokenbound.bounds.basics import LN2, smoothing
from tokenbound.bounds.grids import ALPHA_GRID, TOPK

#: Bytes of the (rows, alphas, V) float32 work tile of `token_stats` (at least one row): a few
#: MB, so that the passes over a row chunk run from the caches; no (N, V) temporary is made.
CHUNK_BYTES = 2 << 20
#: Floor on ln p (nats) before exponentiating for the centers and top-k masses:
#: exp(-86) / 2 = 2.2e-38 > FLT_MIN, so neither p nor (1 - alpha) p nor p ln q is subnormal.
LP_FLOOR = -86.0
#: The tile on other devices (GPUs): large, so that each kernel launch has enough work.
DEVICE_CHUNK_BYTES = 1 << 28


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
            a, c = smoothing(vocab_size, al)
            lnq = np.logaddexp(math.log1p(-al) + logp, math.log(al / vocab_size))
            out[:, i] = np.clip(-lnq / LN2 - a, 0.0, c)
    return out


def _clip_centers(h_bits: np.ndarray, e_bits: np.ndarray, vocab_size: int, alphas) -> np.ndarray:
    """Centers (N, A, 2) from H(q) and E_p[-log2 q] in bits, each (N, A) float64."""
    out = np.empty(h_bits.shape + (2,))
    for i, al in enumerate(alphas):
        a, c = smoothing(vocab_size, al)
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


def _rank(z: torch.Tensor, targets: torch.Tensor, scratch: torch.Tensor | None = None
          ) -> torch.Tensor:
    """rank(x) (n,) int64: #{y: z_y > z_x} + #{y < x: z_y == z_x}; z (n, V) float32.

    Counts are float32 sums of 0/1 in `scratch` ((n, V) float32; exact below 2^24 entries); the
    tie term is counted only in rows where another entry equals z_x (rare).
    """
    zx = z.gather(1, targets[:, None])  # (n, 1)
    buf = torch.empty_like(z) if scratch is None else scratch
    torch.gt(z, zx, out=buf)
    rank = buf.sum(dim=1).long()
    torch.eq(z, zx, out=buf)
    for r in (buf.sum(dim=1) > 1).nonzero()[:, 0].tolist():
        x = int(targets[r])
        rank[r] += int((z[r, :x] == zx[r, 0]).sum())
    return rank


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


class _Chunk:
    """Reused float32 buffers for up to `rows` rows, and the statistics of one row chunk.

    Rows of the (rows, A, Vp) and (rows, Vp) buffers are padded to Vp, a multiple of 32 floats
    (padding p = 0, contributing exactly 0 to every sum it enters), so that elementwise kernels
    treat every row alike: together with one thread per chunk, a row's numbers depend on the
    row only, not on its position, the chunk size or the number of threads.
    """

    def __init__(self, rows: int, V: int, alphas, device):
        al = np.asarray(alphas, dtype=np.float64)
        Vp = -(-V // 32) * 32
        self.V = V
        self.c1 = torch.tensor(1.0 - al, dtype=torch.float64, device=device)  # (A,)
        self.c0 = torch.tensor(al / V, dtype=torch.float64, device=device)
        self.c1_32 = self.c1.float()[None, :, None]  # (1, A, 1)
        self.c0_32 = self.c0.float()[None, :, None]
        self.z = torch.empty(rows, V, device=device)
        self.lp = torch.empty(rows, V, device=device)
        self.p = torch.zeros(rows, Vp, device=device)
        self.lq = torch.empty(rows, len(al), Vp, device=device)

    def centers(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """H(q), E_p[-log2 q] (k, A) float64 bits of the first k rows of `lp`; fills `p`.

        `H = -(c1 sum_y p_y ln q_y + c0 sum_y ln q_y) / ln 2` (= -sum q log2 q) with
        `c1 = 1 - alpha`, `c0 = alpha / V`: two float32 row sums of terms of one sign each (no
        cancellation), combined in float64.
        """
        V, pv, lq = self.V, self.p[:k, :self.V], self.lq[:k]
        torch.clamp(self.lp[:k], min=LP_FLOOR, out=pv)
        pv.exp_()
        torch.mul(self.p[:k, None, :], self.c1_32, out=lq)
        lq.add_(self.c0_32)  # q = (1 - alpha) p + alpha / V > 0, float32
        lq.log_()
        s_lq = lq[:, :, :V].sum(dim=2, dtype=torch.float32)  # (k, A) sum_y ln q_y
        lq.mul_(self.p[:k, None, :])
        e_nats = lq[:, :, :V].sum(dim=2, dtype=torch.float32).double()  # sum_y p_y ln q_y
        h_nats = self.c1 * e_nats + self.c0 * s_lq.double()
        return -h_nats / LN2, -e_nats / LN2

    def __call__(self, logits: torch.Tensor, targets: torch.Tensor, kmax: int) -> tuple:
        """Statistics of rows (k, V) of any float dtype: ln p(x) (k,), H, E (k, A) float64
        bits, rank (k,) int64, the kmax largest probabilities (k, kmax) descending."""
        k = logits.shape[0]
        z, lp = self.z[:k], self.lp[:k]
        z.copy_(logits)
        torch.log_softmax(z, dim=-1, out=lp)
        logp = lp.gather(1, targets[:, None])[:, 0]
        hq, ep = self.centers(k)
        top = torch.topk(self.p[:k, :self.V], kmax, dim=1).values
        return logp, hq, ep, _rank(z, targets, scratch=lp), top  # lp is free: scratch


def _chunk_rows(V: int, A: int, chunk_bytes: int) -> int:
    """Rows per chunk: the (rows, A, V) float32 tile within `chunk_bytes`, at least one row."""
    return max(1, chunk_bytes // (4 * A * V))


def _run_chunks(logits, targets, n: int, make_chunk, kmax: int, threads: int) -> list:
    """Per-chunk results of rows [r0, r0 + n), in order. On the CPU the chunks are shared out
    to `threads` Python threads, each running torch single-threaded on its own buffers (no
    OpenMP barrier per operation; one thread per chunk whatever `threads`); the caller's torch
    thread count is restored afterwards."""
    starts = list(range(0, logits.shape[0], n))
    if logits.device.type != "cpu":
        with torch.inference_mode():
            chunk = make_chunk()
            return [chunk(logits[r0:r0 + n], targets[r0:r0 + n], kmax) for r0 in starts]
    out, todo, prev = [None] * len(starts), iter(range(len(starts))), torch.get_num_threads()

    def work(_):
        torch.set_num_threads(1)  # this thread's OpenMP setting: ops run inline
        with torch.inference_mode():  # thread-local, like the caller's
            chunk = make_chunk()
            for i in todo:  # next() of a shared iterator: each chunk taken once
                out[i] = chunk(logits[starts[i]:starts[i] + n],
                               targets[starts[i]:starts[i] + n], kmax)

    workers = max(1, min(threads, len(starts)))
    try:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(work, range(workers)))
    finally:
        torch.set_num_threads(prev)  # also resets the process-wide MKL thread count
    return out


def token_stats(logits: torch.Tensor, targets: torch.Tensor, alphas=ALPHA_GRID, topk=TOPK,
                chunk_bytes: int = CHUNK_BYTES, threads: int | None = None) -> TokenStats:
    """Vectorized statistics; logits (N, V) any float dtype/device, targets (N,) int64.

    Rows are processed in chunks of `chunk_bytes` (`_Chunk`; `DEVICE_CHUNK_BYTES` off the CPU):
    each chunk is read once for all alphas into buffers allocated once per thread; on the CPU
    `threads` threads (default: torch's count) share the chunks. The numbers of a row do not
    depend on the chunking or the threads.
    """
    N, V = logits.shape
    if N == 0:
        return _empty(len(alphas), len(topk))
    dev, kmax = logits.device, min(max(topk), V)
    n = _chunk_rows(V, len(alphas), chunk_bytes if dev.type == "cpu" else DEVICE_CHUNK_BYTES)
    parts = _run_chunks(logits, targets.to(dev), n, lambda: _Chunk(n, V, alphas, dev), kmax,
                        torch.get_num_threads() if threads is None else threads)
    logp, hq, ep, rank, top = (torch.cat(x) for x in zip(*parts))
    return _finish(logp, hq, ep, rank, _topmass(top, topk), V, alphas, topk)


def _empty(A: int, K: int) -> TokenStats:
    return TokenStats(np.empty(0), np.empty((0, A)), np.empty((0, A, 2)), np.empty((0, K)),
                      np.empty((0, K)))


def token_stats_vchunked(logits: torch.Tensor, targets: torch.Tensor, alphas=ALPHA_GRID,
                         topk=TOPK, vocab_chunk: int = 8192) -> TokenStats:
    """The statistics of `token_stats` (the same up to float32 rounding of the centers),
    computed over vocabulary chunks (N, Vc).

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
