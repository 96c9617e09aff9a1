"""A seeded split of the training documents into a prior part and a bound part (METHOD 2.9).

`split_documents(n_docs, prior_fraction, seed)` marks `k = round(prior_fraction * n_docs)`
documents as the prior part `D_0`: the first `k` of `numpy.random.default_rng([seed, SALT])
.permutation(n_docs)`; the rest, in their original order, are the bound part `D_1`. The rule
depends only on `(n_docs, prior_fraction, seed)`, so it is fixed before any token is seen.

`write_split(train_dir, out_root, prior_fraction, seed)` writes `OUT/prior` and `OUT/bound`, two
token streams with the tokenizer, ids and document contents of `train_dir`. A base trained on
`OUT/prior` alone is a valid prior for the tokens of `OUT/bound` (`m_1` of them): the bound covers
those tokens only. Each stream's meta.json holds `prior_split`:

    {"of": identity of the split stream, "seed", "prior_fraction", "part": "prior" | "bound",
     "n_docs": [n_prior, n_bound], "n_tokens": [m_0, m_1], "prior_identity": identity of
     OUT/prior}

Example: 10 documents, prior_fraction 0.5, seed 0 -> 5 documents in each part.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tokenbound.errors import UserError

SALT = 0x5B117  # separates this permutation from every other use of the same seed
PARTS = ("prior", "bound")
_COPIED = ("tokenizer", "tokenizer_sha256", "vocab_size", "eot_id", "start_id")


def split_documents(n_docs: int, prior_fraction: float, seed: int) -> np.ndarray:
    """Boolean mask (n_docs,): True for the documents of the prior part (see module docstring).

    Raises UserError when a part would be empty."""
    if not 0.0 < prior_fraction < 1.0:
        raise UserError(f"--prior-split must lie strictly between 0 and 1, got {prior_fraction}")
    k = int(round(prior_fraction * n_docs))
    if k < 1 or k > n_docs - 1:
        part = "prior" if k < 1 else "bound"
        raise UserError(f"--prior-split {prior_fraction} of {n_docs:,} documents leaves the "
                        f"{part} part empty; choose a fraction that keeps at least one document "
                        "in each part (or a corpus with more documents)")
    perm = np.random.default_rng([int(seed), SALT]).permutation(n_docs)
    mask = np.zeros(n_docs, dtype=bool)
    mask[perm[:k]] = True
    return mask


def _meta(stream, part: str, info: dict) -> dict:
    meta = {k: stream.meta.get(k) for k in _COPIED if k in stream.meta}
    meta["prior_split"] = {**info, "part": part}
    return meta


def _existing(path: Path, info: dict, overwrite: bool):
    """The stream at `path` when it is this split's part; None when there is none (or when
    `overwrite`); UserError when it holds another split."""
    from tokenbound.data import open_stream

    if overwrite or not (path / "meta.json").is_file():
        return None
    s = open_stream(str(path))
    got = {k: v for k, v in (s.meta.get("prior_split") or {}).items()
           if k not in ("part", "prior_identity")}
    if got != info:
        raise UserError(f"{path} holds another split (or another stream); use another --out, "
                        "or --force to replace it")
    return s


def write_split(train_dir, out_root, prior_fraction: float, seed: int, *,
                overwrite: bool = False) -> tuple:
    """Write OUT/prior and OUT/bound from the stream `train_dir`; returns both streams.

    Idempotent: parts already written by the same split are kept. Nothing is written when a
    part would be empty."""
    from tokenbound.data import open_stream, write_stream

    stream = open_stream(str(train_dir))
    mask = split_documents(stream.n_docs, prior_fraction, seed)
    off = np.asarray(stream.doc_offsets, dtype=np.int64)
    sizes = np.diff(off)
    info = {"of": stream.identity, "seed": int(seed), "prior_fraction": float(prior_fraction),
            "n_docs": [int(mask.sum()), int((~mask).sum())],
            "n_tokens": [int(sizes[mask].sum()), int(sizes[~mask].sum())]}
    out = Path(out_root)
    streams = []
    for part, keep in zip(PARTS, (mask, ~mask)):
        found = _existing(out / part, info, overwrite)
        if found is None:
            extra = {"prior_identity": streams[0].identity} if part == "bound" else {}
            docs = (np.asarray(stream.tokens[off[d]:off[d + 1]]) for d in np.flatnonzero(keep))
            found = write_stream(out / part, docs, _meta(stream, part, {**info, **extra}),
                                 overwrite=True)
        streams.append(found)
    return tuple(streams)
