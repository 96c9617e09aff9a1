"""Token streams on disk: one flat token array plus document offsets (METHOD sections 1 and 5).

A stream is the training (or held-out) sequence `x_1 ... x_m` of METHOD section 1: documents
concatenated in a fixed order. When the tokenizer has an end-of-text (EOT) token, every
document ends with it, and that closing EOT belongs to the document (it is scored). `start_id`
is a context-only token fed before the first token of each document; it is never stored in the
stream and never scored.

Layout of a stream directory `DIR` (format version 1):

    DIR/tokens.bin       flat little-endian uint16 (vocab_size <= 65,536) or uint32, (m,)
    DIR/doc_offsets.npy  int64 (n_docs + 1,), [0, ..., m]; doc d = tokens[off[d]:off[d+1]]
    DIR/meta.json        written last; see `REQUIRED_KEYS` (+ free-form provenance)

`tokenbound prepare` also records `n_bytes` in meta.json for every tokenizer: the UTF-8 bytes
of the text the stream stands for (closing EOT tokens count none; `TokenStream.n_bytes`), so
that bits per token convert to bits per byte, which compare across tokenizers.

The offsets always live in the `.npy` sidecar (one code path, whatever the corpus size);
`meta.json` records their sha256 next to the sha256 of `tokens.bin`.

Writes are atomic: everything goes to a hidden temporary directory beside `DIR`
(`.DIR.tmp-<pid>-<random>`), files and directory are fsynced, and the temporary directory is
renamed to `DIR`. An interrupted write therefore leaves only a temporary directory, which
`open_stream` never accepts (wrong name, and no `meta.json` until the very end) and which the
next `write_stream` into the same `DIR` removes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tokenbound.errors import UserError
from tokenbound.fileio import file_sha256

log = logging.getLogger(__name__)

FORMAT = "tokenbound-stream"
FORMAT_VERSION = 1
TOKENS_FILE = "tokens.bin"
OFFSETS_FILE = "doc_offsets.npy"
META_FILE = "meta.json"
REQUIRED_KEYS = ("format", "format_version", "tokenizer", "vocab_size", "dtype", "n_tokens",
                 "n_docs", "eot_id", "start_id", "eot_delimited", "sha256", "doc_offsets_sha256")


def dtype_for_vocab(vocab_size: int) -> np.dtype:
    """Little-endian storage dtype: uint16 when every id fits (vocab_size <= 2**16), else uint32."""
    if vocab_size < 1:
        raise UserError(f"vocab_size must be positive, got {vocab_size}")
    if vocab_size <= 1 << 16:
        return np.dtype("<u2")
    if vocab_size <= 1 << 32:
        return np.dtype("<u4")
    raise UserError(f"vocab_size {vocab_size:,} does not fit uint32; use a smaller tokenizer")


@dataclass(frozen=True, eq=False)
class TokenStream:
    """A token stream opened from disk (read-only memmap).

    `tokens` (m,) uint16/uint32; `doc_offsets` (n_docs + 1,) int64 with `doc_offsets[0] == 0`
    and `doc_offsets[-1] == m`; `eot_id` is None when documents are not EOT-delimited (then
    reports must say that the conditional risk depends on the document layout, METHOD 3).
    """

    path: Path
    tokens: np.ndarray  # (m,) np.memmap uint16/uint32 (a plain empty array when m == 0)
    doc_offsets: np.ndarray  # (n_docs + 1,) int64
    meta: dict = field(repr=False)

    @property
    def vocab_size(self) -> int:
        return int(self.meta["vocab_size"])

    @property
    def eot_id(self) -> int | None:
        return None if self.meta["eot_id"] is None else int(self.meta["eot_id"])

    @property
    def start_id(self) -> int:
        return int(self.meta["start_id"])

    @property
    def sha256(self) -> str:
        """Hex sha256 of the bytes of tokens.bin."""
        return str(self.meta["sha256"])

    @property
    def identity(self) -> str:
        """Hex sha256 of what the stream is as data: its tokens, its document boundaries, its
        tokenizer (spec and source sha256), start and end-of-text ids. Two streams with the same
        tokens but other boundaries or another tokenizer differ here (not in `sha256`)."""
        keys = ("sha256", "doc_offsets_sha256", "tokenizer", "tokenizer_sha256", "start_id",
                "eot_id")
        blob = json.dumps({k: self.meta.get(k) for k in keys}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    @property
    def n_bytes(self) -> int | None:
        """UTF-8 bytes of the documents' text (`meta["n_bytes"]`; closing EOT tokens count no
        bytes; a token file's documents decoded with its tokenizer), None for a stream written
        without it. A mean (or bound) of B bits per token over the stream's m tokens, EOT
        included, is `B * len(self) / n_bytes` bits per byte."""
        value = self.meta.get("n_bytes")
        return None if value is None else int(value)

    @property
    def n_docs(self) -> int:
        return len(self.doc_offsets) - 1

    @property
    def doc_names(self) -> list[str] | None:
        return self.meta.get("doc_names")

    def __len__(self) -> int:
        return int(self.meta["n_tokens"])

    def doc(self, d: int) -> np.ndarray:
        """Tokens of document `d` (a view), closing EOT included when `eot_id` is set."""
        return self.tokens[self.doc_offsets[d]:self.doc_offsets[d + 1]]

    def verify(self) -> None:
        """Recompute the sha256 of tokens.bin and doc_offsets.npy; UserError on any mismatch."""
        for name, key in ((TOKENS_FILE, "sha256"), (OFFSETS_FILE, "doc_offsets_sha256")):
            got = file_sha256(self.path / name)
            if got != self.meta[key]:
                raise UserError(f"{self.path / name} is corrupted (sha256 {got[:12]} != "
                                f"{self.meta[key][:12]} in meta.json); rerun "
                                f"`tokenbound prepare ... --force`")


def _read_meta(path: Path) -> dict:
    try:
        meta = json.loads((path / META_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path} is not a token stream (no {META_FILE}); "
                        f"create it with `tokenbound prepare`") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path / META_FILE} is unreadable ({exc}); rerun prepare with --force") \
            from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise UserError(f"{path / META_FILE} is not a tokenbound stream description")
    if meta.get("format_version") != FORMAT_VERSION:
        raise UserError(f"{path} has stream format version {meta.get('format_version')}, this "
                        f"tokenbound reads version {FORMAT_VERSION}; rerun prepare with --force")
    missing = [k for k in REQUIRED_KEYS if k not in meta]
    if missing:
        raise UserError(f"{path / META_FILE} is incomplete (missing {', '.join(missing)}); "
                        f"rerun prepare with --force")
    return meta


def _check_offsets(path: Path, offsets: np.ndarray, meta: dict) -> None:
    n_docs, m = int(meta["n_docs"]), int(meta["n_tokens"])
    ok = (offsets.ndim == 1 and offsets.shape[0] == n_docs + 1 and offsets[0] == 0
          and offsets[-1] == m and bool(np.all(np.diff(offsets) >= 0)))
    if not ok:
        raise UserError(f"{path / OFFSETS_FILE} does not match meta.json (n_docs={n_docs:,}, "
                        f"n_tokens={m:,}); rerun prepare with --force")


def open_stream(path: str | os.PathLike, *, verify: bool = False) -> TokenStream:
    """Open a stream directory written by `write_stream`.

    Always checks (fast): meta.json present, complete and of this format version; tokens.bin
    size == n_tokens * itemsize; offsets consistent with meta. With `verify=True`, also
    recomputes the sha256 of both data files (reads everything; seconds per GB).
    """
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"token stream {path} does not exist; create it with `tokenbound prepare`")
    meta = _read_meta(path)
    dtype = np.dtype(meta["dtype"])
    if dtype != dtype_for_vocab(int(meta["vocab_size"])):
        raise UserError(f"{path / META_FILE}: dtype {meta['dtype']} does not match vocab_size")
    m = int(meta["n_tokens"])
    tok_path = path / TOKENS_FILE
    size = tok_path.stat().st_size if tok_path.is_file() else -1
    if size != m * dtype.itemsize:
        raise UserError(f"{tok_path} has {size:,} bytes, meta.json says {m:,} tokens of "
                        f"{dtype.itemsize} bytes; rerun prepare with --force")
    try:
        offsets = np.load(path / OFFSETS_FILE, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise UserError(f"{path / OFFSETS_FILE} is unreadable ({exc}); rerun prepare --force") \
            from None
    _check_offsets(path, offsets, meta)
    tokens = (np.memmap(tok_path, dtype=dtype, mode="r", shape=(m,)) if m > 0
              else np.zeros(0, dtype=dtype))
    stream = TokenStream(path=path, tokens=tokens, doc_offsets=offsets.astype(np.int64),
                         meta=meta)
    if verify:
        stream.verify()
    return stream


def is_stream(path: str | os.PathLike) -> bool:
    """True when `path` opens as a stream (fast checks only, no hashing)."""
    try:
        open_stream(path)
    except UserError:
        return False
    return True
