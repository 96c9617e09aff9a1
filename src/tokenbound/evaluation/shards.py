"""Files of an evaluation directory: the shards (where they live, whose they are, how they
merge) and the merged result (`load_result`).

Every shard records `eval_identity`, a sha256 over the manifest's identity (stream sha256 and
identity, model identity without its path, vocabulary, L, s, mode, n, seed, dtype, shard size,
grids): the model, stream and settings that made it. A resumed run recomputes a shard it cannot
read (truncated, garbage) and refuses one of another identity; the merge loads every shard,
refuses a mix, and stamps the identity into stats.npz, which `load_result` (hence
`tokenbound bound`) checks against eval.json. Shards written before identities were recorded
carry none and are accepted under the manifest check alone.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import zipfile
import zlib

import numpy as np

from tokenbound.errors import UserError
from tokenbound.evaluation.stats import WindowStats

log = logging.getLogger(__name__)

IDENTITY_KEY = "eval_identity"
# manifest keys added later: compared only when the directory's manifest has them
_IF_RECORDED = ("stream_identity",)
# what a damaged .npz raises when read
_DAMAGED = (zipfile.BadZipFile, zlib.error, ValueError, KeyError, EOFError, OSError)


def jsonable(x):
    """`json.dumps(default=...)` for numpy values."""
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    raise TypeError(type(x))


def manifest_identity(man: dict, recorded: dict | None = None) -> dict:
    """The manifest's fields that identify an evaluation (the model's path dropped); with
    `recorded` (an older manifest), later-added keys only where that one has them."""
    m = {k: v for k, v in man.items()
         if recorded is None or k in recorded or k not in _IF_RECORDED}
    m["model"] = {k: v for k, v in man["model"].items() if k != "path"}
    return m


def eval_identity(manifest: dict) -> str:
    """Hex sha256 of the canonical JSON of `manifest_identity(manifest)`."""
    ident = json.loads(json.dumps(manifest_identity(manifest), default=jsonable))
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()


def shard_path(out_dir: str, i: int) -> str:
    return os.path.join(out_dir, "shards", f"shard_{i:06d}.npz")


def _recorded_identity(path: str) -> str | None:
    """The shard's `eval_identity` (None when it predates identities); raises what a damaged
    file raises."""
    with np.load(path, allow_pickle=False) as z:
        return json.loads(str(z["meta_json"])).get(IDENTITY_KEY)


def _foreign(path: str, got: str) -> UserError:
    return UserError(f"{path} was written by another evaluation (a different model, stream or "
                     f"settings: identity {got[:12]}); the directory mixes two evaluations, so "
                     "no bound can come from it: evaluate into a new --out")


def shard_done(out_dir: str, i: int, identity: str) -> bool:
    """True when shard i exists, is readable and is ours; False when it is missing or damaged
    (it is then recomputed); UserError when it belongs to another evaluation."""
    path = shard_path(out_dir, i)
    if not os.path.exists(path):
        return False
    try:
        got = _recorded_identity(path)
    except _DAMAGED as exc:
        log.warning("recomputing damaged shard %s (%s)", path, exc)
        return False
    if got is not None and got != identity:
        raise _foreign(path, got)
    return True


def load_shards(out_dir: str, n_shards: int, identity: str) -> list[WindowStats]:
    """All shards in order, each checked to be ours. A damaged shard is removed and reported
    (a rerun recomputes it); a foreign one is refused."""
    parts = []
    for i in range(n_shards):
        path = shard_path(out_dir, i)
        try:
            ws = WindowStats.load(path)
        except _DAMAGED as exc:
            if os.path.exists(path):
                os.remove(path)
            raise UserError(f"shard {path} is damaged ({type(exc).__name__}: {exc}); it was "
                            "removed: rerun the same command to recompute it") from None
        got = ws.meta.get(IDENTITY_KEY)
        if got is not None and got != identity:
            raise _foreign(path, got)
        ws.meta[IDENTITY_KEY] = identity
        parts.append(ws)
    return parts


def count_numerics(parts: list[WindowStats]) -> list[dict]:
    """Pop each shard's `numerics` (device, batch size, statistics path, compile) and return
    the distinct settings, each with its shard count, in order of first use."""
    numerics: list[dict] = []
    for ws in parts:
        num = ws.meta.pop("numerics", None)
        hit = next((d for d in numerics if d["settings"] == num), None)
        if hit is None:
            numerics.append({"settings": num, "shards": 1})
        else:
            hit["shards"] += 1
    return numerics


def check_result_identity(stats: WindowStats, result: dict, out_dir: str) -> None:
    """UserError unless stats.npz was merged from shards of the evaluation eval.json
    describes (a stats.npz without an identity predates them and is accepted)."""
    got = stats.meta.get(IDENTITY_KEY)
    if got is not None and got != eval_identity(result["manifest"]):
        raise UserError(f"{out_dir}/stats.npz does not belong to the evaluation in "
                        f"{out_dir}/eval.json (different model, stream or settings); "
                        "evaluate into a new --out")


def load_result(out_dir: str) -> tuple[WindowStats, dict]:
    """(merged WindowStats, eval.json dict) of a finished evaluation directory."""
    path = os.path.join(out_dir, "eval.json")
    if not os.path.exists(path):
        raise UserError(f"{out_dir} has no eval.json; run `tokenbound evaluate --out {out_dir}`")
    res = read_result_json(path)
    stats_path = os.path.join(out_dir, "stats.npz")
    try:
        stats = WindowStats.load(stats_path)
    except FileNotFoundError:
        raise UserError(f"{stats_path} is missing; rerun `tokenbound evaluate` with the same "
                        f"--out {out_dir} to merge the shards again") from None
    except _DAMAGED as exc:
        raise UserError(f"{stats_path} is damaged ({type(exc).__name__}); delete it and rerun "
                        f"`tokenbound evaluate` with the same --out {out_dir} to merge the "
                        "shards again") from None
    check_result_identity(stats, res, out_dir)
    return stats, res


def read_result_json(path: str, damaged_ok: bool = False) -> dict | None:
    """eval.json as a dict; UserError naming the file when it is damaged (None instead with
    `damaged_ok`: a rerun of `evaluate` then writes it again)."""
    try:
        with open(path) as f:
            res = json.load(f)
        if not isinstance(res, dict) or not isinstance(res.get("manifest"), dict):
            raise ValueError("no manifest")
    except (ValueError, UnicodeDecodeError) as exc:
        if damaged_ok:
            return None
        d = os.path.dirname(path)
        raise UserError(f"{path} is damaged ({exc}); rerun `tokenbound evaluate` with the same "
                        f"--out {d} to write it again") from None
    return res
