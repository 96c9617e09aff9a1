"""The stream's tokenizer against the model's (`evaluate` checks it before anything is written).

A message records the tokenizer spec it was trained with; a Hugging Face directory ships its
`tokenizer.json` and a GGUF file its embedded vocabulary (`tokenbound.sources`). A mismatch is
a UserError naming both tokenizers and the `prepare --tokenizer` that fixes it.
"""

from __future__ import annotations

import logging
import os

from tokenbound.errors import UserError
from tokenbound.evaluation.sources import ModelSource

log = logging.getLogger(__name__)


def check_tokenizer(stream, model: ModelSource) -> None:
    """UserError when the model's tokenizer and the stream's are both known and differ.

    A Hugging Face or GGUF model ships its tokenizer (`model.tokenizer_sha256` set): the stream
    must have been prepared with an `hf:`/`gguf:` tokenizer whose file has the same sha256 or,
    failing that, the same vocabulary (token strings in id order, `data.vocab`), so that a
    requantized GGUF of the same model is accepted; a `bytes`/`chars:` stream is refused.
    Otherwise (a message records only its spec) `hf:`/`gguf:` specs hold an absolute path that
    may differ between machines for the same file, so those are compared by kind, file name and
    end-of-text token only."""
    ours = getattr(stream, "meta", {}).get("tokenizer")
    theirs = model.tokenizer
    if not ours or not theirs:
        return
    if model.tokenizer_sha256:
        check_file_tokenizer(stream, str(theirs), model.tokenizer_sha256)
        return
    if _tokenizer_key(ours) == _tokenizer_key(theirs):
        return
    raise UserError(f"the model was trained with tokenizer {theirs!r} but the stream was "
                    f"prepared with {ours!r}; prepare the data with --tokenizer {theirs} (or "
                    "evaluate a model trained on this stream)")


def check_file_tokenizer(stream, theirs: str, sha256: str | None) -> None:
    """`check_tokenizer` for a model that ships the tokenizer file of spec `theirs` (hf: or
    gguf:) with that `sha256`. With `sha256` None (before the model is loaded) only a stream
    without a tokenizer file of its own (`bytes`, `chars:`) is refused."""
    from tokenbound.data.vocab import FILE_KINDS, spec_file, spec_tokens

    ours = str(getattr(stream, "meta", {}).get("tokenizer") or "")
    if not ours or (sha256 and stream.meta.get("tokenizer_sha256") == sha256):
        return  # nothing recorded, or the very same file
    why = "no tokenizer file of its own"
    if ours.partition(":")[0] in FILE_KINDS:
        if sha256 is None:
            return
        mine, why = spec_tokens(ours), "a different vocabulary"
        if mine is None:
            why = f"its tokenizer file {spec_file(ours)} is not on this machine to compare"
        elif mine == spec_tokens(theirs):
            log.info("tokenizer %s: same vocabulary as the model's %s", ours, theirs)
            return
    where = getattr(stream, "path", None)
    raise UserError(f"the stream{f' {where}' if where else ''} was prepared with tokenizer "
                    f"{ours!r} ({why}), not the model's own {theirs!r}; prepare the data "
                    f"with --tokenizer {theirs}")


def _tokenizer_key(spec: str) -> str:
    """`spec` with the directory of an hf:/gguf: file dropped (`tokenizer_from_spec` syntax)."""
    kind, _, rest = str(spec).partition(":")
    if kind not in ("hf", "gguf"):
        return str(spec)
    path, sep, eot = rest.rpartition("#eot=") if "#eot=" in rest else (rest, "", "")
    return f"{kind}:{os.path.basename(path)}{sep}{eot}"
