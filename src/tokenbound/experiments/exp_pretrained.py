"""Experiment `pretrained`: SmolLM2-135M-Instruct (GGUF Q4_1) on Shakespeare.

Paper (Lotfi et al. 2024): token-level bounds for pretrained models are vacuous at small data
sizes because the code length (the whole checkpoint) dwarfs the number of tokens; the bound
becomes non-vacuous only once m is large. A model that was NOT chosen using the text needs no
complexity term at all (C = 0): the same martingale bound then holds on any such text.

* code length: the GGUF file re-coded exactly (`compression.gguf_code_length`): entropy-coded
  tensors + the metadata as stored (tokenizer included), a choice fixed in advance;
* compression bound: every token of a FIXED subset of the training split (the first N training
  scenes, N fixed here in advance) scored exactly (blocks of 1024 tokens), `certify` with C;
* m*: the number of tokens at which the same per-token statistics (means, variances, betting
  sums all scaled linearly in m) would give a bound below log2 V (bisection on
  `bounds.certify_exact`);
* held-out bound: the first H held-out scenes scored exactly, certified with C = 0 (valid for
  text the model was not chosen with; see the caveat in the notes).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np

from tokenbound.experiments import steps
from tokenbound.experiments.report import figure, mark_references
from tokenbound.experiments.results import Certified

log = logging.getLogger(__name__)

HELP = "SmolLM2-135M (GGUF): exact code length, bits/token, vacuous bound, m*, held-out bound"
DELTA = 0.05
SCALES = {  # fixed in advance (before any scoring)
    "quick": {"train_docs": 10, "heldout_docs": 4},
    "full": {"train_docs": 16, "heldout_docs": 6},  # ~75k tokens: ~10 min at ~120 tokens/s
}
EVAL = {"context_len": 1024, "stride": 1024, "mode": "exact", "batch_size": 2, "dtype": "fp32"}
COLUMNS = ["what", "tokens m", "code bits C", "bits/token (scored)", "bound bits/token",
           "family", "vacuous"]


def gguf_path() -> str:
    from tokenbound.data.tokenizer import _gguf_path

    return str(_gguf_path("smollm2")[0])


def heldout_subset(src_dir: Path, dest: Path, n_docs: int):
    """The first `n_docs` documents of the held-out stream, written as their own stream."""
    from tokenbound.data import open_stream, write_stream

    if (dest / "meta.json").is_file():
        return open_stream(str(dest))
    s = open_stream(str(src_dir))
    n = min(n_docs, s.n_docs)
    meta = {k: s.meta[k] for k in ("tokenizer", "vocab_size", "eot_id", "start_id")}
    meta.update(subset_of=s.sha256, n_docs_kept=n)
    return write_stream(dest, [np.asarray(s.doc(d)) for d in range(n)], meta)


def scaled_bound(tot: dict, betting, m: int, m_new: int, V: int, code_bits: int,
                 delta: float) -> float:
    """Best certified bound if `m_new` tokens had the same per-token statistics as the `m`."""
    from tokenbound import bounds as B

    r = m_new / m
    return B.certify_exact(m_new, tot["sum_x"] * r, tot["sum_center"] * r, tot["sum_dev2"] * r,
                           betting * r, vocab_size=V, code_bits=code_bits,
                           delta=delta).best.value


def tokens_to_nonvacuous(tot: dict, betting, m: int, V: int, code_bits: int,
                         delta: float = DELTA) -> int | None:
    """Smallest m' (to 1%) whose scaled bound is below log2 V; None beyond 1e15 tokens."""
    guess = math.log2(V)

    def ok(mm: float) -> bool:
        return scaled_bound(tot, betting, m, int(mm), V, code_bits, delta) < guess

    lo, hi = float(m), float(m)
    if ok(lo):
        return None if lo > m else int(m)  # already non-vacuous
    while not ok(hi):
        lo, hi = hi, hi * 4
        if hi > 1e15:
            return None
    while hi / lo > 1.01:
        mid = math.sqrt(lo * hi)
        lo, hi = (lo, mid) if ok(mid) else (mid, hi)
    return int(math.ceil(hi))


def _score(stream_dir: Path, ev_dir: Path, progress: bool):
    from tokenbound.evaluation import load_result

    steps.evaluate(gguf_path(), stream_dir, ev_dir, EVAL, progress=progress)
    stats, _ = load_result(str(ev_dir))
    return stats


def run(out_dir: str, quick: bool, progress: bool, scale_override: dict | None = None,
        **_) -> dict:
    from tokenbound.compression import gguf_code_length

    scale = {**SCALES["quick" if quick else "full"], **(scale_override or {})}
    out = Path(out_dir)
    steps.prepare("shakespeare", "gguf:smollm2", out / "data",
                  max_train_docs=scale["train_docs"], progress=progress)
    heldout_subset(out / "data" / "heldout", out / "heldout-subset",
                   scale["heldout_docs"])
    code = steps.read_json(out / "gguf_code.json")
    if code is None:
        code = gguf_code_length(gguf_path(), progress=progress)
        steps.atomic_json(out / "gguf_code.json", code)
    C = int(code["entropy_coded_bits"] + code["metadata_bits"])
    stats = _score(out / "data" / "train", out / "eval_train", progress)
    cert = steps.certify(out / "eval_train", C, delta=DELTA)
    tot, m, V = stats.totals(), int(stats.n_scored.sum()), int(stats.meta["vocab_size"])
    m_star = tokens_to_nonvacuous(tot, stats.betting, m, V, C)
    hstats = _score(out / "heldout-subset", out / "eval_heldout", progress)
    hcert = steps.certify(out / "eval_heldout", 0, delta=DELTA)
    rows = [_row("compression bound, training subset", cert, C),
            _row("held-out bound, C = 0", hcert, 0)]
    return {"title": "SmolLM2-135M-Instruct (GGUF Q4_1) on Shakespeare", "columns": COLUMNS,
            "rows": rows, "plots": [plot(tot, stats.betting, m, V, C, m_star, out)],
            "code_length": code, "code_bits_charged": C, "m_star": m_star,
            "random_guess_bits": math.log2(V), "heldout_tokens": int(hstats.n_scored.sum()),
            "scale": {**scale, "eval": EVAL, "n_train_tokens": m},
            "notes": notes(cert, C, m, m_star, V, code)}


def _row(what: str, cert: Certified, C: int) -> dict:
    b = cert.best
    return {"what": what, "tokens m": cert.m, "code bits C": C,
            "bits/token (scored)": cert.mean_bits, "bound bits/token": b["value"],
            "family": b["family"], "vacuous": b["vacuous"]}


def notes(cert: Certified, C: int, m: int, m_star, V: int, code: dict) -> list[str]:
    ratio = C / m
    out = [f"Code length C = {C:,} bits ({C / 8 / 2**20:.1f} MiB): the GGUF tensors entropy-coded "
           f"({code['entropy_coded_bits']:,} bits, stored as {code['stored_bits']:,}) plus its "
           f"metadata ({code['metadata_bits']:,} bits, tokenizer included), "
           f"{code['parameters']:,} parameters. It is charged as an upper estimate of a "
           "message's length (no message file is written here); `tokenbound compress --gguf "
           "FILE --out M.tbm` writes the GGUF model's message (its own block codes "
           "entropy-coded, fp16 scales stored; decodes to exactly the scored tensors), whose "
           "length `code_bits_certificate` is the certificate-grade C (slightly smaller).",
           f"Compression bound on the scored training subset (m = {m:,} tokens): C/m = "
           f"{ratio:,.0f} bits per token, so the complexity term swamps everything: the bound "
           f"is {'VACUOUS' if cert.best['vacuous'] else 'non-vacuous'} "
           f"(random guessing = log2 {V} = {math.log2(V):.2f} bits/token).",
           ("Extrapolated, not a certificate: with the same per-token statistics the bound "
            f"would become non-vacuous at about m* = {m_star:.2g} tokens ({m_star / m:,.0f} "
            "times the scored subset; located to 1%)."
            if m_star else "No m up to 1e15 makes the bound non-vacuous with these statistics."),
           "Held-out bound (C = 0): valid only for text the model was not chosen with. "
           "SmolLM2 was trained on web-scale data that very likely contains Shakespeare; if "
           "these plays were in its training set, the C = 0 bound is not a certificate for them. "
           "It is shown as the bound any fixed, independently chosen model gets.",
           "Both bounds bound the conditional risk given the scored contexts (blocks of 1024 "
           "tokens), not the loss on new documents."]
    return out


def plot(tot: dict, betting, m: int, V: int, C: int, m_star, out: Path) -> str:
    """The compression bound against m (same per-token statistics), crossing log2 V at m*."""
    hi = max(m_star or 0, m) * 30
    ms = np.geomspace(m, hi, 24).astype(np.int64)
    vals = [scaled_bound(tot, betting, m, int(x), V, C, DELTA) for x in ms]
    with figure(out / "pretrained.png", (5.5, 3.6)) as (fig, ax):
        ax.plot(ms, vals, "o-", ms=3, label="compression bound (same statistics)")
        mark_references(ax, random_guess=math.log2(V), guess_label=f"random guess log2 {V}")
        ax.axhline(tot["mean_bits"], color="tab:green", ls="--", label="bits/token measured")
        if m_star:
            ax.axvline(m_star, color="tab:red", lw=0.8, label=f"m* = {m_star:.3g}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("training tokens m")
        ax.set_ylabel("bits per token")
        ax.legend(fontsize=7)
    return "pretrained.png"
