"""Byte-level primitives of the message format: unsigned LEB128 varints and a bounds-checked
reader.

A varint stores an unsigned integer 7 bits per byte, low bits first, the high bit of each byte
set when another byte follows (LEB128). The integer `n` takes `max(1, ceil(bits(n) / 7))`
bytes; e.g. 0..127 take 1 byte, 128..16383 take 2. Every read is checked against the bytes
that remain, so a corrupt or truncated message raises `MessageError`, never an `IndexError`
or a huge allocation.
"""

from __future__ import annotations

from tokenbound.errors import UserError

MAX_VARINT_BYTES = 10  # 70 bits: more than any size this format stores


class MessageError(UserError):
    """A message is corrupt, truncated, of another version, or does not fit its model."""


def varint(n: int) -> bytes:
    """The LEB128 bytes of the integer `n >= 0`."""
    if n < 0:
        raise ValueError(f"varint of a negative number {n}")
    out = bytearray()
    while True:
        low = n & 0x7F
        n >>= 7
        if n:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def varint_len(n: int) -> int:
    """Number of bytes `varint(n)` takes (0..127 -> 1 byte, 128..16383 -> 2, ...)."""
    return max(1, (int(n).bit_length() + 6) // 7)


class Reader:
    """Sequential reader over `data` that checks every size against the bytes left."""

    def __init__(self, data: bytes, pos: int = 0, end: int | None = None):
        self.data = memoryview(data)
        self.pos = pos
        self.end = len(data) if end is None else end

    @property
    def remaining(self) -> int:
        return self.end - self.pos

    def take(self, n: int, what: str) -> memoryview:
        """The next `n` bytes; MessageError if fewer remain."""
        if n < 0 or n > self.remaining:
            raise MessageError(f"message truncated or corrupt: {what} needs {n:,} bytes, "
                               f"{self.remaining:,} left; re-create the message")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def varint(self, what: str, limit: int | None = None) -> int:
        """The next varint; MessageError if malformed, or larger than `limit` when given."""
        n, shift = 0, 0
        for _ in range(MAX_VARINT_BYTES):
            byte = self.take(1, what)[0]
            n |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                if limit is not None and n > limit:
                    raise MessageError(f"message corrupt: {what} = {n:,} exceeds its limit "
                                       f"{limit:,}; re-create the message")
                return n
        raise MessageError(f"message corrupt: malformed varint for {what}")
