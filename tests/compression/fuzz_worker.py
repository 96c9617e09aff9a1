"""Fuzz the decoder with mutations of a real small GPT message (run in a subprocess by
`test_compression_fuzz.py`, so that its peak memory is its own); prints one JSON line.

    python fuzz_worker.py CASES SEED

Mutations (seeded): truncation, bit flips, byte insertions and deletions (each with the CRC
left as it is or recomputed, so the parser behind the checksum is exercised too) and crafted
headers (huge or malformed dimensions, counts, tensor lists and codebook sizes, CRC valid).
"""

import json
import resource
import sys
import time
import zlib

import numpy as np
import torch

from tokenbound.compression import MessageError, QuantConfig, decode, encode, quantize_
from tokenbound.compression.wire import Reader, varint
from tokenbound.models import GPTConfig, build_model

HUGE = [2**13, 2**17, 100_000, 2**31, 2**40, 2**62, 10**30, -1, 0, 1.5, "8", None, True]
FIELDS = ["d_model", "n_layer", "vocab_size", "context_len", "n_head", "mlp_ratio", "lora_rank",
          "subspace_dim", "monarch_blocks", "max_context", "seed"]


def small_message() -> tuple[bytes, dict]:
    cfg = GPTConfig(vocab_size=32, context_len=16, n_layer=1, n_head=2, d_model=16,
                    norm_affine=True, linear="attn=lora,mlp=dense")
    model = build_model(cfg)
    g = torch.Generator().manual_seed(0)
    model.load_trained_state({n: t + 0.05 * torch.randn(t.shape, generator=g)
                              for n, t in model.trained_state().items()})
    qstate = quantize_(model, QuantConfig(levels=5, method="kmeans", grouping="tensor",
                                          exclude=("*ln*",)))
    msg = encode(model, cfg, qstate, extra_header={"tokenizer": "bytes"})
    return msg, {n: t.detach().clone() for n, t in model.trained_state().items()}


def reseal(body: bytes) -> bytes:
    return body + zlib.crc32(body).to_bytes(4, "little")


def split_header(msg: bytes) -> tuple[dict, bytes]:
    r = Reader(msg, pos=5)
    n = r.varint("header length")
    return json.loads(zlib.decompress(msg[r.pos:r.pos + n])), msg[r.pos + n:-4]


def forge(msg: bytes, header: dict) -> bytes:
    _, rest = split_header(msg)
    hj = zlib.compress(json.dumps(header, sort_keys=True).encode())
    return reseal(msg[:5] + varint(len(hj)) + hj + rest)


def craft(msg: bytes, rng) -> bytes:
    """A header edit with the CRC recomputed: the message is well framed but lies."""
    header, _ = split_header(msg)
    kind = int(rng.integers(5))
    pick = HUGE[int(rng.integers(len(HUGE)))]
    if kind == 0:
        header["config"][FIELDS[int(rng.integers(len(FIELDS)))]] = pick
    elif kind == 1:  # one dimension of one tensor
        t = header["tensors"][int(rng.integers(len(header["tensors"])))]
        t[1] = [pick] if not t[1] else t[1][:-1] + [pick]
    elif kind == 2:  # codebook sizes
        header["groups"][int(rng.integers(len(header["groups"])))] = pick
    elif kind == 3:  # the tensor list shortened, duplicated or reordered
        ts = header["tensors"]
        header["tensors"] = [ts[:-1], ts + ts[:1], ts[::-1]][int(rng.integers(3))]
    else:  # an architecture that fits no tensor list, several fields at once
        header["config"].update(d_model=8192, n_layer=int(rng.choice([2, 100_000])),
                                n_head=int(rng.choice([1, 64])))
    return forge(msg, header)


def mutate(msg: bytes, rng) -> tuple[bytes, str]:
    kind = int(rng.integers(5))
    if kind == 4:
        return craft(msg, rng), "crafted"
    b = bytearray(msg)
    if kind == 0:
        b = b[:int(rng.integers(len(b)))]
    elif kind == 1:
        for _ in range(int(rng.integers(1, 4))):
            b[int(rng.integers(len(b)))] ^= 1 << int(rng.integers(8))
    elif kind == 2:
        at = int(rng.integers(len(b)))
        b[at:at] = rng.integers(0, 256, int(rng.integers(1, 9)), dtype=np.uint8).tobytes()
    else:
        at = int(rng.integers(len(b)))
        del b[at:at + int(rng.integers(1, 9))]
    if rng.integers(2) and len(b) > 4:
        return reseal(bytes(b[:-4])), "resealed"
    return bytes(b), "plain"


def main(cases: int, seed: int) -> dict:
    msg, ref = small_message()
    decode(msg)  # warm up: imports and first allocations are not the fuzz's
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB
    rng = np.random.default_rng(seed)
    out = {"error": 0, "exact": 0, "other": 0, "bad": [], "max_s": 0.0, "n_bytes": len(msg)}
    for case in range(cases):
        bad, how = mutate(msg, rng)
        t0 = time.perf_counter()
        try:
            model, _, _ = decode(bad)
            state = model.trained_state()
            exact = list(state) == list(ref) and all(torch.equal(state[n], ref[n]) for n in ref)
            # a resealed byte edit of a codebook or raw value is a valid message of another
            # model: allowed only there, and only with the same tensors and finite values
            other = (not exact and how == "resealed" and list(state) == list(ref)
                     and all(state[n].shape == ref[n].shape and bool(state[n].isfinite().all())
                             for n in ref))
            out["exact" if exact else "other"] += exact or other
            if not (exact or other):
                out["bad"].append([case, how, "decoded to another model"])
        except MessageError:
            out["error"] += 1
        except Exception as exc:  # noqa: BLE001 - anything else is a finding
            out["bad"].append([case, how, f"{type(exc).__name__}: {str(exc)[:120]}"])
        out["max_s"] = max(out["max_s"], time.perf_counter() - t0)
    out["rss_growth_mib"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
    return out


if __name__ == "__main__":
    torch.set_num_threads(1)
    print(json.dumps(main(int(sys.argv[1]), int(sys.argv[2]))))
