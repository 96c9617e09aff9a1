import numpy as np
import pytest

from tokenbound.compression import MessageError, decode_symbols, encode_symbols
from tokenbound.compression.entropy import empirical_entropy_bits, symbol_counts
from tokenbound.compression.wire import Reader, varint, varint_len


def test_varint_round_trip_and_lengths():
    for n in [0, 1, 127, 128, 300, 16383, 16384, 2**35 + 7]:
        b = varint(n)
        assert len(b) == varint_len(n)
        assert Reader(b).varint("n") == n
    assert varint(300) == bytes([0xAC, 0x02])  # 300 = 0b10_0101100 -> 0xAC, 0x02 (LEB128)
    with pytest.raises(MessageError):
        Reader(bytes([0x80, 0x80])).varint("n")  # continuation bit, then truncated
    with pytest.raises(MessageError):
        Reader(varint(1000)).varint("n", limit=999)


def test_entropy_by_hand():
    # counts (2, 1, 1): 2 log2(4/2) + 1 log2(4) + 1 log2(4) = 2 + 2 + 2 = 6 bits
    assert empirical_entropy_bits(np.array([2, 1, 1, 0])) == pytest.approx(6.0)


def test_large_stream_within_0p1_percent_of_empirical_entropy():
    rng = np.random.default_rng(0)
    p = np.array([0.4, 0.25, 0.15, 0.1, 0.05, 0.03, 0.015, 0.005])
    sym = rng.choice(len(p), size=1_000_000, p=p)
    counts = symbol_counts(sym, len(p))
    words = encode_symbols(sym, counts)
    coded_bits = 32 * len(words)
    ideal = empirical_entropy_bits(counts)
    assert ideal <= coded_bits <= ideal * 1.001 + 64
    assert np.array_equal(decode_symbols(words, counts), sym)


@pytest.mark.parametrize("counts", [[0, 0, 5], [0], [7], [3, 0]])
def test_constant_groups_have_no_payload(counts):
    counts = np.array(counts)
    sym = np.repeat(np.arange(len(counts)), counts)
    words = encode_symbols(sym, counts)
    assert len(words) == 0
    assert np.array_equal(decode_symbols(words, counts), sym)


def test_payload_that_does_not_match_counts_is_rejected():
    sym = np.array([0, 1, 1, 2, 2, 2] * 50)
    counts = symbol_counts(sym, 3)
    words = encode_symbols(sym, counts)
    with pytest.raises(MessageError):
        decode_symbols(words[:-1], counts)
    with pytest.raises(MessageError):
        decode_symbols(np.array([5, 0], np.uint32), counts)
