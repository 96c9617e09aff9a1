"""The evaluation run: windows -> fixed shards -> WindowStats on disk, resumable (METHOD 3, 6).

Layout of OUT:

    manifest.json          what is evaluated (stream sha256, model id and sha256, L, s, mode,
                           n, seed, dtype, grids, shard size); a rerun must match it exactly
    shards/shard_000123.npz  WindowStats of one shard (atomic write), stamped with the
                           evaluation's identity (`shards.py`); finished shards are skipped
    stats.npz              all shards merged in shard order (deterministic)
    eval.json              manifest + totals + timing (tokens/s)
    .tokenbound.lock       while a process writes OUT (`fileio.dir_lock`): one writer at a time

The scored window list is the full list (exact mode) or the distinct windows of the sampled
positions (sampled mode, `sampling.draw_windows`), ascending; it is cut into shards of
`shard_windows` consecutive windows. With `world > 1` (torchrun), rank r scores the shards
`perm[r::world]` of a seeded permutation; rank 0 merges after a barrier (OUT must be shared).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import platform
import time
from dataclasses import asdict
from typing import Callable

import numpy as np

from tokenbound.bounds.grids import ALPHA_GRID, BETTING_LAMBDAS, CENTERS, TOPK
from tokenbound.errors import OutDirMismatch, UserError
from tokenbound.evaluation import export as tok_export
from tokenbound.evaluation.config import EvalConfig
from tokenbound.evaluation.estimate import Estimate, estimate, timed_batches
from tokenbound.evaluation.fused import auto_batch_size, compile_fn, scoring_probe
from tokenbound.evaluation.sampling import SHARD_STREAM, draw_windows
from tokenbound.evaluation.scoring import score_windows
from tokenbound.evaluation.shards import (count_numerics, eval_identity, jsonable,
                                          load_shards, manifest_identity, read_result_json,
                                          shard_done, shard_path)
from tokenbound.evaluation.sources import ModelSource
from tokenbound.evaluation.stats import WindowStats, stats_meta
from tokenbound.evaluation.tokenizer_check import check_tokenizer
from tokenbound.evaluation.windows import make_windows
from tokenbound.fileio import atomic_write_json, dir_lock

log = logging.getLogger(__name__)

def stream_sha256(stream) -> str:
    sha = getattr(stream, "sha256", None)
    if sha:
        return str(sha)
    return hashlib.sha256(np.ascontiguousarray(stream.tokens).tobytes()).hexdigest()


def check_tokens(stream) -> None:
    """UserError if the stream holds no tokens (nothing to score, no bound to state)."""
    if len(stream.tokens) == 0:
        where = getattr(stream, "path", None)
        raise UserError(f"the token stream{f' {where}' if where else ''} has no tokens; "
                        "evaluate a non-empty stream (e.g. DATA/train, or prepare the "
                        "corpus with a larger held-out fraction)")


def check_vocab(stream, model: ModelSource) -> None:
    """UserError unless every token id and start_id is < the model's vocabulary size."""
    tokens = np.asarray(stream.tokens)
    top = int(tokens.max()) if tokens.size else -1
    top = max(top, int(stream.start_id))
    if top >= model.vocab_size:
        raise UserError(f"token id {top} in the data is >= the model's vocabulary size "
                        f"{model.vocab_size}; use a model trained with the stream's tokenizer")


def build_manifest(stream, model: ModelSource, cfg: EvalConfig) -> dict:
    prior = getattr(stream, "meta", {}).get("prior_split")  # a part of a prior split (data/split.py)
    man = {
        "stream_sha256": stream_sha256(stream), "stream_identity": stream_identity(stream),
        "n_tokens": int(len(stream.tokens)),
        "n_docs": int(len(stream.doc_offsets) - 1), "start_id": int(stream.start_id),
        "eot_id": getattr(stream, "eot_id", None),
        "tokenizer": getattr(stream, "meta", {}).get("tokenizer"),
        "model": dict(model.ident), "vocab_size": int(model.vocab_size),
        "context_len": cfg.context_len, "stride": cfg.stride, "mode": cfg.mode,
        "n_samples": cfg.n_samples, "seed": cfg.seed if cfg.mode == "sampled" else None,
        "dtype": cfg.dtype, "shard_windows": cfg.shard_windows,
        "grids": {"alphas": list(ALPHA_GRID), "topk": list(TOPK), "centers": list(CENTERS),
                  "betting_lambdas": [float(x) for x in BETTING_LAMBDAS]},
    }
    return man | ({"prior_split": prior} if prior else {})


def stream_identity(stream) -> str:
    """`TokenStream.identity` (tokens, boundaries, tokenizer); for other stream objects a hash
    of the tokens and the document offsets."""
    ident = getattr(stream, "identity", None)
    if ident:
        return str(ident)
    h = hashlib.sha256(np.ascontiguousarray(stream.tokens).tobytes())
    h.update(np.ascontiguousarray(np.asarray(stream.doc_offsets, dtype=np.int64)).tobytes())
    return h.hexdigest()


def check_or_write_manifest(out_dir: str, manifest: dict, write: bool = True) -> None:
    """UserError if OUT holds a different evaluation; otherwise (re)write manifest.json."""
    path = os.path.join(out_dir, "manifest.json")
    if os.path.exists(path):
        try:
            with open(path) as f:
                old = json.load(f)
            manifest_identity(old)
        except (ValueError, UnicodeDecodeError, KeyError, TypeError, AttributeError):
            raise UserError(f"{path} is damaged; delete it and rerun the same command (each "
                            "shard records what made it, so finished shards are still "
                            "checked and reused)") from None
        new = json.loads(json.dumps(manifest, default=jsonable))
        was, now = manifest_identity(old), manifest_identity(new, old)
        if was != now:
            diff = sorted(k for k in set(was) | set(now) if was.get(k) != now.get(k))
            raise OutDirMismatch(f"--out {out_dir} holds a different evaluation (differs in "
                                 f"{', '.join(diff)}); use a new --out directory", diff)
    elif write:
        os.makedirs(os.path.join(out_dir, "shards"), exist_ok=True)
        atomic_write_json(path, manifest, indent=1, sort_keys=True, default=jsonable)


def plan(stream, cfg: EvalConfig):
    """(windows, scored window ids ascending, draws or None, list of shards (id arrays))."""
    windows = make_windows(stream.doc_offsets, cfg.context_len, cfg.stride)
    draws = None
    if cfg.mode == "sampled":
        draws = draw_windows(cfg.n_samples, stream.doc_offsets, cfg.context_len, cfg.stride,
                             cfg.seed)
        idx = np.unique(draws)
    else:
        idx = np.arange(len(windows), dtype=np.int64)
    k = cfg.shard_windows
    return windows, idx, draws, [idx[i:i + k] for i in range(0, idx.size, k)]


def rank_shards(n_shards: int, seed: int, rank: int, world: int) -> list[int]:
    """Shards of `rank`: a disjoint, seeded share `perm[rank::world]`, ascending."""
    if world == 1:
        return list(range(n_shards))
    perm = np.random.default_rng([int(seed), SHARD_STREAM]).permutation(n_shards)
    return sorted(int(i) for i in perm[rank::world])


def _barrier(world: int) -> None:
    if world > 1:
        import torch.distributed as dist

        dist.barrier()


def evaluate(model: ModelSource, stream, out_dir: str, cfg: EvalConfig, *,
             rank: int = 0, world: int = 1, progress: bool = False,
             export_tokens: str | None = None,
             on_estimate: Callable[[Estimate], None] | None = None) -> dict:
    """Score `stream` with `model` into OUT (resumable); returns the eval.json dict.

    Finished shards in OUT/shards are reused (never rescored); the merged result is identical
    to an uninterrupted run with the same numerical settings (device, batch size, statistics
    path, compile), which each shard records: eval.json's `numerics` lists the settings used
    and how many shards each scored. Raises UserError for a mismatched OUT, vocabulary or
    context, an empty stream, a tokenizer that differs from the model's, or OUT in use by
    another process (rank 0 holds OUT's lock; nothing is written before the checks pass).
    `export_tokens` FILE: also write every scored token's log-probability from this scoring
    pass (`export.py`; shards scored earlier without it are rescored). `on_estimate(est)`
    (rank 0) gets the plan and the time of one timed scoring batch before scoring starts
    (`estimate.py`).
    """
    check_tokens(stream)
    check_tokenizer(stream, model)
    if model.max_context is not None and cfg.context_len > model.max_context:
        raise UserError(f"--context {cfg.context_len} exceeds the model's maximum context "
                        f"{model.max_context}; pass --context {model.max_context} or less")
    check_vocab(stream, model)
    if export_tokens and not os.path.isdir(os.path.dirname(os.path.abspath(export_tokens))):
        raise UserError(f"--export-tokens {export_tokens}: its directory does not exist; "
                        "create it or name a file in an existing directory")
    with dir_lock(out_dir) if rank == 0 else contextlib.nullcontext():
        return _evaluate_locked(model, stream, out_dir, cfg, rank, world, progress,
                                export_tokens, on_estimate)


def _evaluate_locked(model, stream, out_dir, cfg, rank, world, progress, export,
                     on_estimate=None) -> dict:
    manifest = build_manifest(stream, model, cfg)
    identity = eval_identity(manifest)
    if rank == 0:
        check_or_write_manifest(out_dir, manifest, write=False)
    windows, idx, draws, shards = plan(stream, cfg)
    if rank == 0:
        check_or_write_manifest(out_dir, manifest)
    _barrier(world)
    check_or_write_manifest(out_dir, manifest, write=False)
    meta = stats_meta(model.vocab_size, ALPHA_GRID, TOPK, CENTERS, BETTING_LAMBDAS)
    meta["eval_identity"] = identity
    todo = [i for i in rank_shards(len(shards), cfg.seed, rank, world)
            if not shard_done(out_dir, i, identity)
            or (export and not tok_export.tokens_done(out_dir, i, identity))]
    n_todo = int(sum(windows.n_scored[shards[i]].sum() for i in todo))
    log.info("rank %d: %d of %d shards to score (%s tokens)", rank, len(todo), len(shards),
             f"{n_todo:,}")
    fn, batch = _runtime(model, cfg, len(idx) if todo else 0)
    est = estimate(windows, shards, todo, batch) if on_estimate and rank == 0 else None
    if est is not None:
        on_estimate(est)
    t0 = time.perf_counter()
    bar = _bar(n_todo, progress and rank == 0)
    try:
        _score_shards(fn, batch, stream, windows, shards, todo, meta, cfg, out_dir,
                      timed_batches(est, on_estimate, bar.update if bar else None),
                      export=bool(export))
    finally:
        if bar:
            bar.close()  # ends the bar's line, so an error prints on a line of its own
    seconds = time.perf_counter() - t0
    n_done = _sum_over_ranks(n_todo, world)
    if export and rank == 0:
        n = tok_export.write_export(export, out_dir, len(shards), stream, manifest, identity,
                                    draws)
        log.info("wrote %s (%s tokens)", export, f"{n:,}")
    result_path = os.path.join(out_dir, "eval.json")
    if n_done == 0 and is_finished(out_dir):  # finished before (same manifest, checked
        old = read_result_json(result_path, damaged_ok=True)  # above): keep its timing rather
        if old is not None:                                   # than one of 0 tokens in 0 s
            return old
    if rank == 0:
        timing = {"seconds": seconds, "tokens_scored_this_run": n_done,
                  "tokens_per_s": n_done / seconds if seconds > 0 and n_done else None,
                  "world": world,
                  "device": cfg.device, "batch_size": batch, "compile": cfg.compile,
                  "platform": platform.platform()}
        _merge_and_write(out_dir, manifest, len(shards), draws, timing, asdict(cfg))
    _barrier(world)
    with open(result_path) as f:
        return json.load(f)


def _score_shards(fn, batch, stream, windows, shards, todo, meta, cfg, out_dir, on_batch,
                  export: bool = False) -> None:
    """Score and save each shard of `todo`, recording the numerical settings used; with
    `export`, its per-token log-probabilities too (`export.py`), else any stale ones go."""
    numerics = {"device": str(cfg.device), "batch_size": batch, "stats": cfg.stats,
                "vocab_chunk": cfg.vocab_chunk, "compile": bool(cfg.compile)}
    for i in todo:
        keep = []
        ws = score_windows(fn, stream.tokens, stream.doc_offsets, stream.start_id, windows,
                           shards[i], meta, batch_size=batch, device=cfg.device,
                           exact=cfg.mode == "exact", vocab_chunk=cfg.vocab_chunk,
                           on_batch=on_batch, stats=cfg.stats,
                           on_tokens=keep.append if export else None)
        if export:
            tok_export.save_shard_tokens(out_dir, i, meta["eval_identity"], keep[0].logp,
                                         windows, shards[i])
        else:
            tok_export.drop_shard_tokens(out_dir, i)
        ws.meta["shard"] = i
        ws.meta["numerics"] = numerics
        ws.save(shard_path(out_dir, i))


def _runtime(model: ModelSource, cfg: EvalConfig, n_windows: int):
    """(forward fn, batch size): compiled if asked; "auto" probed on CUDA, 8 elsewhere."""
    batch = cfg.batch_size
    if batch == "auto":
        batch = 8
        if str(cfg.device).startswith("cuda") and n_windows > 0:
            probe = scoring_probe(model.fn, cfg.context_len, cfg.device, cfg.stats,
                                  cfg.vocab_chunk)
            # capped by the shard (a setting), not by the data's window count, so the forward
            # shape and hence every token's numerics are fixed before the data is seen
            batch = auto_batch_size(probe, max_batch=min(cfg.shard_windows, 4096))
    return (compile_fn(model.fn) if cfg.compile else model.fn), int(batch)


def _sum_over_ranks(n: int, world: int) -> int:
    """Sum of an int over ranks (also a barrier); n itself with one process."""
    if world == 1:
        return n
    import torch
    import torch.distributed as dist

    dev = f"cuda:{torch.cuda.current_device()}" if dist.get_backend() == "nccl" else "cpu"
    t = torch.tensor([n], dtype=torch.int64, device=dev)
    dist.all_reduce(t)
    return int(t.item())


def _bar(total: int, on: bool):
    if not on:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="tok", unit_scale=True, desc="scoring", smoothing=0.1)


def _merge_and_write(out_dir, manifest, n_shards, draws, timing, config) -> WindowStats:
    """Merge all shards in shard order into stats.npz and write eval.json."""
    missing = [i for i in range(n_shards) if not os.path.exists(shard_path(out_dir, i))]
    if missing:
        raise RuntimeError(f"{len(missing)} shards missing after scoring (first: {missing[0]})")
    parts = load_shards(out_dir, n_shards, eval_identity(manifest))
    numerics = count_numerics(parts)
    stats = WindowStats.merge_all(parts)
    stats.meta.pop("shard", None)
    stats.draws = draws
    stats.save(os.path.join(out_dir, "stats.npz"))
    tot = stats.totals()
    result = {"manifest": manifest, "config": config, "timing": timing,
              "totals": {k: (v.tolist() if isinstance(v, np.ndarray) else v)
                         for k, v in tot.items()},
              "totals_note": "sums over the distinct scored windows (each counted once)",
              "a": stats.meta["a"], "c": stats.meta["c"], "n_shards": n_shards,
              "numerics": numerics,
              "stats_file": "stats.npz"}
    if draws is not None:
        arr = stats.sample_arrays()
        result["sample"] = {"n_draws": int(draws.size), "n_distinct_windows": len(stats),
                            "note": "means over draws (repeats counted): unbiased for "
                                    "Xbar, V/m and the top-k error rate (METHOD 2.5)",
                            **{f"mean_{k}": arr[k].mean(axis=0).tolist()
                               for k in ("Y", "W", "Yk", "Wk")}}
    atomic_write_json(os.path.join(out_dir, "eval.json"), result, indent=1, sort_keys=True,
                      default=jsonable)
    return stats


def is_finished(out_dir) -> bool:
    """True when OUT holds a merged evaluation (eval.json and stats.npz)."""
    return all(os.path.exists(os.path.join(out_dir, f)) for f in ("eval.json", "stats.npz"))
