"""Documents from user files: a text file, a directory of text files, FASTA, JSON Lines, a
saved Hugging Face `datasets` directory, a flat token file (nanoGPT's `train.bin`).

Every reader returns a list of documents in a fixed order, with unique names (used for the
hash-based held-out split) and without empty documents (dropped: an empty document has nothing
to score unless there is an EOT token, and an empty one would only add EOT tokens).
Text is decoded as strict UTF-8 from the raw bytes (no newline translation, so the stream
reproduces the files byte for byte). A token file gives `TokenDocument`s (ids, no text).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tokenbound.data.stream import dtype_for_vocab
from tokenbound.errors import UserError

log = logging.getLogger(__name__)

FASTA_SUFFIXES = (".fa", ".fasta", ".faa")
JSONL_SUFFIXES = (".jsonl", ".ndjson")
TOKEN_SUFFIXES = (".bin",)
_SCAN = 1 << 24  # tokens per chunk when scanning a token file
HF_MARKERS = ("dataset_dict.json", "state.json")


@dataclass(frozen=True)
class Document:
    """One document: a unique `name` (path, record id, ...) and its text."""

    name: str
    text: str


@dataclass(frozen=True, eq=False)
class TokenDocument:
    """One pre-tokenized document of a token file: a unique `name` and its ids
    `source[start:end]` (closing end-of-text id included when the tokenizer has one)."""

    name: str
    source: np.ndarray = field(repr=False)  # (m,) the whole file, memory-mapped
    start: int
    end: int

    @property
    def ids(self) -> np.ndarray:
        """(n,) uint16/uint32 view of the file."""
        return self.source[self.start:self.end]


def read_utf8(path: Path) -> str:
    """The file's bytes decoded as strict UTF-8; UserError naming the file otherwise."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{path} is not UTF-8 text (byte {exc.start:,}: {exc.reason}); convert "
                        f"it to UTF-8 or exclude it") from None


def _nonempty(docs: list[Document], where: object) -> list[Document]:
    kept = [d for d in docs if d.text]
    if len(kept) < len(docs):
        log.info("%s: dropped %d empty documents", where, len(docs) - len(kept))
    return kept


def read_text_file(path: Path, separator: str | None = None) -> list[Document]:
    """One document per file, or per piece of `text.split(separator)`; pieces that are empty or
    whitespace-only are dropped, the separator itself belongs to no document. Names
    `FILE` or `FILE#k` (k counts the kept pieces)."""
    text = read_utf8(path)
    if separator is None:
        return _nonempty([Document(path.name, text)], path)
    if separator == "":
        raise UserError("--doc-separator is empty; give a string such as '\\n\\n'")
    pieces = [p for p in text.split(separator) if p.strip()]
    return [Document(f"{path.name}#{k}", p) for k, p in enumerate(pieces)]


def read_text_dir(root: Path, glob: str = "*") -> list[Document]:
    """One document per regular file matching `glob` under `root` (recursive), sorted by
    relative POSIX path; hidden files and directories (name starting with '.') are skipped.
    Names are the relative paths."""
    files = []
    for p in root.rglob(glob):
        rel = p.relative_to(root)
        if p.is_file() and not any(part.startswith(".") for part in rel.parts):
            files.append((rel.as_posix(), p))
    files.sort()
    return _nonempty([Document(rel, read_utf8(p)) for rel, p in files], root)


def read_fasta(path: Path) -> list[Document]:
    """One document per FASTA record: the sequence lines joined without whitespace (the
    `>` header is not part of the document). Name = first word of the header, with `#k`
    appended to the k-th repeat (k >= 1) so that names stay unique."""
    docs: list[Document] = []
    header, seq, seen = None, [], {}

    def flush():
        if header is None:
            return
        base = header.split()[0] if header.split() else f"record{len(docs)}"
        k = seen.get(base, 0)
        seen[base] = k + 1
        docs.append(Document(base if k == 0 else f"{base}#{k}", "".join(seq)))

    for lineno, line in enumerate(read_utf8(path).splitlines(), 1):
        if line.startswith(">"):
            flush()
            header, seq = line[1:].strip(), []
        elif line.strip() and header is None:
            raise UserError(f"{path}:{lineno}: sequence data before the first '>' header; "
                            f"is this a FASTA file?")
        elif header is not None:
            seq.append("".join(line.split()))
    flush()
    return _nonempty(docs, path)


def read_jsonl(path: Path, field: str = "text") -> list[Document]:
    """One document per line of a JSON Lines file: the string `field` of the line's object.
    Blank lines are skipped; a null or empty field is an empty document (dropped). Names
    `FILE:LINE` (1-based line numbers). Lines are split at "\\n" only (a raw U+2028 may sit
    inside a JSON string). UserError naming the file and line on bad JSON, a line that is not
    an object, a missing field or a value that is not a string."""
    docs = []
    for lineno, line in enumerate(read_utf8(path).split("\n"), 1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"{where}: not valid JSON ({exc.msg}, column {exc.colno}); fix the "
                            f"line or remove it") from None
        if not isinstance(obj, dict):
            raise UserError(f"{where}: a JSON {type(obj).__name__}, not an object with a "
                            f"{field!r} field; write one object per line")
        if field not in obj:
            keys = ", ".join(map(str, list(obj)[:8])) or "none"
            raise UserError(f"{where}: no field {field!r} (fields: {keys}); pass "
                            f"--text-column NAME")
        text = obj[field]
        if text is not None and not isinstance(text, str):
            raise UserError(f"{where}: field {field!r} holds a JSON {type(text).__name__}, not "
                            f"a string; pass --text-column NAME")
        docs.append(Document(f"{path.name}:{lineno}", text or ""))
    return _nonempty(docs, path)


def _scan_token_file(tokens: np.ndarray, eot_id: int | None) -> tuple[int, np.ndarray]:
    """(largest id, end offsets of the EOT-closed pieces) of a (m,) token array, in chunks."""
    top, ends = -1, [np.zeros(0, dtype=np.int64)]
    for i in range(0, len(tokens), _SCAN):
        chunk = np.asarray(tokens[i:i + _SCAN])
        top = max(top, int(chunk.max()))
        if eot_id is not None:
            ends.append(np.flatnonzero(chunk == eot_id).astype(np.int64) + (i + 1))
    return top, np.concatenate(ends)


def read_token_file(path: Path, vocab_size: int, eot_id: int | None) -> list[TokenDocument]:
    """Documents of a flat token file (nanoGPT's `train.bin`): little-endian ids of the stream
    dtype for `vocab_size` (uint16 when vocab_size <= 65,536, else uint32), documents closed by
    `eot_id` (each ends with it; the file must end with it). Without an EOT id the whole file is
    one document. Names `FILE#k`, k counting the EOT-closed pieces from 0; a piece that is only
    the EOT id (an empty document) is dropped."""
    dtype = dtype_for_vocab(vocab_size)
    size = path.stat().st_size
    if size % dtype.itemsize:
        raise UserError(f"{path} has {size:,} bytes, not a whole number of {dtype.name} token "
                        f"ids; is it a token file of this tokenizer?")
    m = size // dtype.itemsize
    tokens = np.memmap(path, dtype=dtype, mode="r", shape=(m,)) if m else np.zeros(0, dtype)
    if m == 0:
        return []
    top, ends = _scan_token_file(tokens, eot_id)
    if top >= vocab_size:
        raise UserError(f"{path} holds token id {top:,}, outside the tokenizer's vocabulary "
                        f"[0, {vocab_size:,}); pass the --tokenizer that wrote the file")
    if eot_id is None:
        ends = np.array([m], dtype=np.int64)
    elif ends.size == 0 or ends[-1] != m:
        tail = m - (int(ends[-1]) if ends.size else 0)
        raise UserError(f"{path}: the last {tail:,} tokens are not closed by the end-of-text id "
                        f"{eot_id}; documents must each end with it (is the EOT prepended, the "
                        f"file truncated, or --eot another token?)")
    starts = np.concatenate([[0], ends[:-1]])
    docs = [TokenDocument(f"{path.name}#{k}", tokens, int(a), int(b))
            for k, (a, b) in enumerate(zip(starts.tolist(), ends.tolist()))]
    kept = [d for d in docs if d.end - d.start > (eot_id is not None)]
    if len(kept) < len(docs):
        log.info("%s: dropped %d empty documents", path, len(docs) - len(kept))
    return kept


def is_hf_dataset(path: Path) -> bool:
    return path.is_dir() and any((path / m).is_file() for m in HF_MARKERS)


def _arrow_files(split_dir: Path) -> list[Path]:
    state = split_dir / "state.json"
    if state.is_file():
        names = [f["filename"] for f in json.loads(state.read_text())["_data_files"]]
        return [split_dir / n for n in names]
    return sorted(split_dir.glob("*.arrow"))


def _read_arrow_column(path: Path, column: str) -> list:
    import pyarrow as pa

    try:
        with pa.memory_map(str(path)) as src:
            table = pa.ipc.open_stream(src).read_all()
    except pa.ArrowInvalid:
        with pa.memory_map(str(path)) as src:
            table = pa.ipc.open_file(src).read_all()
    if column not in table.column_names:
        raise UserError(f"{path} has no column {column!r} (columns: "
                        f"{', '.join(table.column_names)}); pass --text-column NAME")
    return table.column(column).to_pylist()


def read_hf_dataset(root: Path, column: str = "text") -> list[Document]:
    """A directory written by `datasets` `save_to_disk` (a Dataset, or a DatasetDict whose
    splits are read in the order of dataset_dict.json). Read with pyarrow (the extra
    `tokenbound[datasets]`; `datasets` itself is not needed); names `SPLIT/ROW` (`ROW` for a
    single Dataset)."""
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise UserError(f"{root} is a saved Hugging Face dataset; reading it needs pyarrow: "
                        f"pip install 'tokenbound[datasets]' (or pip install pyarrow)") from None
    if (root / "dataset_dict.json").is_file():
        splits = json.loads((root / "dataset_dict.json").read_text())["splits"]
        parts = [(f"{s}/", root / s) for s in splits]
    else:
        parts = [("", root)]
    docs = []
    for prefix, split_dir in parts:
        row = 0
        for f in _arrow_files(split_dir):
            for text in _read_arrow_column(f, column):
                if text is not None and not isinstance(text, str):
                    raise UserError(f"{f}: column {column!r} holds {type(text).__name__}, not "
                                    f"text; pass --text-column NAME")
                docs.append(Document(f"{prefix}{row}", text or ""))
                row += 1
    return _nonempty(docs, root)
