"""One call from Python: a model and its training tokens in, a certificate out (METHOD 2, 3).

    import tokenbound
    cert = tokenbound.certify(model, tokens, doc_offsets=offsets, code_bits=C, start_id=10,
                              context_len=64)
    cert.best.value        # certified bound, bits per token (offset included)
    cert.best.empirical, cert.best.complexity_term, cert.best.sampling_term   # its terms

`certify` is the pipeline's evaluate and bound steps behind one function, built only from the
pieces the command line uses: `tokenbound.sources.load_model_fn` (a path), `write_stream` /
`open_stream` (the tokens), `tokenbound.evaluation.evaluate` (every token scored, or a sample)
and `experiments.steps.certify` (the bounds of `tokenbound.bounds`, every grid paid). It returns
the token-level `tokenbound.bounds.Certification`: `best` (a `BoundResult` with every term and
input), every `candidates` compared, and the separate document-level bound (exact mode).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import uuid
from pathlib import Path

import numpy as np

from tokenbound.bounds import Certification
from tokenbound.errors import UserError


def certify(model, data, *, code_bits: int | None = None, doc_offsets=None,
            vocab_size: int | None = None, start_id: int | None = None, eot_id: int | None = None,
            tokenizer: str | None = None, context_len: int | None = None,
            stride: int | None = None, mode: str = "exact", n_samples: int | None = None,
            seed: int = 0, delta: float = 0.05, extra_bits: int = 0, extra_candidates: int = 1,
            estimator: str = "betting", device: str = "cpu", dtype: str = "fp32",
            batch_size: int | str = 8, out_dir: str | os.PathLike | None = None,
            progress: bool = False) -> Certification:
    """Certified token-level bound of `model` on the training tokens `data`.

    model: one of
      - a path: a tokenbound message (`.tbm`, from `tokenbound compress`; C defaults to its
        exact length, 8 x its bytes), a `.gguf` file (C defaults to 8 x its bytes) or a Hugging
        Face model directory (give `code_bits`);
      - a Hugging Face causal-LM object (`transformers.PreTrainedModel`) or any callable
        `(B, T) int64 tensor -> (B, T, V) logits` (a torch module or a function), scored as it
        is (its own device and dtype; the token ids are sent to `device`, or to the module's
        parameters' device). Give `code_bits`.
    data: a token stream directory (`tokenbound prepare`), an opened `TokenStream`, or a 1-D
      integer array of token ids (the documents concatenated) with `doc_offsets` (int array
      `[0, ..., len(data)]`, document d = `data[off[d]:off[d+1]]`; default: one document),
      `start_id` (the context-only token fed before each document; defaults to `eot_id`),
      `eot_id` (when set, every document must end with it) and `vocab_size` (default: the
      model's logits width). `tokenizer`: the spec recorded with an array (optional).
    code_bits: C, the length in bits of a message that decodes to exactly this model (every
      trained number included) and that was fixed as a code before these tokens were seen
      (METHOD 2.1). It must be a real, decodable description: the bound is only as honest as
      C. Below the message's own length it is refused; a model described relative to a base
      (METHOD 2.9) needs that base to be independent of `data`, which is the caller's statement.
    context_len, stride: the evaluation windows (METHOD 3; default: the model's maximum
      context, block windows `stride = context_len`). mode "exact" scores every token (betting,
      Bernstein and Azuma families); "sampled" scores the windows of `n_samples` positions
      drawn with `seed` (Azuma and Bernstein with sampling terms, `estimator`).
    delta, extra_bits, extra_candidates: the confidence budget, bits for choices made on the
      data outside the fixed grids, and the number of models or settings compared on these
      results (paid ln of it), as for `tokenbound bound`.
    out_dir: keep the evaluation (and an array's stream) there, resumable; default: a
      temporary directory removed afterwards.

    Returns the token-level `Certification` (bits per token; a value labelled `trivial` was
    capped at `a + c`). Raises `tokenbound.errors.UserError` for a mistake in the arguments.
    """
    from tokenbound.evaluation import EvalConfig, evaluate
    from tokenbound.experiments import steps

    source, file_bits = _as_source(model, device, dtype)
    code_bits = _check_code_bits(code_bits, file_bits, model)
    with _workdir(out_dir) as work:
        stream = _as_stream(data, work, doc_offsets=doc_offsets, vocab_size=vocab_size or
                            source.vocab_size, start_id=start_id, eot_id=eot_id,
                            tokenizer=tokenizer)
        length = context_len or source.max_context
        if length is None:
            raise UserError("certify: the model does not say its longest context; pass "
                            "context_len=L (the window length, in tokens)")
        cfg = EvalConfig(context_len=int(length), stride=stride, mode=mode, n_samples=n_samples,
                         seed=seed, batch_size=batch_size, device=device, dtype=dtype)
        evaluate(source, stream, str(work / "eval"), cfg, progress=progress)
        res = steps.certify(work / "eval", code_bits, delta=delta, extra_bits=extra_bits,
                            extra_candidates=extra_candidates, estimator=estimator)
    return Certification.from_dict(res.token)


@contextlib.contextmanager
def _workdir(out_dir):
    if out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        yield Path(out_dir)
        return
    with tempfile.TemporaryDirectory(prefix="tokenbound-") as tmp:
        yield Path(tmp)


def _as_source(model, device: str, dtype: str):
    """(ModelSource, 8 x the file's bytes or None) for a path, an HF object or a callable."""
    from tokenbound import sources
    from tokenbound.evaluation.sources import ModelSource

    if isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        src = sources.load_model_fn(path, device=device, dtype=dtype)
        return src, (8 * os.path.getsize(path) if os.path.isfile(path) else None)
    if not callable(model):
        raise UserError(f"certify: model must be a path, a Hugging Face model or a callable "
                        f"(B, T) -> (B, T, V) logits, got {type(model).__name__}")
    target = _device_of(model, device)
    if hasattr(model, "get_input_embeddings") and hasattr(model, "config"):  # transformers

        def fn(idx):
            return model(input_ids=idx.to(target), use_cache=False).logits  # (B, T, V)
    else:

        def fn(idx):
            return sources.logits_of(model(idx.to(target)))  # (B, T, V)

    config = getattr(model, "config", None) or getattr(model, "cfg", None)
    ident = {"kind": "python", "sha256": _weights_sha256(model)}
    return ModelSource(fn, sources.probe_vocab(fn, target), sources.context_limit(config)
                       if config is not None else None, ident), None


def _device_of(model, device: str):
    params = getattr(model, "parameters", None)
    first = next(iter(params()), None) if callable(params) else None
    return str(first.device) if first is not None else device


def _weights_sha256(model) -> str:
    """sha256 of a torch module's state (names, dtypes, shapes, bytes), so that an `out_dir`
    is only resumed by the same weights; a random id for other callables (never resumed)."""
    state = getattr(model, "state_dict", None)
    if not callable(state):
        return "callable-" + uuid.uuid4().hex
    import torch

    h = hashlib.sha256()
    for name, t in state().items():
        t = t.detach().cpu().contiguous().reshape(-1)  # (numel,)
        h.update(f"{name}:{t.dtype}:{t.numel()};".encode())
        h.update(t.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _check_code_bits(code_bits, file_bits, model) -> int:
    if code_bits is None:
        if file_bits is None:
            raise UserError("certify: pass code_bits=C, the exact length in bits of a message "
                            "that decodes to this model (see the docstring)")
        return int(file_bits)
    if isinstance(code_bits, bool) or int(code_bits) != code_bits or code_bits < 0:
        raise UserError(f"certify: code_bits must be an integer >= 0, got {code_bits!r}")
    if file_bits is not None and code_bits < file_bits:
        raise UserError(f"certify: {os.fspath(model)} is {file_bits // 8:,} bytes, so C is at "
                        f"least {file_bits:,} bits; leave code_bits out to use its length")
    return int(code_bits)


def _as_stream(data, work: Path, *, doc_offsets, vocab_size, start_id, eot_id, tokenizer):
    """A token stream: opened from a directory, as given, or written from an array."""
    from tokenbound.data import open_stream, write_stream

    arrays_only = (doc_offsets, start_id, eot_id, tokenizer)
    if isinstance(data, (str, os.PathLike)) or hasattr(data, "doc_offsets"):
        if any(x is not None for x in arrays_only):
            raise UserError("certify: doc_offsets, start_id, eot_id and tokenizer go with a "
                            "token array; a stream carries its own")
        return open_stream(data) if isinstance(data, (str, os.PathLike)) else data
    tokens = np.asarray(data)
    if tokens.ndim != 1 or tokens.size == 0 or not np.issubdtype(tokens.dtype, np.integer):
        raise UserError(f"certify: data must be a non-empty 1-D integer array of token ids "
                        f"(got shape {tokens.shape}, dtype {tokens.dtype}) or a stream")
    off = (np.array([0, tokens.size]) if doc_offsets is None
           else np.asarray(doc_offsets, dtype=np.int64))
    if off.ndim != 1 or off.size < 2 or off[0] != 0 or off[-1] != tokens.size:
        raise UserError(f"certify: doc_offsets must run from 0 to len(data) = {tokens.size:,}")
    start = eot_id if start_id is None else start_id
    if start is None:
        raise UserError("certify: pass start_id (the token fed before each document; e.g. 10, "
                        "a newline, for bytes) or eot_id")
    meta = {"tokenizer": tokenizer, "vocab_size": int(vocab_size), "eot_id": eot_id,
            "start_id": int(start), "source": "tokenbound.certify (array)"}
    docs = (tokens[a:b] for a, b in zip(off[:-1], off[1:]))
    try:
        return write_stream(work / "stream", docs, meta, overwrite=True)
    except ValueError as exc:  # empty document, a document without its eot_id, a bad id
        raise UserError(f"certify: {exc}") from None
