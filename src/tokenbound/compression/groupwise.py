"""Per-group (block) quantization and its message, as the field quantizes pretrained LLMs.

A tensor (R, C) is cut into blocks of `B` consecutive weights along its last dim (C % B == 0;
the input dim of an `nn.Linear` weight, as in GGUF; the output dim of GPT-2's Conv1D); every
block has its own float16 scale `d` (and, asymmetric, a float16 minimum `m`); its weights become
integer codes `q`:
- asymmetric (GGUF Q4_1, `sym=False`): `q in 0..2^b-1`, weight = `f32(d) * q + f32(m)`;
- symmetric (GGUF Q8_0, `sym=True`): code `q + 2^(b-1)` in 0..2^b-1, weight =
  `f32(d) * f32(q)`, q in `-2^(b-1)..2^(b-1)-1`.
Both are computed in float32 exactly as `gguf.quants.dequantize` does, so a GGUF file's own
blocks decode to the tensors transformers loads from it. Tensors that are not 2-D, whose last
dim is not a multiple of `B`, or that match `exclude`, are stored raw at their width.

Message (magic b"TBQG", version 1; all integers little-endian, varints LEB128 as `wire.py`):

    magic b"TBQG" | version 0x01 | H varint + H bytes zlib JSON header       part "header"
    for each quantized tensor, in header order:
      side    n_blocks x (2 or 1) float16 (d, m / d)   2 k n_blocks bytes   part "scales"
      counts  2^b varints (code counts)                                    part "counts"
      W varint + W uint32 ANS words (`entropy.encode_symbols`)             part "payload"
    raw tensors in header order, numel * itemsize bytes                    part "raw"
    crc32 of every preceding byte (4 bytes)                                part "header"

Header (sorted JSON): "builder", "config", "extra", "quant" (GroupConfig), "tensors":
[[name, shape, dtype, [bits, block, sym] or null]] in `trained_state()` order. Every scale is
charged (16 bits each, stored as is); the codes of a tensor are ANS-coded under the tensor's
empirical code distribution, whose counts travel in the message.
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

from tokenbound.compression.adapters import builder_for, get_builder
from tokenbound.compression.entropy import decode_symbols, symbol_counts
from tokenbound.compression.wire import MessageError, Reader
from tokenbound.errors import UserError

MAGIC = b"TBQG"
VERSION = 1
PARTS = ("header", "scales", "counts", "payload", "raw")


@dataclass(frozen=True)
class GroupConfig:
    """Per-group quantization settings (stored in the message header)."""

    bits: int = 4
    """Bits of a code (2..8): 2^b levels per block."""
    group_size: int = 32
    """Weights per block along the last dimension (a Linear's input), each with its own scale."""
    symmetric: bool = False
    """False: fp16 scale + fp16 minimum per block (Q4_1-like); True: fp16 scale only."""
    exclude: tuple[str, ...] = ()
    """fnmatch patterns of tensor names kept raw (e.g. '*norm*')."""
    overrides: tuple[tuple[str, int], ...] = ()
    """(pattern, bits) pairs: the first matching pattern sets a tensor's bits (e.g. embeddings)."""

    def __post_init__(self):
        object.__setattr__(self, "exclude", tuple(self.exclude))
        object.__setattr__(self, "overrides", tuple((str(p), int(b)) for p, b in self.overrides))
        for b in [self.bits] + [b for _, b in self.overrides]:
            if not 2 <= int(b) <= 8:
                raise UserError(f"--bits {b}: use an integer in 2..8")
        if not 1 <= int(self.group_size) <= 4096:
            raise UserError(f"--group-size {self.group_size}: use an integer in 1..4096 "
                            "(e.g. 32 or 64)")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["exclude"] = list(self.exclude)
        d["overrides"] = [list(o) for o in self.overrides]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "GroupConfig":
        return cls(**{**d, "exclude": tuple(d.get("exclude", ())),
                      "overrides": tuple(tuple(o) for o in d.get("overrides", ()))})

    def scheme(self, name: str, t: torch.Tensor) -> tuple[int, int, int] | None:
        """(bits, block, sym) for tensor `name`, or None when it is stored raw."""
        if (t.dim() != 2 or not torch.is_floating_point(t) or t.shape[1] % self.group_size
                or any(fnmatch.fnmatch(name, p) for p in self.exclude)):
            return None
        bits = next((b for p, b in self.overrides if fnmatch.fnmatch(name, p)), self.bits)
        return (int(bits), int(self.group_size), int(self.symmetric))


@dataclass
class Blocks:
    """One quantized tensor: side (n_blocks, k) float16 and codes (n,) int64 in 0..2^b-1."""

    scheme: tuple[int, int, int]
    side: np.ndarray
    codes: np.ndarray


def dequantize_blocks(blk: Blocks, shape) -> np.ndarray:
    """The float32 weights (shape) of `blk`, computed as `gguf.quants.dequantize` does."""
    bits, block, sym = blk.scheme
    d = blk.side[:, :1].astype(np.float32)  # (nb, 1)
    q = blk.codes.reshape(-1, block)  # (nb, B)
    if sym:
        w = (q - (1 << (bits - 1))).astype(np.float32) * d
    else:
        w = d * q.astype(np.float32) + blk.side[:, 1:2].astype(np.float32)
    return w.reshape(shape)


def quantize_blocks(w: np.ndarray, scheme: tuple[int, int, int]) -> Blocks:
    """Round-to-nearest block quantization of `w` (R, C) float -> Blocks (scales in float16).

    Asymmetric: m = block min, d = (max - min) / (2^b - 1); symmetric: d = max|w| / (2^(b-1) - 1).
    Codes are rounded against the float16 scales actually stored.
    """
    bits, block, sym = scheme
    x = np.asarray(w, dtype=np.float32).reshape(-1, block)  # (nb, B)
    with np.errstate(divide="ignore", invalid="ignore"):
        if sym:
            half = 1 << (bits - 1)
            d = _fp16(np.abs(x).max(axis=1) / (half - 1))  # (nb,)
            q = np.rint(x / d.astype(np.float32)[:, None])
            codes = np.clip(np.nan_to_num(q), -half, half - 1) + half
            side = d[:, None]
        else:
            top = (1 << bits) - 1
            lo = x.min(axis=1)
            m = _fp16(lo)
            d = _fp16((x.max(axis=1) - m.astype(np.float32)) / top)
            q = np.rint((x - m.astype(np.float32)[:, None]) / d.astype(np.float32)[:, None])
            codes = np.clip(np.nan_to_num(q), 0, top)
            side = np.stack([d, m], axis=1)
    return Blocks(tuple(scheme), side.astype(np.float16), codes.astype(np.int64).reshape(-1))


def _fp16(x: np.ndarray) -> np.ndarray:
    if not np.all(np.isfinite(x)) or np.any(np.abs(x) > 65504.0):
        raise UserError("a block scale is not finite or exceeds the float16 range; exclude that "
                        "tensor (--exclude PATTERN) or check the model for NaN weights")
    return np.asarray(x, dtype=np.float32).astype(np.float16)


def quantize_groupwise_(model, gcfg: GroupConfig) -> dict:
    """Quantize `model`'s charged tensors in place; returns {name: Blocks} (raw ones absent).

    Afterwards every quantized weight equals `dequantize_blocks` of its blocks exactly.
    """
    builder = builder_for(model)
    state = {n: t.detach().cpu() for n, t in builder.trained_state(model).items()}
    blocks, new_state = {}, dict(state)
    for name, t in state.items():
        scheme = gcfg.scheme(name, t)
        if scheme is None:
            continue
        blocks[name] = quantize_blocks(t.float().numpy(), scheme)
        new_state[name] = torch.from_numpy(dequantize_blocks(blocks[name], t.shape)).to(t.dtype)
    builder.load_trained_state(model, new_state)
    return blocks


def encode_groupwise(model, cfg, gcfg: GroupConfig, blocks: dict,
                     extra_header: dict | None = None) -> bytes:
    """The TBQG message of `model`, whose tensors in `blocks` equal their dequantized blocks."""
    from tokenbound.compression.message import _dtype_name, coded_part, frame_end, frame_start

    builder = builder_for(model)
    state = {n: t.detach().cpu() for n, t in builder.trained_state(model).items()}
    if not set(blocks) <= set(state):
        raise UserError(f"blocks name tensors the model lacks: {sorted(set(blocks) - set(state))}")
    for name, blk in blocks.items():
        want = torch.from_numpy(dequantize_blocks(blk, state[name].shape)).to(state[name].dtype)
        if not torch.equal(state[name], want):
            raise UserError(f"weights of {name} differ from their quantized blocks; quantize "
                            "again after changing the model")
    header = {"builder": builder.name, "config": builder.describe(model, cfg),
              "quant": gcfg.to_dict(), "extra": extra_header or {},
              "tensors": [[n, list(t.shape), _dtype_name(t),
                           list(blocks[n].scheme) if n in blocks else None]
                          for n, t in state.items()]}
    out = frame_start(MAGIC, VERSION, header)
    for name in (n for n in state if n in blocks):
        blk = blocks[name]
        out += coded_part(blk.side, symbol_counts(blk.codes, 1 << blk.scheme[0]), blk.codes)
    return frame_end(out, [state[n] for n in state if n not in blocks])


def _parse(data: bytes) -> tuple[dict, Reader]:
    from tokenbound.compression.message import (check_frame, check_tensor_entries, read_header,
                                                 values_cap)

    r = check_frame(data, MAGIC, VERSION, what="group-quantized message")
    header = read_header(r, {"builder": str, "tensors": list, "quant": dict})
    check_tensor_entries(header["tensors"],
                         lambda scheme, shape: scheme is None or _scheme_ok(scheme, shape),
                         values_cap(len(data)))
    return header, r


def _scheme_ok(s, shape) -> bool:
    return (isinstance(s, list) and len(s) == 3 and all(type(v) is int for v in s)
            and 2 <= s[0] <= 8 and 1 <= s[1] <= 4096 and s[2] in (0, 1)
            and len(shape) == 2 and shape[1] % s[1] == 0)


def _layout(data: bytes) -> tuple[dict, dict, dict, dict]:
    """Header, {name: (side, counts, words)}, {name: raw bytes}, bits by part."""
    from tokenbound.compression.message import read_raw

    header, r = _parse(data)
    bits = dict.fromkeys(PARTS, 0)
    bits["header"] = 8 * (r.pos + 4)
    coded = {}
    for name, shape, _, s in header["tensors"]:
        if s is None:
            continue
        n = math.prod(shape)
        k = 1 if s[2] else 2
        side = np.frombuffer(r.take(2 * k * (n // s[1]), "scales"), dtype="<f2") \
            .astype(np.float16).reshape(-1, k)
        start = r.pos
        counts = np.array([r.varint("code count", limit=n) for _ in range(1 << s[0])], np.int64)
        if int(counts.sum()) != n:
            raise MessageError(f"message corrupt: {name} counts sum to {counts.sum():,}, the "
                               f"tensor holds {n:,} values")
        mid = r.pos
        n_words = r.varint("payload length", limit=r.remaining // 4)
        words = np.frombuffer(r.take(4 * n_words, "payload"), dtype="<u4").astype(np.uint32)
        bits["scales"] += 16 * side.size
        bits["counts"] += 8 * (mid - start)
        bits["payload"] += 8 * (r.pos - mid)
        coded[name] = (side, counts, words)
    raw = read_raw(r, [t for t in header["tensors"] if t[3] is None], bits)
    return header, coded, raw, bits


def bits_by_part_groupwise(data: bytes) -> dict:
    """Bits of each part (header, scales, counts, payload, raw); they sum to 8 * len."""
    return _layout(data)[3]


def decode_groupwise(data: bytes) -> tuple:
    """TBQG message bytes -> (model, cfg, info) as `message.decode`; info["quant"]: GroupConfig.

    Checked as `message.decode` checks a TBQM message before allocating: frame and sizes, the
    group config, the builder's plan against the header's tensors and the values cap
    (`message.values_cap`), then the model built, its scales and raw tensors finite.
    """
    from tokenbound.compression.message import (DTYPES, _check_finite, build_checked,
                                                decoded_info, raw_tensor, values_cap)

    header, coded, raw, bits = _layout(data)
    try:
        quant = GroupConfig.from_dict(header["quant"])
    except (TypeError, ValueError, AttributeError, UserError) as exc:
        raise MessageError(f"message header: bad group quantization config ({exc})") from None
    builder = get_builder(header["builder"])
    model, cfg, state = build_checked(builder, header, values_cap(len(data)))
    new_state = dict(state)
    for name, shape, dt, s in header["tensors"]:
        if s is not None:
            side, counts, words = coded[name]
            _check_finite(f"message scales of {name}", side, MessageError)
            blk = Blocks(tuple(s), side, decode_symbols(words, counts))
            new_state[name] = torch.from_numpy(dequantize_blocks(blk, shape)).to(DTYPES[dt])
        else:
            new_state[name] = raw_tensor(name, raw[name], state[name])
    builder.load_trained_state(model, new_state)
    return model, cfg, decoded_info(data, header, quant, bits, state)
