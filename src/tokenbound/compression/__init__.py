"""tokenbound.compression: quantization, entropy coding and exact message lengths (METHOD 4).

    qstate = quantize_(model, QuantConfig(levels=11, method="uniform", grouping="model"))
    qstate = qat_finetune(model, qstate, batches, steps=100, lr=5e-5)     # optional
    message = encode(model, cfg, qstate, extra_header={"tokenizer": ...})  # bytes
    model2, cfg2, info = decode(message)      # identical weights; info["bits_by_part"]
    C = 8 * len(message); prefix_free_bits(C) == C + 2 log2 C

Pretrained GGUF checkpoints: `gguf_code_length(path)`; Hugging Face models in float weights go
through the same `quantize_`/`encode`/`decode` (builder "hf").
"""

from tokenbound.compression.adapters import BUILDERS, Builder, builder_for, register_builder
from tokenbound.compression.entropy import (decode_symbols, empirical_entropy_bits,
                                            encode_symbols)
from tokenbound.compression.message import (bits_by_part, decode, encode, prefix_free_bits)
from tokenbound.compression.qat import qat_finetune
from tokenbound.compression.quantize import (QUANTIZERS, QuantConfig, QuantGroup, QuantizedState,
                                             quantize_, register_quantizer)
from tokenbound.compression.wire import MessageError
from tokenbound.compression import delta as _delta  # noqa: F401  (registers builder "delta")


def gguf_code_length(path, tensors=None, progress: bool = False) -> dict:
    """See `tokenbound.compression.gguf_codes.gguf_code_length` (imports gguf lazily)."""
    from tokenbound.compression.gguf_codes import gguf_code_length as _impl

    return _impl(path, tensors=tensors, progress=progress)


__all__ = [
    "BUILDERS", "Builder", "MessageError", "QUANTIZERS", "QuantConfig", "QuantGroup",
    "QuantizedState", "bits_by_part", "builder_for", "decode", "decode_symbols",
    "empirical_entropy_bits", "encode", "encode_symbols", "gguf_code_length", "prefix_free_bits",
    "qat_finetune", "quantize_", "register_builder", "register_quantizer",
]
