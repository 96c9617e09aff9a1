"""`tokenbound calc`: JSON values equal the spec formulas; bad input -> exit 2, one line."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest
from scipy.stats import binom

from tokenbound.cli import main
from tokenbound.commands.calc import compute

BASE = ["calc", "--mean", "3.2", "--tokens", "4796184", "--code-bits", "128015", "--json"]


def _run(capsys, *args):
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


def _json(capsys, *args):
    rc, out, err = _run(capsys, *args)
    assert rc == 0, err
    return json.loads(out)


def _L(c):
    # prefix-free length: C + 2 log2 C, one bit more when C is not a whole number of bytes
    return c + 2 * math.log2(c) + (c % 8 != 0)


def _c_a(vocab, alpha):
    return (math.log2(1 + (1 - alpha) * vocab / alpha), -math.log2(1 - alpha + alpha / vocab))


def test_azuma_exact_formula(capsys):
    r = _json(capsys, *BASE, "--method", "azuma", "--vocab", "256", "--alpha", "0.1",
              "--grid-points", "5", "--extra-bits", "12")
    c, a = _c_a(256, 0.1)
    D = (_L(128015) + 12) * math.log(2)
    comp = c * math.sqrt((D + math.log(5) + math.log(1 / 0.05)) / (2 * 4796184))
    assert r["range"] == pytest.approx(c) and r["offset"] == pytest.approx(a)
    assert r["complexity_term"] == pytest.approx(comp, rel=1e-12)
    assert r["sampling_term"] == 0 and r["bound"] == pytest.approx(3.2 + comp, rel=1e-12)
    assert r["random_guess"] == 8.0 and r["vacuous"] is False and r["certificate"] is True
    assert r["tokens"] == 4796184 and r["code_bits"] == 128015


def test_azuma_sampled_formula(capsys):
    r = _json(capsys, *BASE, "--method", "azuma", "--range", "10", "--offset", "0.5",
              "--samples", "10000", "--grid-points", "8", "--delta", "0.1")
    m, n, g = 4796184, 10000, 8
    d1, d2 = 0.1 * n / (n + m), 0.1 * m / (n + m)
    D = _L(128015) * math.log(2)
    comp = 10 * math.sqrt((D + math.log(g) + math.log(1 / d1)) / (2 * m))
    samp = 10 * math.sqrt((math.log(1 / d2) + math.log(g)) / (2 * n))
    assert r["bound"] == pytest.approx(3.2 + comp + samp, rel=1e-12)
    assert r["sampling_term"] == pytest.approx(samp) and r["random_guess"] is None


def test_samples_at_least_tokens_keep_the_sampling_term(capsys):
    # n >= M draws with replacement need not cover every token (METHOD 2.5): same formula as n < M
    args = ["calc", "--method", "azuma", "--mean", "0.5", "--tokens", "1000", "--code-bits", "0",
            "--range", "1", "--delta", "0.01", "--json"]
    for n in (999, 1000, 5000):
        r = _json(capsys, *args, "--samples", str(n))
        d1, d2 = 0.01 * n / (n + 1000), 0.01 * 1000 / (n + 1000)
        assert r["delta_1"] == pytest.approx(d1, rel=1e-12) and r["delta_2"] == pytest.approx(d2)
        samp = math.sqrt(math.log(1 / d2) / (2 * n))
        comp = math.sqrt(math.log(1 / d1) / 2000)
        assert r["sampling_term"] == pytest.approx(samp, rel=1e-12)
        assert r["bound"] == pytest.approx(0.5 + comp + samp, rel=1e-12)
    assert _json(capsys, *args, "--samples", "1000")["bound"] == pytest.approx(0.6029399569316798)


def test_sampled_coverage_with_n_equal_to_tokens():
    """Monte Carlo coverage of calc's sampled azuma bound at M = n = 1000 (seeded, ~0.1 s).

    Losses X_i = c * Bernoulli(1/2), i.i.d., so the conditional risk is c/2 exactly. A trial draws
    the M losses and then n positions uniformly with replacement; only the count of ones matters,
    so it is drawn as Binomial(M, 1/2) and then Binomial(n, ones/M) (the same distribution).
    The bound must fall below c/2 in at most a binomial tolerance of delta of the trials. Without
    the sampling term (the old calc's n >= M shortcut) about 1.6% of trials violate delta = 1%.
    """
    rng = np.random.default_rng(15)
    c, m, n, delta, trials = 2.0, 1000, 1000, 0.01, 50_000
    ones = rng.binomial(m, 0.5, trials)  # (trials,) ones among the M tokens
    hits = rng.binomial(n, ones / m)  # (trials,) ones among the n draws
    bound = {k: compute({"method": "azuma", "mean": c * k / n, "tokens": m, "samples": n,
                         "code_bits": 0, "range": c, "delta": delta})["bound"]
             for k in np.unique(hits)}
    violations = int(sum(bound[k] < c / 2 for k in hits))
    assert violations <= binom.ppf(0.999, trials, delta)


def test_bernstein_formula(capsys):
    r = _json(capsys, *BASE, "--method", "bernstein", "--vocab", "256", "--alpha", "0.01",
              "--var", "2.87")
    c, _ = _c_a(256, 0.01)
    K = _L(128015) * math.log(2) + math.log(1000) + math.log(20)
    best = min((-math.log(1 - lam) - lam) * 2.87 / (lam * c) + c * K / (lam * 4796184)
               for lam in [1e-4 * (0.999 / 1e-4) ** (i / 999) for i in range(1000)])
    assert r["complexity_term"] == pytest.approx(best, rel=1e-9)
    assert r["bound"] == pytest.approx(3.2 + best, rel=1e-9) and 0 < r["lam"] < 1
    # Bernstein below Azuma at this (small) variance
    az = _json(capsys, *BASE, "--method", "azuma", "--vocab", "256", "--alpha", "0.01")
    assert r["bound"] < az["bound"]


def test_paper_formula(capsys):
    r = _json(capsys, *BASE, "--method", "paper", "--vocab", "50257", "--alpha", "0.1",
              "--samples", "10000")
    c, _ = _c_a(50257, 0.1)
    assert r["range"] == pytest.approx(18.7870, abs=5e-5)
    m, n = 4796184, 10000
    rr = n / (n + m)
    D = (128015 + 2 * math.log2(128015)) * math.log(2)
    expected = 3.2 + c * (math.sqrt((D - math.log(rr * 0.05)) / (2 * m))
                          + math.sqrt(-math.log((1 - rr) * 0.05) / (2 * n)))
    assert r["bound"] == pytest.approx(expected, rel=1e-12) and r["certificate"] is False


def test_monotone_in_tokens_and_delta(capsys):
    common = ["--method", "azuma", "--range", "1", "--offset", "0"]
    b = lambda *extra: _json(capsys, "calc", "--mean", "0.1", "--code-bits", "1000", "--json",
                             *common, *extra)["bound"]
    assert b("--tokens", "10000") > b("--tokens", "20000")
    assert b("--tokens", "10000", "--delta", "0.01") > b("--tokens", "10000", "--delta", "0.1")


@pytest.mark.parametrize("extra, flag", [
    (["--method", "azuma", "--vocab", "256", "--alpha", "1.5"], "--alpha"),
    (["--method", "azuma", "--vocab", "256", "--alpha", "0.1", "--delta", "0"], "--delta"),
    (["--method", "bernstein", "--vocab", "256", "--alpha", "0.1"], "--var"),
    (["--method", "bernstein", "--vocab", "256", "--alpha", "0.1", "--var", "1",
      "--samples", "10"], "--samples"),
    (["--method", "bernstein", "--vocab", "256", "--alpha", "0.1", "--var", "1",
      "--samples", "4796184"], "--samples"),
    (["--method", "paper", "--vocab", "256", "--alpha", "0.1"], "--samples"),
    (["--method", "azuma", "--range", "1", "--offset", "0"], "--mean"),  # mean 3.2 > 1
])
def test_bad_input_exit_2_one_line(capsys, extra, flag):
    rc, out, err = _run(capsys, *BASE, *extra)
    assert rc == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and flag in err and "Traceback" not in err


@pytest.mark.parametrize("bits", ["-1", "2.5"])
def test_bad_code_bits(capsys, bits):
    rc, _, err = _run(capsys, "calc", "--method", "azuma", "--mean", "0.5", "--tokens", "10",
                      "--code-bits", bits, "--range", "1")
    assert rc == 2 and "--code-bits" in err


def test_cases_file_with_bad_line(tmp_path, capsys):
    good = {"method": "azuma", "mean": 0.1, "tokens": 10000, "code_bits": 0, "range": 1,
            "offset": 0}
    bad = dict(good, delta=2)
    path = tmp_path / "cases.jsonl"
    path.write_text("\n".join([json.dumps(good), json.dumps(bad), "not json",
                               json.dumps(dict(good, tokens=40000))]) + "\n")
    rc, out, _ = _run(capsys, "calc", "--cases", str(path))
    lines = [json.loads(s) for s in out.strip().splitlines()]
    assert len(lines) == 4 and rc == 1
    # code_bits = 0 -> D = 0: bound = 0.1 + sqrt(ln(20) / (2 M))
    assert lines[0]["bound"] == pytest.approx(0.1 + math.sqrt(math.log(20) / 20000))
    assert "--delta" in lines[1]["error"] and "error" in lines[2]
    assert lines[3]["bound"] == pytest.approx(0.1 + math.sqrt(math.log(20) / 80000))


def test_human_table_and_subprocess():
    proc = subprocess.run([sys.executable, "-m", "tokenbound", "calc", "--method", "azuma",
                           "--mean", "3.2", "--tokens", "4796184", "--code-bits", "128015",
                           "--vocab", "256", "--alpha", "0.1"], capture_output=True, text=True)
    assert proc.returncode == 0 and "bound (bits/token)" in proc.stdout
    assert "complexity term" in proc.stdout
    bad = subprocess.run([sys.executable, "-m", "tokenbound", "calc", "--method", "azuma",
                          "--mean", "3.2", "--tokens", "0", "--code-bits", "1", "--vocab", "256",
                          "--alpha", "0.1"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--tokens" in bad.stderr and "Traceback" not in bad.stderr


def test_trivial_bound_is_capped_and_labelled(capsys):
    # C = 10^6 bits on 1,000 tokens: Azuma's term is about 208 bits; every loss is at most
    # a + c = log2(V / alpha) = log2(2560) = 11.3219..., so the bound is that, labelled trivial
    r = compute({"method": "azuma", "mean": 3.2, "tokens": 1000, "code_bits": 10**6,
                 "vocab": 256, "alpha": 0.1})
    assert r["bound"] == pytest.approx(math.log2(2560), rel=1e-14) and r["trivial"] is True
    assert r["complexity_term"] > 200 and r["vacuous"] is True
    assert compute({"method": "azuma", "mean": 3.2, "tokens": 10**7, "code_bits": 1000,
                    "vocab": 256, "alpha": 0.1})["trivial"] is False
    rc, out, _ = _run(capsys, "calc", "--method", "azuma", "--mean", "3.2", "--tokens", "1000",
                      "--code-bits", "1000000", "--vocab", "256", "--alpha", "0.1")
    assert rc == 0 and "11.321928 trivial (capped at a + c)  VACUOUS" in out
