"""Per-token numbers out (`tokenbound evaluate --export-tokens FILE`), from the scoring pass.

While a shard is scored, the natural log-probability of every scored target (the unsmoothed
model distribution, fp32 log-softmax, the `logp` of `token_stats`) is saved beside it as
`OUT/shards/tokens_000123.npz`; after the merge the shards' files are concatenated in shard
order into FILE, so the exported numbers are those the statistics were computed from (no
second forward pass). A shard scored without the option has no tokens file and is rescored
when the option is given later.

FILE (`np.load(FILE)`; no pickles), N = tokens scored, in scored order (windows ascending, each
window's tokens in stream order; exact mode: the stream order, every token once):

    logp        float32 (N,)  ln p(target | context), NATS (bits: -logp / ln 2); may be -inf
    token_ids   int64 (N,)    the target token ids (= stream.tokens[positions])
    positions   int64 (N,)    stream positions of the targets
    window      int64 (N,)    index of the window that scored each token (`make_windows` order)
    doc         int64 (N,)    document index of each token
    draws       int64 (n,)    sampled mode only: the window of each drawn position, repeats kept
                              (means over draws are the unbiased sampled estimates)
    meta_json   str           JSON: format, units, mode, context_len, stride, vocab_size,
                              n_tokens, stream_sha256, model ident, eval_identity
"""

from __future__ import annotations

import json
import os

import numpy as np

from tokenbound.errors import UserError
from tokenbound.evaluation.windows import Windows
from tokenbound.fileio import atomic_open

FORMAT = "tokenbound-token-export-1"


def tokens_path(out_dir: str, i: int) -> str:
    return os.path.join(out_dir, "shards", f"tokens_{i:06d}.npz")


def scored_positions(windows: Windows, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(positions, window) int64 (N,) of the tokens scored by windows `idx` in scored order."""
    k = windows.n_scored[idx]  # (W,)
    win = np.repeat(idx, k)  # (N,)
    within = np.arange(win.size) - np.repeat(np.cumsum(k) - k, k)  # (N,)
    return windows.first_scored[win] + within, win


def save_shard_tokens(out_dir: str, i: int, identity: str, logp: np.ndarray,
                      windows: Windows, idx: np.ndarray) -> None:
    """Write shard i's per-token log-probabilities `logp` (N,) nats, in scored order."""
    pos, win = scored_positions(windows, np.asarray(idx, dtype=np.int64))
    if pos.size != logp.size:
        raise RuntimeError("per-token export: scored token count mismatch")
    with atomic_open(tokens_path(out_dir, i), "wb") as f:
        np.savez(f, logp=np.asarray(logp, dtype=np.float32), positions=pos, window=win,
                 identity=np.array(identity))


def tokens_done(out_dir: str, i: int, identity: str) -> bool:
    """True when shard i's tokens file exists, is readable and belongs to `identity`."""
    try:
        with np.load(tokens_path(out_dir, i), allow_pickle=False) as z:
            return str(z["identity"]) == identity
    except (OSError, ValueError, KeyError, EOFError):
        return False


def drop_shard_tokens(out_dir: str, i: int) -> None:
    """Remove shard i's tokens file (the shard is being rescored without export)."""
    try:
        os.remove(tokens_path(out_dir, i))
    except FileNotFoundError:
        pass


def write_export(path: str, out_dir: str, n_shards: int, stream, manifest: dict,
                 identity: str, draws: np.ndarray | None) -> int:
    """Concatenate the shards' tokens files into `path` (module docstring); returns N."""
    parts = []
    for i in range(n_shards):
        if not tokens_done(out_dir, i, identity):
            raise UserError(f"{tokens_path(out_dir, i)} is missing or foreign; rerun the same "
                            "command with --export-tokens to rescore that shard")
        with np.load(tokens_path(out_dir, i), allow_pickle=False) as z:
            parts.append((z["logp"], z["positions"], z["window"]))
    logp, pos, win = (np.concatenate([p[j] for p in parts]) for j in range(3))
    doc = np.searchsorted(np.asarray(stream.doc_offsets), pos, side="right") - 1
    meta = {"format": FORMAT, "units": "nats (natural log); bits = -logp / ln 2",
            "n_tokens": int(logp.size), "eval_identity": identity,
            **{k: manifest.get(k) for k in ("mode", "context_len", "stride", "vocab_size",
                                            "stream_sha256", "model", "tokenizer")}}
    arrays = dict(logp=logp, token_ids=np.asarray(stream.tokens)[pos].astype(np.int64),
                  positions=pos, window=win, doc=doc.astype(np.int64),
                  meta_json=np.array(json.dumps(meta, sort_keys=True, default=str)))
    if draws is not None:
        arrays["draws"] = np.asarray(draws, dtype=np.int64)
    with atomic_open(path, "wb") as f:
        np.savez(f, **arrays)
    return int(logp.size)
