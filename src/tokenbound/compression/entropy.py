"""Entropy coding of quantization symbols with `constriction` (asymmetric numeral systems).

A group of `n` symbols over the alphabet `{0, ..., L-1}` is coded with a *static* categorical
model whose probabilities are the empirical frequencies `counts / n`; the counts travel in the
message, so the decoder rebuilds exactly the same model (same float64 array -> same fixed-point
model inside constriction, `perfect=False`, 24-bit precision). The payload is the ANS stack
as whole little-endian uint32 words; its length is within a few words of the empirical
entropy `sum_s counts[s] * log2(n / counts[s])` bits (one 32-bit word of overhead plus the
fixed-point quantization of the probabilities, < 0.01 % in checks).

Degenerate groups (no symbols, or a single symbol with nonzero count) are fully determined by
their counts: their payload is empty (0 words).
"""

from __future__ import annotations

import numpy as np

from tokenbound.compression.wire import MessageError


def symbol_counts(symbols: np.ndarray, levels: int) -> np.ndarray:
    """Counts of each symbol `0..levels-1` in `symbols` (n,) -> (levels,) int64."""
    return np.bincount(np.asarray(symbols, dtype=np.int64), minlength=levels).astype(np.int64)


def empirical_entropy_bits(counts: np.ndarray) -> float:
    """`sum_s c_s log2(n / c_s)` in bits: the ideal code length of the symbols given counts."""
    c = np.asarray(counts, dtype=np.float64)
    c = c[c > 0]
    n = c.sum()
    return float(np.sum(c * np.log2(n / c))) if n else 0.0


def _model(counts: np.ndarray):
    import constriction

    p = np.asarray(counts, dtype=np.float64)
    return constriction.stream.model.Categorical(p / p.sum(), perfect=False)


def _trivial(counts: np.ndarray) -> bool:
    return int(np.count_nonzero(counts)) <= 1


def encode_symbols(symbols: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """ANS-code `symbols` (n,) with the static model of `counts` (L,) -> uint32 words (k,)."""
    import constriction

    if _trivial(counts):
        return np.zeros(0, dtype=np.uint32)
    coder = constriction.stream.stack.AnsCoder()
    coder.encode_reverse(np.ascontiguousarray(symbols, dtype=np.int32), _model(counts))
    return np.asarray(coder.get_compressed(), dtype=np.uint32)


def decode_symbols(words: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Inverse of `encode_symbols`: uint32 words + counts (L,) -> symbols (n,) int64.

    Checks that the decoded counts equal `counts` and that the coder ends exactly empty;
    otherwise raises MessageError (the payload does not belong to these counts).
    """
    import constriction

    counts = np.asarray(counts, dtype=np.int64)
    n = int(counts.sum())
    if _trivial(counts):
        if len(words):
            raise MessageError("message corrupt: payload present for a constant symbol group")
        return np.full(n, int(np.argmax(counts)) if n else 0, dtype=np.int64)
    try:
        coder = constriction.stream.stack.AnsCoder(np.ascontiguousarray(words, dtype=np.uint32))
        symbols = np.asarray(coder.decode(_model(counts), n), dtype=np.int64)
        empty = coder.is_empty()
    except (ValueError, RuntimeError) as exc:
        raise MessageError(f"message corrupt: entropy-coded payload invalid ({exc})") from None
    if not empty or not np.array_equal(symbol_counts(symbols, len(counts)), counts):
        raise MessageError("message corrupt: entropy-coded payload does not match its counts")
    return symbols
