"""The compiled center sums of `token_stats` (issue 20): the same function as the eager path up
to float32 summation order, checked against the float64 reference; everything else bitwise the
eager path's; "auto" leaves small vocabularies eager; a failed compile falls back (or, when
asked for explicitly, is a one-line error)."""

import importlib
import logging

import numpy as np
import pytest
import torch

from tokenbound.errors import UserError

TS = importlib.import_module("tokenbound.evaluation.token_stats")  # the module, not the function

V = 4100  # >= COMPILE_MIN_VOCAB; not a multiple of the sum block or of 32


def _llm_rows(N=9, seed=5):
    """Peaked rows like a real LM's: a few likely tokens, a long tail 20-120 nats down."""
    g = torch.Generator().manual_seed(seed)
    z = -torch.rand(N, V, generator=g) * 100
    z[:, :5] = torch.randn(N, 5, generator=g) * 2 + 10
    z[1, :] = torch.randn(V, generator=g) * 3  # a flat row: every entry matters
    z[0, 7:] = -1e4  # every p but a few underflows
    return z, torch.randint(0, V, (N,), generator=g)


@pytest.fixture(scope="module")
def kernel():
    k = TS.compiled_center_sums(TS._chunk_rows(V, 1, TS.CHUNK_BYTES), V, len(TS.ALPHA_GRID))
    if k is None:
        pytest.skip("torch.compile cannot build here (no C++ compiler)")
    return k


def test_compiled_matches_reference_and_eager(kernel):
    assert V >= TS.COMPILE_MIN_VOCAB and V % TS.SUM_BLOCK and V % 32
    z, t = _llm_rows()
    ref = TS.token_stats_naive(z, t)
    eager = TS.token_stats(z, t)
    comp = TS.token_stats(z, t, center_kernel="compiled")
    # the centers: within float32 rounding of the float64 reference, as the eager path
    np.testing.assert_allclose(comp.center, ref.center, rtol=1e-6, atol=1e-6)
    # everything else is computed by the same code as the eager path: bitwise equal
    for f in ("logp", "x", "topk_err", "topk_center"):
        assert np.array_equal(getattr(comp, f), getattr(eager, f)), f
    # and "auto" at this vocabulary is the compiled path
    auto = TS.token_stats(z, t, center_kernel="auto")
    assert np.array_equal(auto.center, comp.center)


def test_compiled_sums_against_float64_sums(kernel):
    # the kernel itself: its two sums against float64 sums of the same float32 inputs
    z, _ = _llm_rows()
    n = TS._chunk_rows(V, 1, TS.CHUNK_BYTES)
    p = torch.zeros(n, -(-V // 32) * 32)
    p[:z.shape[0], :V] = torch.softmax(z, dim=1).clamp(min=float(np.exp(TS.LP_FLOOR)))
    al = np.asarray(TS.ALPHA_GRID)
    c1, c0 = torch.tensor(1 - al, dtype=torch.float32), torch.tensor(al / V, dtype=torch.float32)
    with torch.inference_mode():
        s, e = kernel(p[:, :V], c1, c0)
    pd = p[:z.shape[0], :V].double()
    lq = torch.log(pd[:, None, :] * c1.double()[None, :, None] + c0.double()[None, :, None])
    np.testing.assert_allclose(s[:z.shape[0]].double(), lq.sum(2), rtol=2e-6)
    np.testing.assert_allclose(e[:z.shape[0]].double(), (pd[:, None, :] * lq).sum(2),
                               rtol=2e-6, atol=1e-9)


def test_compiled_rows_do_not_depend_on_neighbours_or_threads(kernel):
    z, t = _llm_rows()
    whole = TS.token_stats(z, t, center_kernel="compiled", threads=2)
    for i in (0, 4, 8):
        alone = TS.token_stats(z[i:i + 1], t[i:i + 1], center_kernel="compiled", threads=1)
        assert np.array_equal(alone.center[0], whole.center[i]), i
    before = torch.get_num_threads()
    TS.token_stats(z, t, center_kernel="compiled", threads=2)
    assert torch.get_num_threads() == before


def test_auto_leaves_small_vocabularies_eager(monkeypatch):
    # bytes and other small vocabularies: "auto" never compiles, the numbers are the eager ones
    def boom(*a, **k):
        raise AssertionError("compiled for a small vocabulary")

    monkeypatch.setattr(TS, "compiled_center_sums", boom)
    g = torch.Generator().manual_seed(0)
    z, t = torch.randn(20, 256, generator=g) * 3, torch.randint(0, 256, (20,), generator=g)
    a, b = TS.token_stats(z, t, center_kernel="auto"), TS.token_stats(z, t)
    for f in ("logp", "x", "center", "topk_err", "topk_center"):
        assert np.array_equal(getattr(a, f), getattr(b, f)), f


def test_failed_compile_falls_back_or_is_a_user_error(monkeypatch, caplog):
    def no_compiler(fn, **kw):
        def run(*a):
            raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found")
        return run

    monkeypatch.setattr(torch, "compile", no_compiler)
    monkeypatch.setattr(TS, "_COMPILED", {})
    z, t = _llm_rows(N=3)
    with caplog.at_level(logging.WARNING, logger=TS.__name__):
        auto = TS.token_stats(z, t, center_kernel="auto")
    assert "compiling the center sums failed" in caplog.text and "--stats torch" in caplog.text
    eager = TS.token_stats(z, t)
    for f in ("logp", "x", "center", "topk_err", "topk_center"):
        assert np.array_equal(getattr(auto, f), getattr(eager, f)), f
    with pytest.raises(UserError, match="--stats torch"):
        TS.token_stats(z, t, center_kernel="compiled")
    with pytest.raises(ValueError, match="center_kernel"):
        TS.token_stats(z, t, center_kernel="fast")

