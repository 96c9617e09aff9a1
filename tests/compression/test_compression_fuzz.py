"""Bounded decoding: crafted headers are refused before anything is built, non-finite values are
refused, and a seeded fuzz of a real message ends in `MessageError` or the original model."""

import dataclasses
import json
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from tokenbound.compression import (BUILDERS, MessageError, QuantConfig, decode, encode,
                                    quantize_)
from tokenbound.compression.message import values_cap
from tokenbound.compression.wire import Reader
from tokenbound.errors import UserError

models = pytest.importorskip("tokenbound.models")
WORKER = Path(__file__).with_name("fuzz_worker.py")


def _message(**kw):
    cfg = models.GPTConfig(vocab_size=32, context_len=16, n_layer=1, n_head=2, d_model=16, **kw)
    model = models.build_model(cfg)
    return model, cfg, encode(model, cfg, quantize_(model, QuantConfig(levels=5)))


@pytest.fixture
def no_build(monkeypatch):
    """The GPT builder with `build` replaced by a failure: a test passes only if the decoder
    refuses the message before building anything."""
    def fail(d):
        raise AssertionError("the decoder built a model from a crafted header")
    gpt = BUILDERS["tokenbound-gpt"]
    monkeypatch.setitem(BUILDERS, "tokenbound-gpt", dataclasses.replace(gpt, build=fail))


def test_values_cap_by_hand():
    assert values_cap(100) == 2**22            # 800 bits * 2048 = 1,638,400 < 2^22
    assert values_cap(1000) == 2048 * 8000     # 16,384,000


@pytest.mark.parametrize("edit, match", [
    (dict(d_model=8192), "do not match"),        # 805 MB before: the shapes are planned first
    (dict(d_model=8192, n_head=64), "do not match"),
    (dict(n_layer=100_000), "100,000 layers"),   # 3.5 GB and counting before
    (dict(vocab_size=2**30), "do not match"),
    (dict(n_layer="4"), "bad model config"),
])
def test_crafted_dense_architecture_is_refused_before_building(forge, no_build, edit, match):
    _, _, msg = _message()
    forged = forge(msg, lambda h: h["config"].update(edit))
    with pytest.raises(AssertionError, match="built a model"):
        decode(msg)  # warm up (the first meta-device build imports torch's meta kernels)
    t0 = time.perf_counter()
    with pytest.raises(MessageError, match=match):
        decode(forged)
    assert time.perf_counter() - t0 < 2.0


def test_crafted_subspace_base_is_refused_by_the_values_cap(forge, no_build):
    # a subspace model charges only w (d,): a bigger base keeps the tensor list, so only the cap
    # on the values a build allocates (frozen ones included) can refuse it
    _, _, msg = _message(subspace_dim=64)
    forged = forge(msg, lambda h: h["config"].update(d_model=1024, n_layer=12, n_head=8))
    with pytest.raises(MessageError, match=f"151,240,800 values.*limit {values_cap(len(forged)):,}"):
        decode(forged)


def test_a_model_within_the_cap_still_decodes(forge):
    # the same edit at a size within the cap builds (and decodes to the same trained w)
    model, _, msg = _message(subspace_dim=64)
    model2, cfg2, _ = decode(forge(msg, lambda h: h["config"].update(d_model=32)))
    assert cfg2.d_model == 32 and torch.equal(model2.subspace.w, model.subspace.w)


def _reseal(body: bytes) -> bytes:
    return body + zlib.crc32(body).to_bytes(4, "little")


def test_non_finite_codebook_or_raw_tensor_is_refused():
    cfg = models.GPTConfig(vocab_size=32, context_len=16, n_layer=1, n_head=2, d_model=16,
                           norm_affine=True)
    model = models.build_model(cfg)
    qstate = quantize_(model, QuantConfig(levels=5, exclude=("*ln*",)))
    msg = encode(model, cfg, qstate)
    r = Reader(msg, pos=5)
    at = r.varint("header length") + r.pos  # the first group's codebook: 5 float16 values
    for nonfinite in (np.float16("nan"), np.float16("inf")):
        bad = bytearray(msg)
        bad[at + 2:at + 4] = np.array([nonfinite], "<f2").tobytes()
        with pytest.raises(MessageError, match="codebook 0 holds NaN or infinite"):
            decode(_reseal(bytes(bad[:-4])))
    # encode refuses them too (a qstate edited by hand, or NaN weights in a raw tensor)
    qstate.groups[0].codebook[1] = np.float16("nan")
    with pytest.raises(UserError, match="codebook 0 holds NaN"):
        encode(model, cfg, qstate)
    qstate.groups[0].codebook[1] = np.float16(0)
    with torch.no_grad():
        model.blocks[0].ln1.weight[0] = float("inf")
    with pytest.raises(UserError, match="raw tensor blocks.0.ln1.weight holds NaN or infinite"):
        encode(model, cfg, quantize_(model, QuantConfig(levels=5, exclude=("*ln*",))))


def test_fuzz_real_message_errors_or_exact_with_bounded_memory_and_time():
    """300 seeded mutations of a real 1.7 KB GPT message (see fuzz_worker.py), in a subprocess
    whose peak RSS is measured: before bounded decoding, a crafted `n_layer` ran out of time."""
    proc = subprocess.run([sys.executable, str(WORKER), "300", "20261206"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["bad"] == []
    assert out["error"] + out["exact"] + out["other"] == 300 and out["error"] >= 270
    assert out["rss_growth_mib"] < 64   # every crafted size is refused before allocating
    assert out["max_s"] < 3.0
