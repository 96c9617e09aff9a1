"""Atomic writer of token streams (format described in `tokenbound.data.stream`).

`write_stream` streams documents to a hidden temporary directory beside the destination,
hashes while writing, fsyncs files and directories, writes `meta.json` last and renames the
directory into place. Nothing that `open_stream` accepts exists until the final rename.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import shutil
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from tokenbound.data.stream import (FORMAT, FORMAT_VERSION, META_FILE, OFFSETS_FILE, TOKENS_FILE,
                                    TokenStream, dtype_for_vocab, open_stream)
from tokenbound.errors import UserError
from tokenbound.fileio import file_sha256, fsync_dir, sweep_temps, temp_name

log = logging.getLogger(__name__)

INPUT_KEYS = ("tokenizer", "vocab_size", "eot_id", "start_id")


def _check_destination(dest: Path, overwrite: bool) -> None:
    if not dest.exists():
        return
    if not dest.is_dir():
        raise UserError(f"{dest} exists and is not a directory; choose another --out")
    if not any(dest.iterdir()):
        return
    if not (dest / META_FILE).exists():
        raise UserError(f"{dest} exists and is not a token stream; refusing to replace it, "
                        f"choose another --out or remove it")
    if not overwrite:
        raise UserError(f"{dest} already holds a token stream; pass --force to replace it")


def _as_tokens(doc, d: int, vocab_size: int, eot_id: int | None, dtype: np.dtype) -> np.ndarray:
    arr = np.asarray(doc)
    if arr.ndim != 1 or arr.size == 0 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"document {d}: expected a non-empty 1-D integer array, got "
                         f"shape {arr.shape} dtype {arr.dtype}")
    lo, hi = int(arr.min()), int(arr.max())
    if lo < 0 or hi >= vocab_size:
        raise UserError(f"document {d} has token id {hi if hi >= vocab_size else lo} outside "
                        f"[0, {vocab_size}) (storage {dtype.name}); the tokenizer's vocab_size "
                        f"is wrong or the ids do not fit: check the tokenizer spec")
    if eot_id is not None and int(arr[-1]) != eot_id:
        raise ValueError(f"document {d} does not end with eot_id {eot_id}")
    return arr.astype(dtype, copy=False)


def _write_tokens(tmp: Path, docs: Iterable, meta: dict, dtype: np.dtype) -> tuple[list, str]:
    """Write tokens.bin; return (document lengths, sha256 hex)."""
    h = hashlib.sha256()
    lengths = []
    with open(tmp / TOKENS_FILE, "wb") as f:
        for d, doc in enumerate(docs):
            arr = _as_tokens(doc, d, int(meta["vocab_size"]), meta["eot_id"], dtype)
            buf = arr.tobytes()
            f.write(buf)
            h.update(buf)
            lengths.append(arr.size)
        f.flush()
        os.fsync(f.fileno())
    return lengths, h.hexdigest()


def _write_offsets(tmp: Path, lengths: list) -> tuple[np.ndarray, str]:
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)  # (n_docs + 1,)
    np.cumsum(np.asarray(lengths, dtype=np.int64), out=offsets[1:])
    with open(tmp / OFFSETS_FILE, "wb") as f:
        np.save(f, offsets, allow_pickle=False)
        f.flush()
        os.fsync(f.fileno())
    return offsets, file_sha256(tmp / OFFSETS_FILE)


def _complete_meta(meta: dict, dtype: np.dtype, offsets: np.ndarray, sha: str,
                   off_sha: str) -> dict:
    out = dict(meta)
    out.update(format=FORMAT, format_version=FORMAT_VERSION, dtype=dtype.str,
               n_tokens=int(offsets[-1]), n_docs=len(offsets) - 1,
               eot_delimited=meta["eot_id"] is not None, sha256=sha,
               doc_offsets_sha256=off_sha)
    names = out.get("doc_names")
    if names is not None and len(names) != out["n_docs"]:
        raise ValueError(f"meta['doc_names'] has {len(names)} names for {out['n_docs']} documents")
    return out


def _check_input_meta(meta: dict) -> None:
    missing = [k for k in INPUT_KEYS if k not in meta]
    if missing:
        raise ValueError(f"write_stream: meta lacks {', '.join(missing)}")
    v = int(meta["vocab_size"])
    for key in ("eot_id", "start_id"):
        val = meta[key]
        if (val is None and key == "start_id") or (val is not None and not 0 <= int(val) < v):
            raise ValueError(f"write_stream: meta[{key!r}] = {val!r} is not an id in [0, {v})")


def _install(tmp: Path, dest: Path) -> None:
    """Rename `tmp` to `dest`, moving an existing `dest` aside first and deleting it after."""
    old = None
    if dest.exists():
        old = dest.parent / f".{dest.name}.old-{os.getpid()}-{secrets.token_hex(4)}"
        os.rename(dest, old)
    os.rename(tmp, dest)
    fsync_dir(dest.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_stream(path: str | os.PathLike, docs: Iterable, meta: dict, *,
                 overwrite: bool = False) -> TokenStream:
    """Write documents as a token stream directory, atomically; return it opened.

    docs: iterable of 1-D integer arrays (one per document, in order; each non-empty and, when
        `meta["eot_id"]` is not None, ending with it). Ids must lie in `[0, vocab_size)`.
    meta: must hold `tokenizer` (spec string), `vocab_size`, `eot_id` (int or None),
        `start_id`; may hold `doc_names` (one per document) and any JSON-serializable
        provenance. Counts, dtype, `eot_delimited` and both sha256 are filled in here.
    overwrite: replace an existing stream at `path` (a non-stream directory is never replaced).
    """
    dest = Path(path).absolute()
    _check_input_meta(meta)
    _check_destination(dest, overwrite)
    dest.parent.mkdir(parents=True, exist_ok=True)
    sweep_temps(dest.parent, dest.name)
    dtype = dtype_for_vocab(int(meta["vocab_size"]))
    tmp = temp_name(dest)
    tmp.mkdir()
    try:
        lengths, sha = _write_tokens(tmp, docs, meta, dtype)
        offsets, off_sha = _write_offsets(tmp, lengths)
        full = _complete_meta(meta, dtype, offsets, sha, off_sha)
        with open(tmp / META_FILE, "w", encoding="utf-8") as f:
            json.dump(full, f, indent=1, ensure_ascii=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        fsync_dir(tmp)
        if dest.exists() and any(dest.iterdir()):
            _check_destination(dest, overwrite)  # still ours to replace (nothing raced in)
        elif dest.exists():
            dest.rmdir()
        _install(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("wrote %s: %d docs, %d tokens", dest, full["n_docs"], full["n_tokens"])
    return open_stream(dest)
