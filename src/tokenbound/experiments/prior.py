"""What a certificate's prior is, and who vouches for it (METHOD 2.1, 2.9).

The bounds hold for a prior fixed without looking at the tokens being bounded. For a model
trained here and written as a whole message, that is the code itself (`2^-C` over messages)
and nothing needs to be stated. Two cases rest on a fact that tokenbound cannot check:

- a fine-tuned model (a delta message): the prior is the base `B` plus the code of the
  adapters, `2^-L(h | B)`; valid only if `B` was fixed independently of these tokens;
- a Hugging Face or GGUF model certified with a code length below its own files' size
  (`bound --code-bits 0`, say): the prior singles that model out in advance.

There the user must vouch for the independence in words (`--base-independent "REASON"`); the
statement is stored verbatim in the report beside the prior's identity, and without it the
bound is refused. A base trained here on the very stream being bounded, or on the whole stream
that a split's bound part came from, is refused outright.
"""

from __future__ import annotations

import os

from tokenbound.errors import UserError

FLAG = "--base-independent"


def _files_bytes(path: str | None) -> int | None:
    """`fileio.files_bytes` of the model's files; None when they are missing."""
    from tokenbound.fileio import files_bytes

    return files_bytes(path) if path and os.path.exists(path) else None


def _need(statement: str | None, why: str) -> str:
    if statement is None or not statement.strip():
        raise UserError(f"{why}; if it was fixed without looking at these tokens, say why with "
                        f'{FLAG} "REASON" (stored in the report), else certify another model')
    return statement


def prior_section(model: dict, code_bits: int, statement: str | None, *,
                  stream_identity: str | None = None, n_tokens: int | None = None,
                  stream_split: dict | None = None) -> dict:
    """The report's `prior`: kind, identity, what the certificate assumes, the statement.

    `model` is the evaluation manifest's model identity (`ModelSource.ident`), `code_bits` the
    C used, `stream_split` the scored stream's `prior_split` (`data/split.py`) when it is a part of
    a prior split. Raises UserError when the prior needs a statement and none is given.
    """
    tokens = f"the {n_tokens:,} tokens being bounded" if n_tokens else "the tokens being bounded"
    base = model.get("prior")
    if base and _is_split_prior(base, stream_split):
        return _split_section(base, stream_split, code_bits, statement)
    if base:
        seen = {stream_identity, (stream_split or {}).get("of")} - {None}
        if base.get("kind") == "run" and base.get("data_identity") in seen:
            raise UserError(f"the base {base.get('path')} was trained on the stream being "
                            "bounded (or on the whole stream it is a part of), so it is not a "
                            "prior for it; certify on other tokens or use a base trained on a "
                            "disjoint part of the data (prepare --prior-split)")
        said = _need(statement, f"the fine-tuned model's prior is its base {base.get('path')} "
                                f"(sha256 {base.get('sha256')}), which tokenbound cannot check "
                                f"was fixed independently of {tokens}")
        return {"kind": "base", "base": base, "code_bits": int(code_bits), "statement": said,
                "assumes": (f"The prior is the base model ({base.get('kind')} "
                            f"{base.get('path')}, sha256 {base.get('sha256')}) plus the code "
                            f"of the adapters: P(h) = 2^-L(h|B) with L(h|B) = C = "
                            f"{int(code_bits):,} bits; the base is part of the decoder and is "
                            f"not charged. The certificate holds only if the base was fixed "
                            f"without looking at {tokens}; it fails, for example, if the base "
                            f"was pretrained on a corpus that contains them.")}
    kind = model.get("kind")
    if kind in ("hf", "gguf"):
        own = _files_bytes(model.get("path"))
        if own is None or code_bits < 8 * own:
            size = "unknown (its files are missing)" if own is None else f"{8 * own:,} bits"
            said = _need(statement, f"--code-bits {code_bits:,} is below the size of the "
                                    f"{kind} model's own files ({size}): the prior must have "
                                    "singled this model out in advance")
            return {"kind": "fixed-model", "model": dict(model), "code_bits": int(code_bits),
                    "statement": said,
                    "assumes": (f"The prior gives the model {model.get('path')} (sha256 "
                                f"{model.get('sha256')}) probability 2^-{int(code_bits):,}: "
                                f"the certificate holds only if that model was chosen without "
                                f"looking at {tokens}.")}
    section = {"kind": "code", "code_bits": int(code_bits),
               "assumes": (f"The prior is 2^-C over prefix-free messages (C = {int(code_bits):,}"
                           " bits): the coding scheme, grids and recipe were fixed before "
                           "the data was seen.")}
    if statement:
        section["statement"] = statement
    return section


def _is_split_prior(base: dict, split: dict | None) -> bool:
    """True when `base` is a run trained here on exactly the prior part of the split whose
    bound part is being scored: then no statement is needed."""
    return (base.get("kind") == "run" and isinstance(split, dict) and split.get("part") == "bound"
            and split.get("prior_identity") is not None
            and base.get("data_identity") == split.get("prior_identity"))


def _split_section(base: dict, split: dict, code_bits: int, statement: str | None) -> dict:
    (n0, n1), (m0, m1) = split["n_docs"], split["n_tokens"]
    section = {"kind": "split", "base": base, "split": split, "code_bits": int(code_bits),
               "covers": {"part": "bound", "n_docs": n1, "n_tokens": m1,
                          "of_docs": n0 + n1, "of_tokens": m0 + m1},
               "assumes": (f"The prior is the base {base.get('path')} (sha256 "
                           f"{base.get('sha256')}), trained here on the prior part of a seeded "
                           f"split of the training documents (seed {split['seed']}, prior "
                           f"fraction {split['prior_fraction']}: {n0:,} documents, {m0:,} tokens) "
                           f"fixed before training, plus the code of the adapters (C = "
                           f"{int(code_bits):,} bits). The certificate covers the {m1:,} tokens "
                           f"of the {n1:,} documents of the bound part only (m = m_1), "
                           f"conditioned on the prior part; it assumes the split, the base's "
                           f"recipe and this model's recipe were not chosen by looking at "
                           f"results.")}
    if statement:
        section["statement"] = statement
    return section


def format_prior(prior: dict) -> list[str]:
    """Human lines for the prior (the CLI and report.md)."""
    lines = [f"prior: {prior['assumes']}"]
    if prior.get("statement"):
        lines.append(f'  stated by the user ({FLAG}): "{prior["statement"]}"')
    return lines
