"""The vocabulary of a tokenizer file: its token strings in id order, to compare tokenizers.

Two tokenizers that map the same ids to the same strings read a stream's ids the same way, so
a stream prepared with one can be scored by a model that ships the other (a requantized GGUF of
the same model, a Hugging Face directory and its GGUF export). Read without building a tokenizer:

- `gguf`: the array `tokenizer.ggml.tokens` of the file's metadata (`gguf.GGUFReader`);
- `hf`: a `tokenizer.json`: `model.vocab` ({token: id} for BPE/WordPiece/WordLevel, a list of
  [token, score] pairs in id order for Unigram) and `added_tokens` ({id, content}).

A slot no token names is `None`.
"""

from __future__ import annotations

import json
from pathlib import Path

from tokenbound.data.tokenizer import _gguf_path
from tokenbound.errors import UserError

FILE_KINDS = ("hf", "gguf")  # tokenizers that live in a file (spec `KIND:PATH[#eot=TOKEN]`)


def spec_file(spec: str) -> Path | None:
    """The tokenizer file an `hf:`/`gguf:` spec names (the `smollm2` alias resolved); None for
    `bytes`, `chars:` and other specs. The file need not exist."""
    kind, _, rest = str(spec).partition(":")
    if kind not in FILE_KINDS or not rest:
        return None
    path_text = rest.rpartition("#eot=")[0] if "#eot=" in rest else rest
    if kind == "gguf":
        try:
            return _gguf_path(path_text)[0]
        except UserError:  # `gguf:smollm2` without its package
            return None
    path = Path(path_text).expanduser()
    return path / "tokenizer.json" if path.is_dir() else path


def gguf_tokens(path) -> list[str | None]:
    """Token strings of a GGUF file in id order (`tokenizer.ggml.tokens`); UserError if none."""
    import gguf

    try:
        field = gguf.GGUFReader(str(path)).fields.get("tokenizer.ggml.tokens")
    except Exception as exc:  # the reader raises many types on files it rejects
        raise UserError(f"cannot read the GGUF file {path}: {exc}") from None
    if field is None:
        raise UserError(f"the GGUF file {path} has no embedded vocabulary "
                        "(tokenizer.ggml.tokens)")
    return [bytes(field.parts[i]).decode("utf-8", errors="replace") for i in field.data]


def hf_tokens(path) -> list[str | None]:
    """Token strings of a Hugging Face `tokenizer.json` in id order (module docstring)."""
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
        vocab = doc["model"]["vocab"]
        pairs = (list(vocab.items()) if isinstance(vocab, dict)
                 else [(tok, i) for i, (tok, _) in enumerate(vocab)])
        pairs += [(t["content"], t["id"]) for t in doc.get("added_tokens") or []]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"cannot read the vocabulary of {path}: {exc}") from None
    out: list[str | None] = [None] * (max((int(i) for _, i in pairs), default=-1) + 1)
    for tok, i in pairs:
        out[int(i)] = tok
    return out


def spec_tokens(spec: str) -> list[str | None] | None:
    """Token strings in id order of the file an `hf:`/`gguf:` spec names; None when the spec
    names no file or the file is not on this machine."""
    path = spec_file(spec)
    if path is None or not path.is_file():
        return None
    return gguf_tokens(path) if str(spec).startswith("gguf:") else hf_tokens(path)
