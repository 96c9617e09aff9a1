"""Post-training quantization of a pretrained causal LM, with its loss measured before and after.

    rep = compress_hf_groupwise("hf_dir", "model.tbm", GroupConfig(bits=4, group_size=32),
                                stream_dir="data/train")

The loss sample (a diagnostic, not part of any certificate): `n_windows` windows of
`context_len + 1` consecutive tokens of the stream as stored (documents packed, boundaries
crossed), their start positions drawn uniformly from `0 .. m - context_len - 1` by
`numpy.random.default_rng(LOSS_SEED)` and sorted; the model reads `tokens[u : u + L]` and
predicts `tokens[u + 1 : u + L + 1]`. Loss = mean cross-entropy in bits per predicted token
(float32 log-softmax, float64 sum), the same windows before and after quantization.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import torch

from tokenbound.bounds.basics import LN2
from tokenbound.errors import UserError
from tokenbound.experiments.results import Compressed

log = logging.getLogger(__name__)

LOSS_SEED = 1234  # the seed of the loss sample's window starts (`steps.LOSS_SEED` too)


def loss_windows(stream, context_len: int, n_windows: int, seed: int = LOSS_SEED) -> np.ndarray:
    """The fixed loss sample: (n_windows, context_len + 1) int64 token windows (module doc)."""
    m = len(stream)
    if m < context_len + 1:
        context_len = m - 1
    if context_len < 1:
        raise UserError("the stream is too short for a loss sample (fewer than 2 tokens)")
    starts = np.sort(np.random.default_rng(seed).integers(0, m - context_len, size=n_windows))
    tokens = np.asarray(stream.tokens)
    return np.stack([tokens[u:u + context_len + 1].astype(np.int64) for u in starts])


@torch.no_grad()
def causal_lm_loss(model, windows: np.ndarray, batch_size: int = 1) -> float:
    """Mean bits per predicted token of a Hugging Face causal LM on `windows` (n, L + 1)."""
    device = next(iter(model.parameters())).device
    total, count = 0.0, 0
    for i in range(0, len(windows), batch_size):
        w = torch.from_numpy(windows[i:i + batch_size]).to(device)  # (b, L+1)
        logits = model(input_ids=w[:, :-1], use_cache=False).logits.float()  # (b, L, V)
        nll = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                                w[:, 1:].reshape(-1), reduction="sum")
        total += float(nll.double())
        count += int(w[:, 1:].numel())
    return total / count / LN2


def quantization_warnings(before: float | None, after: float | None, vocab_size: int,
                          saved_bits: float, m: int | None) -> list[str]:
    """Warnings when quantization costs more than a bound can afford (empty list otherwise).

    - the quantized loss is at or above random guessing, log2(V) bits/token;
    - the loss increase exceeds `saved_bits / m`, the complexity (bits per token of the m
      tokens that a bound is taken on) that the quantized message saves against a float16 one.
    """
    out = []
    if after is None:
        return out
    guess = math.log2(vocab_size)
    if after >= guess:
        out.append(f"the quantized model's loss {after:.3f} bits/token is at or above random "
                   f"guessing (log2 {vocab_size:,} = {guess:.3f}): use more bits or smaller "
                   "groups")
    if before is not None and m and after - before > max(saved_bits, 0) / m:
        out.append(f"quantization costs {after - before:.3f} bits/token, more than the "
                   f"{max(saved_bits, 0) / m:.3f} bits/token of complexity it saves on "
                   f"{m:,} tokens against a float16 message: keep more bits")
    return out


def compress_hf_groupwise(model_or_dir, out, gcfg, *, stream_dir=None, context_len: int = 256,
                          n_windows: int = 4, batch_size: int = 1, extra: dict | None = None,
                          source: str = "hf") -> Compressed:
    """Per-group quantization of a Hugging Face causal LM (a directory or a loaded model) into
    the message `out`, which is decoded back and checked bit for bit; with `stream_dir`, the
    loss on the fixed sample (module doc) before and after, and warnings. Returns the report."""
    from tokenbound.compression.groupwise import encode_groupwise, quantize_groupwise_
    from tokenbound.sources import load_hf_model

    model = model_or_dir if not isinstance(model_or_dir, (str, Path)) else \
        load_hf_model(str(model_or_dir), torch_dtype=torch.float32, flag="--hf")
    stream = windows = None
    if stream_dir is not None:
        from tokenbound.data import open_stream

        stream = open_stream(str(stream_dir))
        windows = loss_windows(stream, context_len, n_windows)
    before = None if windows is None else causal_lm_loss(model, windows, batch_size)
    blocks = quantize_groupwise_(model, gcfg)
    after = None if windows is None else causal_lm_loss(model, windows, batch_size)
    ext = dict(extra or {}, source=source)
    if stream is not None:
        ext.setdefault("tokenizer", stream.meta.get("tokenizer"))
    message = encode_groupwise(model, model.config, gcfg, blocks, ext)
    msg = _write_and_check(model, message, out)
    saved = 16 * msg["trained_parameters"] - msg["total_bits"]
    vocab = int(model.config.vocab_size)
    sample = None if windows is None else {
        "stream": str(stream_dir), "windows": int(len(windows)),
        "tokens_per_window": int(windows.shape[1] - 1), "seed": LOSS_SEED,
        "how": "uniform seeded window starts over the stream (a diagnostic)"}
    return Compressed(
        **msg, quant=gcfg.to_dict(), hf=str(model_or_dir) if isinstance(model_or_dir, (str, Path))
        else None, quantized_parameters=int(sum(b.codes.size for b in blocks.values())),
        loss_before=before, loss_after=after,
        loss_increase=None if before is None else after - before, loss_sample=sample,
        random_guess_bits_per_token=math.log2(vocab),
        warnings=quantization_warnings(before, after, vocab, saved,
                                       None if stream is None else len(stream)))


def _write_and_check(model, message: bytes, out) -> dict:
    """Write `message` atomically to `out`, decode it and check every tensor bit for bit."""
    from tokenbound.compression import decode
    from tokenbound.fileio import atomic_write_bytes

    atomic_write_bytes(Path(out), message)
    model2, _, info = decode(Path(out))
    for (name, a), (_, b) in zip(model.state_dict().items(), model2.state_dict().items()):
        if not torch.equal(a.cpu(), b):
            raise RuntimeError(f"decoded tensor {name} differs from the quantized model")
    n = info["trained_parameters"]
    return {"out": str(out), "total_bits": info["total_bits"],
            "bits_by_part": info["bits_by_part"], "prefix_free_bits": info["prefix_free_bits"],
            "trained_parameters": n, "bits_per_parameter": info["total_bits"] / max(n, 1),
            "sha256": info["sha256"]}


def compress_gguf(path, out=None, *, progress: bool = False) -> dict:
    """The code lengths of a GGUF file (`gguf_code_length`) and, with `out`, its message: the
    file's own block codes and fp16 scales in a TBQG message (`gguf_codes.gguf_message`),
    decoded back and checked bit for bit. `code_bits_certificate` = 8 x the message's bytes
    (None without `out`): the C of `bound --message OUT` for an evaluation of `--model OUT`."""
    from tokenbound.compression import gguf_code_length

    rep = gguf_code_length(path, progress=progress)
    n = max(rep["parameters"], 1)
    rep.update(gguf=str(path), bits_per_parameter=rep["stored_bits"] / n,
               entropy_coded_bits_per_parameter=rep["entropy_coded_bits"] / n,
               code_bits_certificate=None, message=None)
    if out is None:
        rep["code_bits_note"] = ("pass --out FILE to write the GGUF model's message; its length "
                                 "is the certificate's C (code_bits_certificate)")
        return rep
    message, model = gguf_model_message(path)
    msg = _write_and_check(model, message, out)
    rep.update(code_bits_certificate=msg["total_bits"], message=str(out),
               message_bits_by_part=msg["bits_by_part"], sha256=msg["sha256"],
               certificate_bits_per_parameter=msg["total_bits"] / n,
               code_bits_note=("C = code_bits_certificate: evaluate --model MESSAGE, then bound "
                               "--message MESSAGE. stored_bits and entropy_coded_bits count the "
                               "tensor data alone (no message); file_bits is the GGUF file, "
                               "the C when the .gguf itself is evaluated"))
    return rep


def gguf_model_message(path) -> tuple[bytes, object]:
    """(message bytes, the float32 transformers model it decodes to) of a Llama GGUF file."""
    from gguf import GGUFReader

    from tokenbound.compression.gguf_codes import gguf_message
    from tokenbound.sources import load_hf_model

    loaded = load_hf_model(str(path), torch_dtype=torch.float32, flag="--gguf")
    cfg = loaded.config
    if hasattr(cfg, "quantization_config"):  # the rebuilt model is a plain float one
        del cfg.quantization_config
    model = type(loaded)(cfg).eval()
    model.load_state_dict(loaded.state_dict())
    del loaded
    reader = GGUFReader(str(path))
    return gguf_message(reader.tensors, model, {"gguf": Path(path).name}), model
