"""Per-token statistics that read each logits row once, and the GPU scoring helpers (METHOD 6).

The statistics are those of `token_stats` (METHOD 1, 2.4 and 3; see that module): per row
`z` (V,) with target `x`, fp32 `lse = logsumexp(z)`, `ln p(x) = z_x - lse`, the rank of x, the
top-k masses, and for every alpha the two centers in bits,

    H(q)        = -sum_y q_y log2 q_y,      q_y = (1 - alpha) p_y + alpha / V
    E_p[-log2 q] = -sum_y p_y log2 q_y,     p_y = exp(z_y - lse).

Two implementations with the same semantics (same formulas, same pass structure):

* `token_stats_online` (pure PyTorch, any device): pass 1 over vocabulary chunks keeps an
  online (running max, rescaled sum) logsumexp, the rank count and a running top-k merge
  (`torch.topk` per chunk); pass 2 computes the center sums with the final lse. Peak memory is
  (rows, chunk) float32, never (N, V) float32.
* `token_stats_triton` (CUDA): one Triton program per row does both passes over the row
  (the second pass re-reads a row that was just read, normally from L2), with the alphas as
  an (A, BLOCK) tile: per logit one exp and A log2, nothing per alpha goes back to memory. The
  top-k masses come from `torch.topk` on the (bf16) logits. The kernel is verified against
  `token_stats_online` by `benchmarks/gpu_scoring.py` before any timing, and on the CPU by the
  tests through Triton's interpreter (`TRITON_INTERPRET=1`) when triton is installed.

`q` is formed in linear space in fp32 (both terms positive: no cancellation; relative error
~1e-7 even when p underflows, where q = alpha / V exactly as in the reference), so
`log2 q` needs one transcendental per alpha instead of a log-space logaddexp. The target's
loss X and the clipping stay float64 (`token_stats._finish`), as in every path.

Same statistics as the CPU path `token_stats`, not the same bits: that path sums
`sum p ln q` and `sum ln q` per row in float32 and forms H from them in float64; here H and E
are float32 sums of `q log2 q` and `p log2 q` in another order. Both floor the probabilities of
the centers at exp(LP_FLOOR) (`token_stats_online` too: no subnormal arithmetic on the CPU); the
Triton kernel does not (on a GPU subnormals cost nothing), a difference below 5e-38 per entry,
far below the float32 rounding of the sums. Every path is tested against the
float64 reference `token_stats_naive` (centers within float32 rounding); logp, X, ranks and
top-k errors are the same on every path.
"""

from __future__ import annotations

import functools
import logging
import math
import os
from typing import Callable

import torch

from tokenbound.bounds.grids import ALPHA_GRID, TOPK
from tokenbound.evaluation.token_stats import (LP_FLOOR, TokenStats, _empty, _finish,
                                               _topmass, token_stats, token_stats_vchunked)

log = logging.getLogger(__name__)

STATS = ("auto", "torch", "fused")
NEG_INF = float("-inf")


# ---- pure PyTorch: the kernel's semantics ----------------------------------------------------
def _online_pass1(z_rows: torch.Tensor, t: torch.Tensor, zx: torch.Tensor, kmax: int,
                  vocab_chunk: int):
    """Pass 1 over vocabulary chunks of rows (n, V): lse (n,), rank (n,), top values (n, kmax)."""
    n, V = z_rows.shape
    m = torch.full((n,), NEG_INF, device=z_rows.device)  # running max
    s = torch.zeros(n, device=z_rows.device)  # sum exp(z - m)
    rank = torch.zeros(n, dtype=torch.int64, device=z_rows.device)
    top = None
    for v0 in range(0, V, vocab_chunk):
        z = z_rows[:, v0:v0 + vocab_chunk].float()  # (n, Vc)
        m_new = torch.maximum(m, z.amax(dim=1))
        m_safe = torch.where(torch.isinf(m_new), torch.zeros_like(m_new), m_new)
        s = s * torch.exp(m - m_safe) + torch.exp(z - m_safe[:, None]).sum(dim=1)
        m = m_new
        ids = torch.arange(v0, v0 + z.shape[1], device=z.device)[None, :]
        rank += ((z > zx[:, None]) | ((z == zx[:, None]) & (ids < t[:, None]))).sum(dim=1)
        cand = z if top is None else torch.cat([top, z], dim=1)
        top = torch.topk(cand, min(kmax, cand.shape[1]), dim=1).values  # (n, <=kmax)
    return m + torch.log(s), rank, top


def _center_sums(z_rows: torch.Tensor, lse: torch.Tensor, alphas, vocab_chunk: int):
    """Pass 2: H(q) and E_p[-log2 q] in bits, each (n, A) float32, q formed in linear space."""
    n, V = z_rows.shape
    hq = torch.zeros(n, len(alphas), device=z_rows.device)
    ep = torch.zeros_like(hq)
    for v0 in range(0, V, vocab_chunk):
        lp = z_rows[:, v0:v0 + vocab_chunk].float() - lse[:, None]  # (n, Vc)
        p = torch.exp(lp.clamp_(min=LP_FLOOR))  # as token_stats: no subnormal p
        for i, al in enumerate(alphas):
            q = (1.0 - al) * p + al / V  # (n, Vc), > 0
            l2 = torch.log2(q)
            hq[:, i] -= (q * l2).sum(dim=1)
            ep[:, i] -= (p * l2).sum(dim=1)
    return hq, ep


def token_stats_online(logits: torch.Tensor, targets: torch.Tensor, alphas=ALPHA_GRID,
                       topk=TOPK, vocab_chunk: int = 8192, row_chunk: int = 4096) -> TokenStats:
    """The fused kernel's semantics in PyTorch; logits (N, V) any float dtype/device, targets
    (N,) int64. Works on (row_chunk, vocab_chunk) float32 tiles only."""
    N, V = logits.shape
    if N == 0:
        return _empty(len(alphas), len(topk))
    t_all = targets.to(logits.device)
    kmax = min(max(topk), V)
    parts = []
    for r0 in range(0, N, row_chunk):
        z_rows, t = logits[r0:r0 + row_chunk], t_all[r0:r0 + row_chunk]  # (n, V), (n,)
        zx = z_rows.gather(1, t[:, None])[:, 0].float()  # (n,)
        lse, rank, top = _online_pass1(z_rows, t, zx, kmax, vocab_chunk)
        hq, ep = _center_sums(z_rows, lse, alphas, vocab_chunk)
        parts.append(_finish(zx - lse, hq, ep, rank, _topmass((top - lse[:, None]).exp(), topk),
                             V, alphas, topk))
    return TokenStats.concat(parts)


# ---- Triton (CUDA) ---------------------------------------------------------------------------
def triton_available() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


@functools.lru_cache(maxsize=2)
def _kernel(interpret: bool):
    """Build the Triton kernel (lazily: triton is only imported here). `interpret` keys the
    cache: under TRITON_INTERPRET=1 triton.jit builds an interpreted (CPU) function."""
    import triton
    import triton.language as tl

    @triton.jit
    def row_stats(z_ptr, t_ptr, c1_ptr, c0_ptr, lse_ptr, zx_ptr, rank_ptr, hq_ptr, ep_ptr,
                  V, stride, A: tl.constexpr, BLOCK: tl.constexpr):
        # one program per row; c1 = 1 - alpha, c0 = alpha / V (A,), padded with (0, 1): q = 1
        row = tl.program_id(0).to(tl.int64)
        base = z_ptr + row * stride
        t = tl.load(t_ptr + row)
        zx = tl.load(base + t).to(tl.float32)
        offs = tl.arange(0, BLOCK)
        m = tl.max(tl.full((BLOCK,), float("-inf"), tl.float32), axis=0)  # scalar -inf
        s = tl.sum(tl.zeros((BLOCK,), tl.float32), axis=0)
        cnt = tl.zeros((BLOCK,), tl.int32)
        for v0 in range(0, V, BLOCK):  # pass 1: online logsumexp and rank
            cols = v0 + offs
            mask = cols < V
            z = tl.load(base + cols, mask=mask, other=float("-inf")).to(tl.float32)
            m_new = tl.maximum(m, tl.max(z, axis=0))
            m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
            s = s * tl.exp(m - m_safe) + tl.sum(tl.exp(z - m_safe), axis=0)
            m = m_new
            ahead = (z > zx) | ((z == zx) & (cols < t))
            cnt += (ahead & mask).to(tl.int32)
        lse = m + tl.log(s)
        arange_a = tl.arange(0, A)
        c1 = tl.load(c1_ptr + arange_a)[:, None]  # (A, 1)
        c0 = tl.load(c0_ptr + arange_a)[:, None]
        hq = tl.zeros((A,), tl.float32)
        ep = tl.zeros((A,), tl.float32)
        for v0 in range(0, V, BLOCK):  # pass 2: center sums with the final lse
            cols = v0 + offs
            mask = cols < V
            z = tl.load(base + cols, mask=mask, other=float("-inf")).to(tl.float32)
            p = tl.exp(z - lse)[None, :]  # (1, BLOCK); 0 at masked columns
            q = c1 * p + c0  # (A, BLOCK)
            l2 = tl.log2(q)
            hq -= tl.sum(tl.where(mask[None, :], q * l2, 0.0), axis=1)
            ep -= tl.sum(p * l2, axis=1)
        tl.store(lse_ptr + row, lse)
        tl.store(zx_ptr + row, zx)
        tl.store(rank_ptr + row, tl.sum(cnt, axis=0).to(tl.int64))
        tl.store(hq_ptr + row * A + arange_a, hq)
        tl.store(ep_ptr + row * A + arange_a, ep)

    return row_stats


def _alpha_consts(alphas, V: int, device) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(1 - alpha, alpha / V) float32 padded to a power of two A with (0, 1), and A."""
    A = 1 << max(0, math.ceil(math.log2(len(alphas))))
    c1 = torch.zeros(A)
    c0 = torch.ones(A)
    c1[:len(alphas)] = torch.tensor([1.0 - al for al in alphas], dtype=torch.float64).float()
    c0[:len(alphas)] = torch.tensor([al / V for al in alphas], dtype=torch.float64).float()
    return c1.to(device), c0.to(device), A


def token_stats_triton(logits: torch.Tensor, targets: torch.Tensor, alphas=ALPHA_GRID,
                       topk=TOPK, block: int = 1024, num_warps: int = 8) -> TokenStats:
    """The fused kernel (CUDA, or CPU under TRITON_INTERPRET=1); logits (N, V), targets (N,)."""
    N, V = logits.shape
    if N == 0:
        return _empty(len(alphas), len(topk))
    if not (logits.is_cuda or _interpreting()):
        raise ValueError("token_stats_triton needs CUDA tensors (or TRITON_INTERPRET=1)")
    z = logits if logits.stride(1) == 1 else logits.contiguous()
    dev = z.device
    t = targets.to(dev, torch.int64).contiguous()
    c1, c0, A = _alpha_consts(alphas, V, dev)
    lse, zx = torch.empty(N, device=dev), torch.empty(N, device=dev)
    rank = torch.empty(N, dtype=torch.int64, device=dev)
    hq, ep = torch.empty(N, A, device=dev), torch.empty(N, A, device=dev)
    extra = {} if _interpreting() else {"num_warps": num_warps}
    _kernel(_interpreting())[(N,)](z, t, c1, c0, lse, zx, rank, hq, ep, V, z.stride(0),
                                   A=A, BLOCK=block, **extra)
    top = torch.topk(z, min(max(topk), V), dim=1).values.float()  # (N, kmax) descending
    return _finish(zx - lse, hq[:, :len(alphas)], ep[:, :len(alphas)], rank,
                   _topmass((top - lse[:, None]).exp(), topk), V, alphas, topk)


def token_stats_fused(logits: torch.Tensor, targets: torch.Tensor, alphas=ALPHA_GRID,
                      topk=TOPK) -> TokenStats:
    """Triton kernel on CUDA when triton imports (also on the CPU under TRITON_INTERPRET=1, so
    that the tests can run the whole scoring path through the kernel's code); otherwise
    `token_stats_online` (same values)."""
    if (logits.is_cuda or _interpreting()) and triton_available():
        return token_stats_triton(logits, targets, alphas, topk)
    return token_stats_online(logits, targets, alphas, topk)


def stats_fn(stats: str, on_cuda: bool, vocab_chunk: int | None) -> Callable[..., TokenStats]:
    """The per-token statistics function for logits rows: "torch" is the CPU default path
    (`token_stats`, or `token_stats_vchunked` with a vocab chunk); "fused" is
    `token_stats_fused`; "auto" is "fused" on CUDA and "torch" elsewhere."""
    if stats not in STATS:
        raise ValueError(f"stats must be one of {STATS} (got {stats!r})")
    if stats == "fused" or (stats == "auto" and on_cuda):
        return token_stats_fused
    if vocab_chunk:
        return functools.partial(token_stats_vchunked, vocab_chunk=vocab_chunk)
    return token_stats


# ---- GPU scoring helpers: batch size that fills memory, torch.compile ------------------------
def _is_oom(err: BaseException) -> bool:
    return isinstance(err, torch.OutOfMemoryError) or "out of memory" in str(err).lower()


def auto_batch_size(probe: Callable[[int], None], max_batch: int) -> int:
    """Largest B in 1, 2, 4, ..., max_batch for which `probe(B)` runs without running out
    of memory (doubling search; CUDA caches are freed after a failure). UserError if B = 1
    does not fit."""
    best, b, max_batch = 0, 1, max(1, int(max_batch))
    while best < max_batch:
        try:
            probe(b)
        except (torch.OutOfMemoryError, RuntimeError) as err:
            if not _is_oom(err):
                raise
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            break
        best, b = b, min(2 * b, max_batch)
    if best == 0:
        from tokenbound.errors import UserError

        raise UserError("one window does not fit in device memory; use a shorter --context "
                        "or --dtype bf16")
    log.info("--batch-size auto: %d windows per forward pass", best)
    return best


def scoring_probe(model_fn: Callable, context_len: int, device: str, stats: str,
                  vocab_chunk: int | None) -> Callable[[int], None]:
    """probe(B): one forward pass of B windows of `context_len` tokens plus the statistics of
    all B * context_len rows (the peak memory of a scoring batch)."""
    def probe(b: int) -> None:
        with torch.inference_mode():
            logits = model_fn(torch.zeros(b, context_len, dtype=torch.int64, device=device))
            rows = logits.reshape(-1, logits.shape[-1])  # (B * T, V)
            fn = stats_fn(stats, rows.is_cuda, vocab_chunk)
            fn(rows, torch.zeros(rows.shape[0], dtype=torch.int64, device=rows.device))
            del logits, rows
        if torch.cuda.is_available():
            torch.cuda.synchronize()
    return probe


def compile_fn(fn: Callable, backend: str = "inductor") -> Callable:
    """`torch.compile(fn)` for the scoring forward pass. Shapes change only with the window
    length (full windows share one graph; short final windows recompile, then go dynamic).
    The compiled model is the same predictor up to floating-point reassociation."""
    return torch.compile(fn, backend=backend)
