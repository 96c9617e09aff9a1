"""Per-group (block) quantization and its message (compression/groupwise.py)."""

import numpy as np
import pytest
import torch

from tokenbound.compression import MessageError, bits_by_part, decode
from tokenbound.compression.groupwise import (Blocks, GroupConfig, dequantize_blocks,
                                              encode_groupwise, quantize_blocks,
                                              quantize_groupwise_)
from tokenbound.errors import UserError

transformers = pytest.importorskip("transformers")


def _naive_asym(x, bits):
    """Reference: per row of x (nb, B), fp16 min and scale, round to nearest, clip."""
    out = np.empty_like(x)
    for i, row in enumerate(x):
        m = np.float16(row.min())
        d = np.float16((row.max() - np.float32(m)) / (2 ** bits - 1))
        q = np.clip(np.rint((row - np.float32(m)) / np.float32(d)), 0, 2 ** bits - 1)
        out[i] = np.float32(d) * q.astype(np.float32) + np.float32(m)
    return out


def test_quantize_blocks_matches_naive_and_error_shrinks_with_bits():
    w = np.random.default_rng(0).standard_normal((6, 64)).astype(np.float32)
    errs = []
    for bits in (2, 4, 8):
        blk = quantize_blocks(w, (bits, 32, 0))
        got = dequantize_blocks(blk, w.shape)
        np.testing.assert_array_equal(got, _naive_asym(w.reshape(-1, 32), bits).reshape(w.shape))
        assert blk.side.shape == (12, 2) and blk.codes.max() < 2 ** bits
        errs.append(float(np.abs(got - w).max()))
    assert errs[0] > errs[1] > errs[2] and errs[2] < 0.02
    sym = quantize_blocks(w, (8, 32, 1))
    assert sym.side.shape == (12, 1)
    assert np.abs(dequantize_blocks(sym, w.shape) - w).max() < 0.02


@pytest.mark.parametrize("type_name,scheme", [("Q4_1", (4, 32, 0)), ("Q8_0", (8, 32, 1))])
def test_gguf_blocks_dequantize_as_gguf(type_name, scheme):
    gguf = pytest.importorskip("gguf")
    from tokenbound.compression.gguf_codes import block_codes

    w = np.random.default_rng(1).standard_normal((4, 64)).astype(np.float32)
    raw = gguf.quants.quantize(w, gguf.GGMLQuantizationType[type_name]).reshape(-1)
    side, codes = block_codes(raw, type_name)
    blk = Blocks(scheme, side.view(np.float16).reshape(len(side), -1), codes)
    want = gguf.quants.dequantize(raw, gguf.GGMLQuantizationType[type_name]).reshape(w.shape)
    np.testing.assert_array_equal(dequantize_blocks(blk, w.shape), want)


def test_tiny_llama_message_decodes_to_exactly_the_quantized_model(tiny_llama):
    model = tiny_llama(tie_word_embeddings=True)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    gcfg = GroupConfig(bits=4, group_size=16, overrides=(("*embed_tokens*", 8),))
    blocks = quantize_groupwise_(model, gcfg)
    # every 2-D matrix quantized, norms raw; the embedding at 8 bits
    assert set(blocks) == {n for n, t in before.items() if t.dim() == 2}
    assert blocks["model.embed_tokens.weight"].scheme == (8, 16, 0)
    for n, p in model.named_parameters():
        assert (not torch.equal(p, before[n])) == (n in blocks), n
        assert float((p.detach() - before[n]).abs().max()) < 0.05, n
    msg = encode_groupwise(model, model.config, gcfg, blocks, {"tokenizer": "test"})
    model2, _, info = decode(msg)
    for (n, a), (_, b) in zip(model.state_dict().items(), model2.state_dict().items()):
        assert torch.equal(a, b), n
    x = torch.randint(0, 64, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(model(x).logits, model2(x).logits)
    parts = bits_by_part(msg)
    assert sum(parts.values()) == 8 * len(msg) == info["total_bits"]
    n_blocks = sum(b.codes.size // 16 for b in blocks.values())
    assert parts["scales"] == 32 * n_blocks  # fp16 scale + fp16 min per block, all charged
    raw = sum(t.numel() * 32 for n, t in before.items() if n not in blocks)
    assert parts["raw"] == raw
    assert info["quant"] == gcfg and info["extra"] == {"tokenizer": "test"}
    # the codes are entropy-coded: fewer bits than 4 (or 8) per weight
    assert parts["payload"] < sum(b.codes.size * b.scheme[0] for b in blocks.values())
    # corruption is refused, never a traceback
    bad = bytearray(msg)
    bad[len(bad) // 2] ^= 0xFF
    with pytest.raises(MessageError, match="checksum"):
        decode(bytes(bad))


def test_encode_refuses_weights_that_moved(tiny_llama):
    model = tiny_llama(tie_word_embeddings=True)
    gcfg = GroupConfig(bits=4, group_size=32)
    blocks = quantize_groupwise_(model, gcfg)
    with torch.no_grad():
        model.model.layers[0].mlp.up_proj.weight[0, 0] += 1.0
    with pytest.raises(UserError, match="differ"):
        encode_groupwise(model, model.config, gcfg, blocks)


def test_config_checks():
    with pytest.raises(UserError, match="2..8"):
        GroupConfig(bits=9)
    with pytest.raises(UserError, match="group-size"):
        GroupConfig(group_size=0)
    g = GroupConfig(bits=3, group_size=64, exclude=("*norm*",), overrides=(("*emb*", 8),))
    assert GroupConfig.from_dict(g.to_dict()) == g


def test_a_group_message_is_a_model_source(tmp_path, tiny_llama):
    """`evaluate --model M.tbm` scores exactly the decoded group-quantized model."""
    from tokenbound.sources import load_model_fn

    model = tiny_llama(tie_word_embeddings=True)
    gcfg = GroupConfig(bits=3, group_size=32)
    blocks = quantize_groupwise_(model, gcfg)
    path = tmp_path / "m.tbm"
    path.write_bytes(encode_groupwise(model, model.config, gcfg, blocks))
    src = load_model_fn(str(path))
    assert src.ident["kind"] == "message" and src.vocab_size == 64 and src.max_context == 64
    x = torch.randint(0, 64, (2, 8), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(src.fn(x), model(x).logits)


def _reframe(msg: bytes, edit) -> bytes:
    """`msg` with its JSON header changed by `edit(header)`, re-framed with a valid CRC."""
    import json
    import zlib

    from tokenbound.compression.wire import Reader, varint

    r = Reader(msg, pos=5, end=len(msg) - 4)
    hlen = r.varint("header length")
    header = json.loads(zlib.decompress(bytes(r.take(hlen, "header"))))
    edit(header)
    h = zlib.compress(json.dumps(header, sort_keys=True, separators=(",", ":")).encode(), 9)
    body = msg[:5] + varint(len(h)) + h + msg[r.pos:-4]
    return body + zlib.crc32(body).to_bytes(4, "little")


def test_crafted_group_headers_are_refused_before_allocating(tiny_llama):
    model = tiny_llama(tie_word_embeddings=True)
    gcfg = GroupConfig(bits=4, group_size=32)
    msg = encode_groupwise(model, model.config, gcfg, quantize_groupwise_(model, gcfg))
    assert decode(_reframe(msg, lambda h: None))[2]["total_bits"] == 8 * len(msg)

    def huge(h):  # a header asking for a 10^12-value embedding
        h["tensors"][0][1] = [10 ** 9, 1024]
    with pytest.raises(MessageError, match="corrupt or crafted"):
        decode(_reframe(msg, huge))

    def wider(h):  # the config's architecture no longer matches the tensor list
        h["config"]["config"]["hidden_size"] = 64
    with pytest.raises(MessageError, match="do not match"):
        decode(_reframe(msg, wider))

    def bad_quant(h):
        h["quant"]["bits"] = 99
    with pytest.raises(MessageError, match="group quantization config"):
        decode(_reframe(msg, bad_quant))
