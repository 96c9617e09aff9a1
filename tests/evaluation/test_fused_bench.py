"""benchmarks/gpu_scoring.py: its CPU smoke run, FLOP count and peak table (no GPU needed)."""

import importlib.util
import os

import pytest
import torch

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks", "gpu_scoring.py")


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("gpu_scoring", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_cpu_smoke_writes_the_table(bench, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OUT", str(tmp_path))
    assert bench.main(["--cpu-smoke"]) == 0  # 0: the fused statistics passed verification
    text = (tmp_path / "gpu.md").read_text()
    assert text in capsys.readouterr().out  # the same table on stdout
    assert "CPU SMOKE RUN" in text and "FAILED" not in text
    for name in ("gpt2-tiny", "smollm2-tiny"):
        assert text.count(f"| {name} | 8 |") == 3 and text.count(f"| {name} | 16 |") == 3


def test_flops_per_token_tiny_gpt2(bench):
    cfg = bench.model_configs(smoke=True)["gpt2-tiny"]
    model = bench.build(cfg, "cpu")
    # per layer (Conv1D): qkv 32x96 + proj 32x32 + fc 32x128 + proj 128x32 = 12,288 weights;
    # 2 layers + LM head 300x32 = 34,176; 2 * 34,176 + attention 2 * 2 layers * L=8 * d=32
    assert bench.flops_per_token(model, 8) == 2 * 34176 + 2 * 2 * 8 * 32


def test_peak_table_and_cpu_only_exit(bench, capsys):
    assert bench.peak_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert bench.peak_tflops("NVIDIA H100 PCIe") == 756.0
    assert bench.peak_tflops("NVIDIA H200") == 989.0
    assert bench.peak_tflops("Some Card") is None
    if not torch.cuda.is_available():
        assert bench.main([]) == 2
        assert "needs a CUDA device" in capsys.readouterr().out


def test_verification_catches_a_wrong_statistic(bench, monkeypatch):
    """verify() must fail loudly: break the fused path and expect a message."""
    from tokenbound.evaluation.token_stats import TokenStats

    real = bench.token_stats_fused

    def broken(z, t, *a):
        ts = real(z, t, *a)
        return TokenStats(ts.logp, ts.x, ts.center + 1e-3, ts.topk_err, ts.topk_center)

    monkeypatch.setattr(bench, "token_stats_fused", broken)
    z, t = bench.hard_rows(300, "cpu")
    assert "center" in bench.verify(z, "cpu", smoke=True)


def test_compile_failure_falls_back_to_eager_and_says_so(bench, monkeypatch):
    """A machine whose torch.compile breaks must still get a measurement (of the eager
    forward), with a note, rather than losing the whole device run."""
    def broken_compile(fn):
        def run(idx):
            raise RuntimeError("inductor: no C++ compiler found")
        return run

    monkeypatch.setattr(bench, "compile_fn", broken_compile)
    model = bench.build(bench.model_configs(smoke=True)["gpt2-tiny"], "cpu")
    notes = []
    res = bench.run_tokenbound(model, 8, "cpu", True, "fused", notes, use_compile=True)
    assert res["compiled"] is False and res["rate"] > 0 and res["batch"] == 8
    assert len(notes) == 1 and "torch.compile failed" in notes[0] and "no C++" in notes[0]


def test_partial_table_written_after_each_model(bench, tmp_path, monkeypatch):
    monkeypatch.setenv("OUT", str(tmp_path))
    seen = []
    real = bench.run_hf

    def hf_then_check(model, L, device, smoke):
        if seen:  # the second (model, L): the first one's rows are already on disk
            text = (tmp_path / "gpu.md").read_text()
            assert "PARTIAL" in text and text.count("| gpt2-tiny | 8 |") == 3
        seen.append(L)
        return real(model, L, device, smoke)

    monkeypatch.setattr(bench, "run_hf", hf_then_check)
    assert bench.main(["--cpu-smoke"]) == 0
    assert len(seen) == 4 and "PARTIAL" not in (tmp_path / "gpu.md").read_text()
