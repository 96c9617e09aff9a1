"""The message: a self-contained, versioned byte string that decodes to exactly one model.

Its length `C = 8 * len(message)` bits is the code length of the hypothesis (METHOD 2.1, 4);
`prefix_free_bits(C) = C + 2 log2 C` makes it prefix-free as in the papers.

Format, version 1 (all integers little-endian; "varint" = unsigned LEB128, see `wire.py`):

    magic   b"TBQM"                                   4 bytes   } part "header"
    version 0x01                                      1 byte    }
    H       varint, then H bytes: zlib (deflate, level 9)   }
            of the UTF-8 JSON header (at most 16 MiB inflated)  }
    for each group g (header "groups", in order):
      codebook  L_g float16 values                    2 L_g bytes   part "codebooks"
      counts    L_g varints (symbol counts)                         part "counts"
      W_g       varint, then W_g uint32 ANS words     4 W_g bytes   part "payload"
    raw tensors in header order, numel * itemsize bytes each        part "raw"
    crc32   of every preceding byte                   4 bytes   part "header"

The JSON header (sorted keys, no spaces) holds: "builder" (model family, see `adapters.py`),
"config" (architecture config incl. seeds and parametrization), "quant" (QuantConfig),
"tensors": [[name, shape, dtype, group]] in `trained_state()` order (group -1 = raw),
"groups": [L_g], and "extra" (caller's dict: tokenizer spec, context policy, ...).
A group's symbols are its member tensors flattened (row-major) and concatenated.

Decoding never executes anything from the message: JSON only, builders from a fixed registry.
Before anything is allocated it checks, in order: the magic, version and CRC32; every size
against the bytes left; the values the header declares against the cap below; the builder's
plan of the config (the trained tensors' names/shapes/dtypes, computed on the meta device)
against the header's tensor list, and the plan's total values (frozen tensors included) against
the cap. Only then is the model built (and its `trained_state()` checked once more), the symbols
decoded and the codebooks and raw tensors checked to be finite. Any failure raises
`MessageError` (a `UserError`) with a one-line message.

Cap: a message of `C = 8 * len(message)` bits may describe a model of at most
`max(MIN_VALUES_CAP, VALUES_PER_BIT * C)` = max(2^22, 2048 C) floating-point values, trained
and frozen together. The demo's model has about 9 values per message bit, the subspace models of
`tokenbound experiment` fewer than 100, a SubLoRA GPT-2 (124 M values, about 100 kbit) about
1,240. A crafted header therefore makes the decoder allocate at most 64 KiB of float32 per byte
of message (16 MiB for anything up to 256 bytes; 26 MB for the 394-byte message of issue 16,
whose header asked for 3.5 GB).
"""

from __future__ import annotations

import hashlib
import json
import math
import zlib
from pathlib import Path

import numpy as np
import torch

from tokenbound.bounds.basics import prefix_free_bits
from tokenbound.compression.adapters import builder_for, get_builder
from tokenbound.compression.entropy import decode_symbols, encode_symbols
from tokenbound.compression.quantize import QuantConfig, QuantizedState, dequantized
from tokenbound.compression.wire import MessageError, Reader, varint
from tokenbound.errors import UserError

MAGIC = b"TBQM"
VERSION = 1
MAX_LEVELS = 65535
MAX_HEADER_BYTES = 1 << 24  # inflated JSON header
MIN_VALUES_CAP = 1 << 22  # values any message may describe (see the module docstring)
VALUES_PER_BIT = 1 << 11  # values per message bit beyond that
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16,
          "float64": torch.float64}
PARTS = ("header", "codebooks", "counts", "payload", "raw")


def values_cap(n_bytes: int) -> int:
    """Most floating-point values (trained + frozen) a message of `n_bytes` bytes may describe."""
    return max(MIN_VALUES_CAP, VALUES_PER_BIT * 8 * int(n_bytes))


def _check_finite(what: str, values: np.ndarray, error=UserError) -> None:
    if not np.all(np.isfinite(values)):
        raise error(f"{what} holds NaN or infinite values: the model diverged or the message is "
                    "corrupt; re-create it from finite weights (e.g. a lower learning rate)")


def _dtype_name(t: torch.Tensor) -> str:
    for name, dt in DTYPES.items():
        if t.dtype == dt:
            return name
    raise UserError(f"cannot store a {t.dtype} tensor; trained tensors must be floating point")


def _check_quantized(state: dict, qstate: QuantizedState) -> None:
    for g in qstate.groups:
        for name, t in dequantized(g, state).items():
            if not torch.equal(state[name], t):
                raise UserError(f"weights of {name} differ from the quantized state; call "
                                "quantize_ (or qat_finetune) again after changing the model")


def encode(model, cfg, qstate: QuantizedState, extra_header: dict | None = None) -> bytes:
    """Write the message of the quantized `model` (whose weights `quantize_` set)."""
    builder = builder_for(model)
    state = {n: t.detach().cpu() for n, t in builder.trained_state(model).items()}
    group_of = {n: gi for gi, g in enumerate(qstate.groups) for n in g.names}
    if set(group_of) | set(qstate.raw_names) != set(state):
        raise UserError("the quantized state does not cover the model's trained tensors; "
                        "call quantize_ on this model")
    for gi, g in enumerate(qstate.groups):
        _check_finite(f"codebook {gi}", g.codebook)
    for name in qstate.raw_names:
        _check_finite(f"raw tensor {name}", state[name].float().numpy())
    _check_quantized(state, qstate)
    header = {
        "builder": builder.name, "config": builder.describe(model, cfg),
        "quant": qstate.config.to_dict(), "extra": extra_header or {},
        "tensors": [[n, list(t.shape), _dtype_name(t), group_of.get(n, -1)]
                    for n, t in state.items()],
        "groups": [len(g.codebook) for g in qstate.groups],
    }
    out = frame_start(MAGIC, VERSION, header)
    for g in qstate.groups:
        out += coded_part(g.codebook, g.counts, g.symbols)
    return frame_end(out, [state[n] for n in state if n not in group_of])


def frame_start(magic: bytes, version: int, header: dict) -> bytearray:
    """`magic | version | varint(H) | H bytes of deflated JSON header`: every format's opening."""
    hjson = zlib.compress(json.dumps(header, sort_keys=True, separators=(",", ":")).encode(), 9)
    return bytearray(magic + bytes([version]) + varint(len(hjson)) + hjson)


def coded_part(side: np.ndarray, counts: np.ndarray, symbols: np.ndarray) -> bytes:
    """float16 side values (codebook or scales) | varint symbol counts | varint(W) | W u32 words
    of the entropy-coded symbols."""
    words = encode_symbols(symbols, counts)
    return (side.astype("<f2").tobytes() + b"".join(varint(int(c)) for c in counts)
            + varint(len(words)) + words.astype("<u4").tobytes())


def frame_end(out: bytearray, raw: list) -> bytes:
    """The raw tensors' bytes in order, then the crc32 of everything before it."""
    for t in raw:
        out += t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
    out += zlib.crc32(out).to_bytes(4, "little")
    return bytes(out)


def _read_bytes(message) -> bytes:
    if isinstance(message, (bytes, bytearray, memoryview)):
        return bytes(message)
    path = Path(message)
    if not path.is_file():
        raise UserError(f"message file {path} not found; pass the file written by "
                        "`tokenbound compress --out`")
    return path.read_bytes()


def check_frame(data: bytes, magic: bytes = MAGIC, version: int = VERSION,
                what: str = "message format") -> Reader:
    """Magic, version and checksum of a framed message (`magic`, version byte, body, crc32);
    a `Reader` over the body. Shared by every message format of the package."""
    if len(data) < len(magic) + 1 + 1 + 4 or data[:len(magic)] != magic:
        raise MessageError("not a tokenbound message (bad magic or too short)")
    if data[len(magic)] != version:
        raise MessageError(f"{what} version {data[len(magic)]} is not supported (this tokenbound "
                           f"reads version {version}); re-create it with this version")
    if zlib.crc32(data[:-4]) != int.from_bytes(data[-4:], "little"):
        raise MessageError("message checksum mismatch: the file is corrupt or truncated")
    return Reader(data, pos=len(magic) + 1, end=len(data) - 4)


def read_header(r: Reader, required: dict) -> dict:
    """The deflated JSON header at the reader's position, inflated to at most MAX_HEADER_BYTES;
    `required` maps each key to the type its value must have (`extra`, optional, is a dict)."""
    hlen = r.varint("header length", limit=r.remaining)
    inflater = zlib.decompressobj()
    try:
        text = inflater.decompress(bytes(r.take(hlen, "header")), MAX_HEADER_BYTES)
        if not inflater.eof or inflater.unconsumed_tail or inflater.unused_data:
            raise MessageError("message header is truncated, trailing or too large")
        header = json.loads(text.decode("utf-8"))
    except (zlib.error, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise MessageError(f"message header is not valid JSON ({exc})") from None
    ok = (isinstance(header, dict) and isinstance(header.get("extra", {}), dict)
          and all(isinstance(header.get(k), t) for k, t in required.items()))
    if not ok:
        raise MessageError(f"message header lacks {'/'.join(required)}")
    return header


def check_tensor_entries(tensors: list, scheme_ok, cap: int) -> None:
    """Each entry `[name, shape, dtype, scheme]` well formed (`scheme_ok(scheme, shape)` for the
    format's own last field) and at most `cap` values declared in all (`values_cap`)."""
    total = 0
    for t in tensors:
        ok = (isinstance(t, list) and len(t) == 4 and isinstance(t[0], str)
              and isinstance(t[1], list) and all(type(d) is int and 0 <= d for d in t[1])
              and t[2] in DTYPES and scheme_ok(t[3], t[1]))
        if not ok:
            raise MessageError(f"message header: malformed tensor entry {str(t)[:80]}")
        total += math.prod(t[1])
    if total > cap:
        raise MessageError(f"message header declares {total:,} values, more than a message of "
                           f"this size may (limit {cap:,}); it is corrupt or crafted")


def _parse_header(r: Reader, cap: int) -> dict:
    header = read_header(r, {"builder": str, "tensors": list, "groups": list, "quant": dict})
    groups = header["groups"]
    if not all(type(L) is int and 1 <= L <= MAX_LEVELS for L in groups):
        raise MessageError(f"message header: codebook sizes must be integers in 1..{MAX_LEVELS}")
    check_tensor_entries(header["tensors"],
                         lambda g, _shape: type(g) is int and -1 <= g < len(groups), cap)
    return header


def _layout(data: bytes) -> tuple[dict, list, list, dict]:
    """Parse everything but the symbols: header, per-group (codebook, counts, words), raw, bits."""
    r = check_frame(data)
    header = _parse_header(r, values_cap(len(data)))
    bits = dict.fromkeys(PARTS, 0)
    bits["header"] = 8 * (r.pos + 4)
    sizes = [0] * len(header["groups"])
    for _, shape, _, g in header["tensors"]:
        if g >= 0:
            sizes[g] += math.prod(shape)
    groups = []
    for g, L in enumerate(header["groups"]):
        codebook = np.frombuffer(r.take(2 * L, "codebook"), dtype="<f2").astype(np.float16)
        start = r.pos
        counts = np.array([r.varint("symbol count", limit=sizes[g]) for _ in range(L)], np.int64)
        if int(counts.sum()) != sizes[g]:
            raise MessageError(f"message corrupt: group {g} counts sum to {counts.sum():,}, its "
                               f"tensors hold {sizes[g]:,} values")
        mid = r.pos
        n_words = r.varint("payload length", limit=r.remaining // 4)
        words = np.frombuffer(r.take(4 * n_words, "payload"), dtype="<u4").astype(np.uint32)
        bits["codebooks"] += 16 * L
        bits["counts"] += 8 * (mid - start)
        bits["payload"] += 8 * (r.pos - mid)
        groups.append((codebook, counts, words))
    raw = read_raw(r, [t for t in header["tensors"] if t[3] < 0], bits)
    return header, groups, raw, bits


def read_raw(r: Reader, entries: list, bits: dict) -> dict:
    """{name: bytes} of the raw tensors (header entries, in order) that end the body; their bits
    added to bits["raw"]; nothing may follow them."""
    raw = {}
    for name, shape, dt, _ in entries:
        nbytes = math.prod(shape) * DTYPES[dt].itemsize
        raw[name] = r.take(nbytes, f"raw tensor {name}")
        bits["raw"] += 8 * nbytes
    if r.remaining:
        raise MessageError(f"message corrupt: {r.remaining:,} unexpected trailing bytes")
    return raw


def bits_by_part(message) -> dict:
    """Bits of each part (header, codebooks, counts, payload, raw); they sum to 8 * len.
    A group-quantized message (`groupwise.py`) has parts header, scales, counts, payload, raw."""
    data = _read_bytes(message)
    if _is_groupwise(data):
        from tokenbound.compression.groupwise import bits_by_part_groupwise

        return bits_by_part_groupwise(data)
    return _layout(data)[3]


def _is_groupwise(data: bytes) -> bool:
    """A per-group (block) quantized message (magic b"TBQG", `groupwise.py`)?"""
    from tokenbound.compression.groupwise import MAGIC as GROUP_MAGIC

    return len(data) >= 10 and data[:4] == GROUP_MAGIC


def _check_tensors(header: dict, state: dict) -> None:
    want = [(n, list(t.shape), _dtype_name(t)) for n, t in state.items()]
    got = [(n, s, d) for n, s, d, _ in header["tensors"]]
    if want != got:
        diff = next(((w, g) for w, g in zip(want, got) if w != g), (len(want), len(got)))
        raise MessageError(f"message tensors do not match the model built from its config "
                           f"(first difference: {str(diff)[:160]}); the message is for another "
                           "model or version")


BUILD_ERRORS = (TypeError, ValueError, KeyError, AttributeError, IndexError, RuntimeError,
                OverflowError, UserError)
"""What a builder may raise on a bad config (MessageError passes through as it is)."""


def _plan(builder, header: dict, cap: int) -> None:
    """Check the config's architecture against the header's tensors and the cap, allocating
    nothing (builders without a `plan` are only checked after they are built)."""
    if builder.plan is None:
        return
    try:
        trained, values = builder.plan(header["config"])
    except MessageError:
        raise
    except BUILD_ERRORS as exc:
        raise MessageError(f"message header: bad model config ({str(exc)[:200]})") from None
    _check_tensors(header, trained)
    if values > cap:
        raise MessageError(f"message header asks for a model of {values:,} values, more than a "
                           f"message of this size may (limit {cap:,}); it is corrupt or crafted")


def build_checked(builder, header: dict, cap: int) -> tuple:
    """(model, cfg, trained state) of the header: the plan checked before anything is built
    (`_plan`), then the built model's trained tensors against the header's. Every format."""
    _plan(builder, header, cap)
    try:
        model, cfg = builder.build(header["config"])
    except MessageError:
        raise
    except BUILD_ERRORS as exc:
        raise MessageError(f"message header: cannot build the model from its config "
                           f"({str(exc)[:200]})") from None
    state = {n: t.detach().cpu() for n, t in builder.trained_state(model).items()}
    _check_tensors(header, state)
    return model, cfg, state


def _build(builder, header: dict, cap: int) -> tuple:
    """(model, cfg, quant, trained state) of the header, each checked before the next."""
    try:
        quant = QuantConfig.from_dict(header["quant"])
    except (TypeError, ValueError, UserError) as exc:
        raise MessageError(f"message header: bad quantization config ({exc})") from None
    model, cfg, state = build_checked(builder, header, cap)
    return model, cfg, quant, state


def raw_tensor(name: str, buf, like: torch.Tensor) -> torch.Tensor:
    """A tensor stored raw in the message, shaped and typed as `like`; refused unless finite."""
    t = torch.frombuffer(bytearray(buf), dtype=torch.uint8) if len(buf) else \
        torch.zeros(0, dtype=torch.uint8)
    t = t.view(like.dtype).reshape(like.shape)
    _check_finite(f"message raw tensor {name}", t.float().numpy(), MessageError)
    return t


def _decoded_state(header: dict, groups: list, raw: dict, state: dict) -> dict:
    """{name: tensor} of every trained tensor, from the symbols and raw bytes."""
    new_state = dict(state)
    for g, (codebook, counts, words) in enumerate(groups):
        values = codebook.astype(np.float32)[decode_symbols(words, counts)]  # (n_g,)
        pos = 0
        for name, shape, dt, gi in header["tensors"]:
            if gi == g:
                n = math.prod(shape)
                new_state[name] = torch.from_numpy(values[pos:pos + n].copy()).reshape(shape) \
                    .to(DTYPES[dt])
                pos += n
    for name, buf in raw.items():
        new_state[name] = raw_tensor(name, buf, state[name])
    return new_state


def decode(message) -> tuple:
    """Message (bytes or path) -> (model, cfg, info): the exact quantized model, in eval mode.

    `info` holds: header, quant (QuantConfig), extra, bits_by_part, total_bits,
    prefix_free_bits, sha256, trained_parameters. Everything is checked before it is allocated
    (module docstring); a bad message raises `MessageError`.
    """
    data = _read_bytes(message)
    if _is_groupwise(data):  # per-group (block) quantization: its own module and format
        from tokenbound.compression.groupwise import decode_groupwise

        return decode_groupwise(data)
    header, groups, raw, bits = _layout(data)
    for g, (codebook, _, _) in enumerate(groups):
        _check_finite(f"message codebook {g}", codebook, MessageError)
    builder = get_builder(header["builder"])
    model, cfg, quant, state = _build(builder, header, values_cap(len(data)))
    builder.load_trained_state(model, _decoded_state(header, groups, raw, state))
    return model, cfg, decoded_info(data, header, quant, bits, state)


def decoded_info(data: bytes, header: dict, quant, bits: dict, state: dict) -> dict:
    """The `info` of `decode` (every format): header, quant, extra, bits by part, total and
    prefix-free bits, sha256, trained parameter count."""
    total = 8 * len(data)
    return {"header": header, "quant": quant, "extra": header.get("extra", {}),
            "bits_by_part": bits, "total_bits": total, "prefix_free_bits": prefix_free_bits(total),
            "sha256": hashlib.sha256(data).hexdigest(),
            "trained_parameters": int(sum(t.numel() for t in state.values()))}
