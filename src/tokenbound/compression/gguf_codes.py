"""Code length of a pretrained, already-quantized GGUF checkpoint (METHOD section 4).

A GGUF file is charged from what it stores, never from a nominal bit width:
- ``stored_bits``: 8 x the bytes of all tensor data as stored (quantized blocks, floats);
- ``metadata_bits``: the rest of the file (GGUF header, architecture and tokenizer metadata,
  alignment padding) = ``file_bits - stored_bits``;
- ``file_bits``: 8 x the file size;
- ``entropy_coded_bits``: the tensor data re-coded losslessly: in every block of Q4_0, Q4_1 and
  Q8_0 tensors the per-block fp16 scale (and min) are kept as stored, and the integer codes of
  the tensor (4-bit nibbles 0..15; Q8_0 int8 shifted to 0..255) are ANS-coded with
  `constriction` under the tensor's static empirical distribution. Per coded tensor this
  counts: scales/mins bytes + the symbol counts (one LEB128 varint per level) + the payload
  length varint + the payload (whole 32-bit words). Float tensors and any other quantization
  type are counted as stored (listed under ``by_type``). A full message would cost
  ``entropy_coded_bits + metadata_bits``.

Block layouts (ggml): Q4_0 = fp16 d + 16 bytes (32 weights); Q4_1 = fp16 d + fp16 m + 16 bytes;
in both, byte j holds weight j in its low nibble and weight j + 16 in its high nibble.
Q8_0 = fp16 d + 32 int8. `block_codes` / `pack_blocks` convert exactly between the stored
bytes and (side bytes, codes), so the coded form decodes to the identical file bytes.
"""

from __future__ import annotations

import logging
import os

import numpy as np

from tokenbound.compression.entropy import decode_symbols, encode_symbols, symbol_counts
from tokenbound.compression.wire import varint_len

log = logging.getLogger(__name__)

# type name -> (block bytes, side bytes (scales/mins), alphabet size)
LAYOUTS = {"Q4_0": (18, 2, 16), "Q4_1": (20, 4, 16), "Q8_0": (34, 2, 256)}


def block_codes(raw: np.ndarray, type_name: str) -> tuple[np.ndarray, np.ndarray]:
    """Stored bytes (n_blocks * block,) uint8 -> (side (nb, s) uint8, codes (nb * 32,) int64)."""
    block, side, _ = LAYOUTS[type_name]
    blocks = np.asarray(raw, dtype=np.uint8).reshape(-1, block)  # (nb, block)
    q = blocks[:, side:]  # (nb, 16) nibbles or (nb, 32) int8
    if type_name == "Q8_0":
        codes = q.view(np.int8).astype(np.int64) + 128  # (nb, 32) in 0..255
    else:
        codes = np.concatenate([q & 0x0F, q >> 4], axis=1).astype(np.int64)  # (nb, 32)
    return blocks[:, :side].copy(), codes.reshape(-1)


def pack_blocks(side: np.ndarray, codes: np.ndarray, type_name: str) -> np.ndarray:
    """Inverse of `block_codes`: -> stored bytes (nb * block,) uint8."""
    nb = side.shape[0]
    c = np.asarray(codes, dtype=np.int64).reshape(nb, 32)
    if type_name == "Q8_0":
        q = (c - 128).astype(np.int8).view(np.uint8)  # (nb, 32)
    else:
        q = (c[:, :16] | (c[:, 16:] << 4)).astype(np.uint8)  # (nb, 16)
    return np.concatenate([side, q], axis=1).reshape(-1)


def code_tensor(raw: np.ndarray, type_name: str) -> dict:
    """Entropy-code one quantized tensor; returns side, counts, words and its exact bits."""
    _, _, levels = LAYOUTS[type_name]
    side, codes = block_codes(raw, type_name)
    counts = symbol_counts(codes, levels)
    words = encode_symbols(codes, counts)
    bits = 8 * (side.size + sum(varint_len(int(c)) for c in counts) + varint_len(len(words))) \
        + 32 * len(words)
    return {"side": side, "counts": counts, "words": words, "bits": int(bits)}


def decode_tensor(coded: dict, type_name: str) -> np.ndarray:
    """Stored bytes of a tensor from `code_tensor`'s output (exact inverse)."""
    return pack_blocks(coded["side"], decode_symbols(coded["words"], coded["counts"]), type_name)


def gguf_code_length(path, tensors=None, progress: bool = False) -> dict:
    """Bits of a GGUF file by part (see module docstring); `tensors`: only these names.

    Returns stored_bits, entropy_coded_bits, metadata_bits, file_bits (all ints, bits),
    parameters, n_tensors and by_type {type: {tensors, parameters, stored_bits,
    entropy_coded_bits}}. With `tensors`, metadata_bits/file_bits still describe the whole file.
    """
    from gguf import GGUFReader

    from tokenbound.errors import UserError

    if not os.path.isfile(path):
        raise UserError(f"--gguf {path}: no such file")
    try:
        reader = GGUFReader(str(path))
    except (ValueError, OSError, IndexError) as exc:  # what gguf raises on a non-GGUF file
        raise UserError(f"--gguf {path}: not a GGUF file ({exc})") from None
    return code_length_of_reader(reader, path, tensors, progress)


def code_length_of_reader(reader, path, tensors=None, progress: bool = False) -> dict:
    """`gguf_code_length` on an open `gguf.GGUFReader` of the file at `path`."""
    chosen = [t for t in reader.tensors if tensors is None or t.name in set(tensors)]
    file_bits = 8 * os.path.getsize(path)
    all_stored = 8 * sum(int(t.n_bytes) for t in reader.tensors)
    by_type: dict = {}
    bar = _bar(progress, len(chosen))
    for t in chosen:
        name = t.tensor_type.name
        stored = 8 * int(t.n_bytes)
        coded = code_tensor(np.asarray(t.data).reshape(-1), name)["bits"] \
            if name in LAYOUTS else stored
        row = by_type.setdefault(name, {"tensors": 0, "parameters": 0, "stored_bits": 0,
                                        "entropy_coded_bits": 0})
        row["tensors"] += 1
        row["parameters"] += int(t.n_elements)
        row["stored_bits"] += stored
        row["entropy_coded_bits"] += int(coded)
        bar.update(1)
    bar.close()
    return {
        "stored_bits": sum(r["stored_bits"] for r in by_type.values()),
        "entropy_coded_bits": sum(r["entropy_coded_bits"] for r in by_type.values()),
        "metadata_bits": file_bits - all_stored, "file_bits": file_bits,
        "parameters": sum(r["parameters"] for r in by_type.values()),
        "n_tensors": len(chosen), "by_type": by_type,
    }


def _bar(show: bool, total: int):
    from tqdm import tqdm

    return tqdm(total=total, desc="coding GGUF tensors", unit="tensor", disable=not show)


# --- a GGUF model's message: its own block codes, decoded to the tensors that are scored ---------

# GGUF block type -> (bits, block, sym) of `groupwise.Blocks` (same float32 dequantization)
GROUP_SCHEMES = {"Q4_0": (4, 32, 1), "Q4_1": (4, 32, 0), "Q8_0": (8, 32, 1)}
FLOAT_TYPES = ("F32", "F16")
LLAMA_NAMES = {  # GGUF tensor name (blk.{i}. stripped) -> transformers LlamaForCausalLM name
    "token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
    "attn_q.weight": "self_attn.q_proj.weight", "attn_k.weight": "self_attn.k_proj.weight",
    "attn_v.weight": "self_attn.v_proj.weight", "attn_output.weight": "self_attn.o_proj.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight", "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight", "attn_norm.weight": "input_layernorm.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
}


def hf_name(gguf_name: str) -> str | None:
    """The transformers Llama parameter name of a GGUF tensor name, or None if unknown."""
    if gguf_name.startswith("blk."):
        _, layer, rest = gguf_name.split(".", 2)
        tail = LLAMA_NAMES.get(rest)
        return None if tail is None or not layer.isdigit() else f"model.layers.{layer}.{tail}"
    return LLAMA_NAMES.get(gguf_name)


def unpermute_rows(rows: int, n_head: int) -> np.ndarray:
    """Row order that undoes llama.cpp's q/k permutation: hf[j] = gguf[index[j]] (rows,)."""
    return np.arange(rows).reshape(n_head, rows // n_head // 2, 2).swapaxes(1, 2).reshape(-1)


def gguf_blocks(tensors, params: dict, n_head: int, n_kv_head: int) -> dict:
    """{transformers name: groupwise.Blocks} of the quantized GGUF `tensors` (GGUFReader
    tensors: name, tensor_type, data, n_elements), in the layout of `params` {name: Tensor}
    (q/k rows un-permuted). Float tensors are left out (stored raw from `params`)."""
    from tokenbound.compression.groupwise import Blocks
    from tokenbound.errors import UserError

    out = {}
    for t in tensors:
        kind, name = t.tensor_type.name, hf_name(t.name)
        if name is None or name not in params:
            raise UserError(f"GGUF tensor {t.name} has no place in the transformers model; only "
                            "Llama-architecture GGUF files have a message")
        if kind in FLOAT_TYPES:
            continue
        if kind not in GROUP_SCHEMES:
            raise UserError(f"GGUF tensor {t.name} is {kind}; a message is made for "
                            f"{', '.join(GROUP_SCHEMES)} and float tensors only")
        rows, cols = params[name].shape
        side, codes = block_codes(np.asarray(t.data).reshape(-1), kind)
        side = side.view(np.float16).reshape(rows, cols // 32, -1)  # (rows, cols/32, k)
        codes = codes.reshape(rows, cols)
        heads = {"self_attn.q_proj": n_head, "self_attn.k_proj": n_kv_head}
        for key, n in heads.items():
            if key in name:
                order = unpermute_rows(rows, n)
                side, codes = side[order], codes[order]
        out[name] = Blocks(GROUP_SCHEMES[kind], side.reshape(-1, side.shape[-1]),
                           np.ascontiguousarray(codes).reshape(-1))
    return out


def gguf_message(tensors, model, extra: dict | None = None) -> bytes:
    """The TBQG message of a GGUF file's model: `model` is the transformers model loaded from
    it (float32, its weights the dequantized GGUF); each quantized tensor is coded with the
    file's own block codes and fp16 scales, and must dequantize to exactly `model`'s tensor."""
    import torch

    from tokenbound.compression.groupwise import GroupConfig, dequantize_blocks, encode_groupwise
    from tokenbound.errors import UserError

    params = {n: p.detach() for n, p in model.named_parameters()}
    cfg = model.config
    blocks = gguf_blocks(tensors, params, cfg.num_attention_heads,
                         getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads)
    for name, blk in blocks.items():
        if not torch.equal(torch.from_numpy(dequantize_blocks(blk, params[name].shape)),
                           params[name].float()):
            raise UserError(f"the GGUF blocks of {name} do not decode to the tensor transformers "
                            "loads; this GGUF file cannot be turned into a message")
    # descriptive only (each tensor's [bits, block, sym] in the header decides the decoding)
    base = min((b.scheme[0] for b in blocks.values()), default=4)
    gcfg = GroupConfig(bits=base, group_size=32, overrides=tuple(
        (n, b.scheme[0]) for n, b in blocks.items() if b.scheme[0] != base))
    return encode_groupwise(model, cfg, gcfg, blocks, dict(extra or {}, source="gguf"))
