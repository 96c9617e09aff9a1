import json
import math
import zlib

import numpy as np
import pytest
import torch

from tokenbound.compression import (MessageError, QuantConfig, bits_by_part, decode, encode,
                                    prefix_free_bits, quantize_)
from tokenbound.errors import UserError

CONFIGS = [
    QuantConfig(levels=5, method="uniform", grouping="model"),
    QuantConfig(levels=7, method="kmeans", grouping="model"),
    QuantConfig(levels=3, method="uniform", grouping="tensor"),
    QuantConfig(levels=9, method="kmeans", grouping="tensor", exclude=("norm.*",)),
    QuantConfig(levels=1, method="uniform", grouping="model"),
]


@pytest.mark.parametrize("qcfg", CONFIGS, ids=lambda q: f"{q.method}-{q.grouping}-{q.levels}")
def test_round_trip_exact(toy, qcfg):
    model, cfg = toy
    qstate = quantize_(model, qcfg)
    msg = encode(model, cfg, qstate, extra_header={"tokenizer": "bytes", "context": 16})
    model2, cfg2, info = decode(msg)
    assert cfg2 == cfg
    for (n, a), (n2, b) in zip(model.state_dict().items(), model2.state_dict().items()):
        assert n == n2 and torch.equal(a, b), n
    idx = torch.randint(0, cfg.vocab_size, (2, 5), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(model.eval()(idx), model2(idx))
    parts = bits_by_part(msg)
    assert sum(parts.values()) == 8 * len(msg) == info["total_bits"]
    assert info["bits_by_part"] == parts and info["extra"] == {"tokenizer": "bytes", "context": 16}
    assert info["quant"] == qcfg
    n_groups = 1 if qcfg.grouping == "model" else 4 - len(qstate.raw_names)
    assert parts["codebooks"] == 16 * qcfg.levels * n_groups
    # raw part: the excluded LayerNorm weight and bias, 8 float32 each = 2 * 8 * 32 bits
    assert parts["raw"] == (2 * 8 * 32 if qcfg.exclude else 0)


def test_weights_are_the_float16_codebook(toy):
    model, cfg = toy
    before = model.emb.weight.detach().clone()
    qstate = quantize_(model, QuantConfig(levels=4, grouping="tensor"))
    g = qstate.groups[0]
    assert g.names == ("emb.weight",) and g.codebook.dtype == np.float16
    w = model.emb.weight.detach().reshape(-1).numpy()
    assert np.array_equal(w, g.codebook.astype(np.float32)[g.symbols])
    assert len(np.unique(w)) <= 4 and not torch.equal(before, model.emb.weight)


def test_quant_config_json_round_trip():
    q = QuantConfig(levels=13, method="kmeans", grouping="tensor", exclude=("*norm*",))
    assert QuantConfig.from_dict(json.loads(json.dumps(q.to_dict()))) == q
    with pytest.raises(UserError, match="--levels"):
        QuantConfig(levels=0)
    with pytest.raises(UserError, match="method"):
        QuantConfig(method="lloyd-max")


def test_prefix_free_bits_by_hand():
    # C = 1024: 1024 + 2 * 10 = 1044
    assert prefix_free_bits(1024) == 1044.0
    assert prefix_free_bits(3000) == pytest.approx(3000 + 2 * math.log2(3000))


def test_encode_refuses_a_model_changed_after_quantization(toy):
    model, cfg = toy
    qstate = quantize_(model, QuantConfig(levels=5))
    with torch.no_grad():
        model.head.weight[0, 0] += 1e-3
    with pytest.raises(UserError, match="differ from the quantized state"):
        encode(model, cfg, qstate)


def _reseal(body: bytes) -> bytes:
    return body + zlib.crc32(body).to_bytes(4, "little")


def test_version_magic_checksum_and_mismatch_errors(toy, forge):
    model, cfg = toy
    msg = encode(model, cfg, quantize_(model, QuantConfig(levels=5)))
    with pytest.raises(MessageError, match="version 2"):
        decode(_reseal(msg[:4] + bytes([2]) + msg[5:-4]))
    with pytest.raises(MessageError, match="magic"):
        decode(b"XXXX" + msg[4:])
    with pytest.raises(MessageError, match="checksum"):
        decode(msg[:-5] + bytes([msg[-5] ^ 1]) + msg[-4:])
    # a header for a wider model: names match, shapes do not
    forged = forge(msg, lambda h: h["config"].update(width=16))
    with pytest.raises(MessageError, match="do not match"):
        decode(forged)
    with pytest.raises(UserError, match="not found"):
        decode("/nonexistent/message.tbq")


def _mutate(msg: bytes, rng, reseal: bool) -> bytes:
    kind = rng.integers(3)
    if kind == 0:
        out = msg[:rng.integers(len(msg))]
    else:
        b = bytearray(msg)
        for _ in range(rng.integers(1, 4)):
            b[rng.integers(len(b))] ^= int(rng.integers(1, 256))
        out = bytes(b)
    if reseal and len(out) > 4:  # recompute the CRC so the parser itself is exercised
        out = _reseal(out[:-4])
    return out


def test_fuzz_truncations_and_byte_flips(toy):
    model, cfg = toy
    qstate = quantize_(model, QuantConfig(levels=6, grouping="tensor", exclude=("norm.bias",)))
    msg = encode(model, cfg, qstate)
    ref = {k: v.clone() for k, v in model.state_dict().items()}
    rng = np.random.default_rng(1234)
    outcomes = {"error": 0, "exact": 0}
    for case in range(400):
        bad = _mutate(msg, rng, reseal=case % 2 == 1)
        try:
            model2, _, _ = decode(bad)
        except MessageError:
            outcomes["error"] += 1
            continue
        # a mutation that survives must still give a well-formed model; if it differs from the
        # original that is only possible because the CRC was recomputed by the test
        same = all(torch.equal(ref[k], v) for k, v in model2.state_dict().items())
        outcomes["exact"] += same
        assert same or case % 2 == 1
    assert outcomes["error"] >= 300


def test_sizes_are_checked_before_allocation(toy, forge):
    model, cfg = toy
    msg = encode(model, cfg, quantize_(model, QuantConfig(levels=5)))
    huge = forge(msg, lambda h: h["tensors"][0].__setitem__(1, [2**40]))
    with pytest.raises(MessageError, match="limit"):
        decode(huge)
    many_levels = forge(msg, lambda h: h.__setitem__("groups", [60000]))
    with pytest.raises(MessageError, match="codebook needs 120,000 bytes"):
        decode(many_levels)
    with pytest.raises(MessageError, match="codebook sizes"):
        decode(forge(msg, lambda h: h.__setitem__("groups", [0])))
