"""Corpus + tokenizer -> `OUT/train/` and `OUT/heldout/` token streams (`tokenbound prepare`).

Each split is written with `write_stream` (atomic). A split whose directory already holds a
valid stream prepared with the same request (corpus, tokenizer spec and file hash, split
settings) is skipped; any other existing stream needs `force=True`. The request is recorded
as `meta["request"]`.
"""

from __future__ import annotations

import datetime
import logging
import platform
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tokenbound.data.corpora import DEFAULT_HELDOUT_FRACTION, Corpus, load_corpus
from tokenbound.data.files import TokenDocument
from tokenbound.data.stream import TokenStream, is_stream, open_stream
from tokenbound.data.tokenizer import Tokenizer
from tokenbound.data.write import write_stream
from tokenbound.errors import UserError

log = logging.getLogger(__name__)

SPLITS = ("train", "heldout")
_BATCH = 64  # documents per tokenizer batch


@dataclass(frozen=True)
class SplitSummary:
    """What `prepare_corpus` did for one split."""

    split: str
    stream: TokenStream
    n_bytes: int  # UTF-8 bytes of the documents' text (EOT tokens excluded; `_text_bytes`)
    skipped: bool  # True: an identical stream already existed and was kept


NAMED_CORPORA = ("shakespeare", "pystdlib")
#: settings at these values are left out of the request (None = not given), so that
#: `tokenbound prepare` (which passes every flag) and a recipe's prepare step (which passes the
#: keys it has) build the same request from the same settings
DEFAULTS = {"heldout_fraction": (None, DEFAULT_HELDOUT_FRACTION), "doc_separator": (None,),
            "glob": (None, "*"), "text_column": (None, "text"), "max_train_docs": (None,)}
_REQUEST_KEYS = ("corpus", "source", "tokenizer", "tokenizer_sha256")


def corpus_id(name: str) -> str:
    """How a corpus is named in a request: a named corpus as is, a path made absolute."""
    return name if name in NAMED_CORPORA else str(Path(name).expanduser().absolute())


def make_request(corpus_name: str, tokenizer: Tokenizer, **settings) -> dict:
    """The settings that determine the streams (compared to skip an identical prepare),
    including the corpus content's fingerprint (`corpora.source_fingerprint`).

    `settings`: `load_corpus`'s keywords (`doc_separator` already unescaped) and
    `max_train_docs`; those at their defaults (`DEFAULTS`) are left out."""
    from tokenbound.data.corpora import source_fingerprint

    unknown = sorted(set(settings) - set(DEFAULTS))
    if unknown:
        raise UserError(f"unknown prepare setting(s) {', '.join(unknown)}: use "
                        f"{', '.join(DEFAULTS)}")
    return dict(corpus=corpus_id(corpus_name), source=source_fingerprint(corpus_name),
                tokenizer=tokenizer.spec, tokenizer_sha256=tokenizer.source_sha256,
                **_given(settings))


def _given(settings: dict) -> dict:
    return {k: v for k, v in settings.items() if v not in DEFAULTS.get(k, (None,))}


def _same_request(stored, request: dict) -> bool:
    """Equal requests. A stored request is read as `make_request` writes it today: its corpus
    path made absolute and settings at their defaults dropped (older versions kept them); one
    stored before `source` was recorded is compared without it."""
    if not isinstance(stored, dict) or not isinstance(stored.get("corpus"), str):
        return False
    stored = {**{k: v for k, v in stored.items() if k in _REQUEST_KEYS},
              "corpus": corpus_id(stored["corpus"]),
              **_given({k: v for k, v in stored.items() if k not in _REQUEST_KEYS})}
    if "source" not in stored:
        request = {k: v for k, v in request.items() if k != "source"}
    return stored == request


def _same_layout(meta: dict, tok: Tokenizer) -> bool:
    """The stream's recorded ids are the tokenizer's (a `chars:` spec had another layout in
    earlier versions: same spec, other vocab_size, eot_id and start_id)."""
    return ((meta.get("vocab_size"), meta.get("eot_id"), meta.get("start_id"))
            == (tok.vocab_size, tok.eot_id, tok.start_id))


def existing_status(out: Path, request: dict, force: bool, tok: Tokenizer) -> dict[str, bool]:
    """split -> True when `out/split` already holds this request's stream, with `tok`'s
    vocab_size, eot_id and start_id (skip it).

    UserError when a split directory holds something else and `force` is False."""
    status = {}
    for split in SPLITS:
        d = out / split
        if not d.exists() or (d.is_dir() and not any(d.iterdir())):
            status[split] = False
            continue
        meta = open_stream(d).meta if is_stream(d) else {}
        same = _same_request(meta.get("request"), request) and _same_layout(meta, tok)
        if not same and not force:
            raise UserError(f"{d} already exists and was not prepared with these settings "
                            f"(or from this content of the corpus); "
                            f"pass --force to replace it or choose another --out")
        status[split] = same and not force
    return status


def _is_tokens(chunk: list) -> bool:
    return bool(chunk) and isinstance(chunk[0], TokenDocument)


def _text_bytes(docs: list, tok: Tokenizer) -> list[int]:
    """UTF-8 bytes of each document's text, closing EOT excluded: of the text itself, or of a
    token document's ids decoded with `tok` (batched for `hf:`/`gguf:`)."""
    decode_many = getattr(tok, "decode_many", None)
    if decode_many is None:
        def decode_many(seqs):
            return [tok.decode(ids) for ids in seqs]
    cut = 0 if tok.eot_id is None else 1
    sizes = []
    for i in range(0, len(docs), _BATCH):
        chunk = docs[i:i + _BATCH]
        if _is_tokens(chunk):
            texts = decode_many([d.ids[:len(d.ids) - cut] for d in chunk])
        else:
            texts = [d.text for d in chunk]
        sizes.extend(len(t.encode("utf-8")) for t in texts)
    return sizes


def _token_docs(docs: list, tok: Tokenizer, sizes: list[int], bar) -> Iterator[np.ndarray]:
    """Token ids of the documents in order: token documents as they are, text encoded (batched
    for `hf:`/`gguf:`) with the closing EOT appended. `sizes`: bytes per document (progress)."""
    batch_encode = getattr(tok, "encode_many", None)
    for i in range(0, len(docs), _BATCH):
        chunk = docs[i:i + _BATCH]
        if _is_tokens(chunk):
            encoded = [np.asarray(d.ids) for d in chunk]
        elif batch_encode is None:
            encoded = [tok.encode_document(d.text, d.name) for d in chunk]
        else:
            encoded = [ids if tok.eot_id is None else np.append(ids, np.int64(tok.eot_id))
                       for ids in batch_encode([d.text for d in chunk])]
        for d, ids, n in zip(chunk, encoded, sizes[i:i + _BATCH]):
            if ids.size == 0:
                raise UserError(f"document {d.name} encodes to no tokens; remove it")
            bar.update(n)
            yield ids


def _meta(corpus: Corpus, split: str, docs: list, tok: Tokenizer, request: dict,
          n_bytes: int) -> dict:
    from tokenbound.provenance import package_info

    info = package_info()
    return dict(
        tokenizer=tok.spec, tokenizer_sha256=tok.source_sha256, vocab_size=tok.vocab_size,
        eot_id=tok.eot_id, start_id=tok.start_id, corpus=corpus.name, split=split,
        split_rule=corpus.split_rule, corpus_info=corpus.info, n_bytes=n_bytes,
        request=request, doc_names=[d.name for d in docs],
        created=dict(utc=datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec="seconds"), tokenbound=info["tokenbound_version"],
            git_commit=info["git_commit"], python=sys.version.split()[0],
            platform=platform.platform()))


def prepare_corpus(corpus: Corpus, tok: Tokenizer, out: str | Path, request: dict, *,
                   force: bool = False, progress: bool = False) -> list[SplitSummary]:
    """Tokenize `corpus` with `tok` into `out/train` and `out/heldout` (module docstring)."""
    from tqdm.auto import tqdm

    out = Path(out)
    skip = existing_status(out, request, force, tok)
    results = []
    for split in SPLITS:
        docs = corpus.split(split)
        sizes = _text_bytes(docs, tok)
        n_bytes = sum(sizes)
        if skip[split]:
            results.append(SplitSummary(split, open_stream(out / split), n_bytes, True))
            continue
        if not docs:
            log.warning("the %s split of %s is empty", split, corpus.name)
        with tqdm(total=n_bytes, unit="B", unit_scale=True, desc=f"tokenize {split}",
                  disable=not progress, leave=False) as bar:
            stream = write_stream(out / split, _token_docs(docs, tok, sizes, bar),
                                  _meta(corpus, split, docs, tok, request, n_bytes),
                                  overwrite=True)
        results.append(SplitSummary(split, stream, n_bytes, False))
    return results


def prepare(corpus: str, tokenizer: Tokenizer, out: str | Path, *, force: bool = False,
            progress: bool = False, max_train_docs: int | None = None,
            **settings) -> list[SplitSummary]:
    """Corpus name or path + tokenizer -> `out/train`, `out/heldout`: `tokenbound prepare` and a
    recipe's prepare step both call this, so each reuses the other's streams.

    `settings`: `load_corpus`'s `heldout_fraction`, `doc_separator` (already unescaped), `glob`,
    `text_column`. `max_train_docs` keeps only the first N training documents (a smaller
    population `m`, fixed before any data is seen). When both splits already hold this request's
    streams, the corpus is not read.
    """
    out = Path(out)
    request = make_request(corpus, tokenizer, max_train_docs=max_train_docs, **settings)
    if all(existing_status(out, request, force, tokenizer).values()):
        return [SplitSummary(sp, st, int(st.meta.get("n_bytes", 0)), True)
                for sp, st in ((sp, open_stream(out / sp)) for sp in SPLITS)]
    given = {k: v for k, v in settings.items() if v is not None}
    corp = load_corpus(corpus, tokenizer=tokenizer, **given)
    if "doc_separator" in given and corp.info.get("kind") != "text-file":
        raise UserError(f"--doc-separator / doc_separator applies to a single text file corpus "
                        f"only, and {corpus} is not one; remove it")
    if max_train_docs is not None:
        corp = truncate_train(corp, int(max_train_docs))
    return prepare_corpus(corp, tokenizer, out, request, force=force, progress=progress)


def truncate_train(corp: Corpus, n: int) -> Corpus:
    """A copy of the corpus whose train split keeps its first `n` documents."""
    import dataclasses

    if n < 1:
        raise UserError(f"max_train_docs must be >= 1 (got {n})")
    docs, flags, n_train = [], [], 0
    for d, held in zip(corp.documents, corp.heldout):
        if not held:
            if n_train == n:
                continue
            n_train += 1
        docs.append(d)
        flags.append(held)
    return dataclasses.replace(corp, documents=docs, heldout=flags,
                               info={**corp.info, "max_train_docs": n})
