"""Experiment `markov`: k-th order Markov chains versus GPTs restricted to the same k tokens.

Paper (Lotfi et al. 2024, section on Markov chains): token-level bounds of k-th order Markov
chains, fitted by counting on the training tokens and charged for their counts, against a
transformer whose context is restricted to the same k tokens; the transformer was far better for
larger k. Here, on the first N training scenes of Shakespeare (bytes, V = 256):

* chain of order k (`tokenbound.baselines.markov`): counts on the scored tokens, additive
  smoothing beta = 0.1, the message written and decoded (C = 8 * bytes), exact scoring of every
  token, `certify_exact` (same alpha/center/family grids as for a GPT);
* GPT with `context_len = k` (k >= 1; k = 0 has no GPT counterpart: a GPT with no input is a
  unigram model), trained here on windows of k tokens, quantized and coded by the pipeline, then
  scored exactly with stride 1, so every token sees exactly the k previous tokens of its document
  (fewer at the start, padded by the start token for the chain) -- the same context as the chain.

Each row is its own certificate at delta = 0.05 (rows are not compared on the data).
"""

from __future__ import annotations

import logging
from pathlib import Path

from tokenbound.errors import UserError
from tokenbound.experiments import steps
from tokenbound.experiments.report import figure, mark_references
from tokenbound.fileio import atomic_write_bytes

log = logging.getLogger(__name__)

HELP = "k-th order Markov chains (counts coded exactly) vs GPTs with k tokens of context"
DELTA = 0.05
SCALES = {  # fixed before any data is seen
    "quick": {"docs": 20, "orders": (0, 1, 2), "steps": 300, "batch": 512},
    "full": {"docs": 120, "orders": (0, 1, 2, 3, 4), "steps": 1000, "batch": 512},
}
GPT = {"vocab_size": 256, "n_layer": 2, "n_head": 4, "d_model": 128, "subspace_dim": 8192,
       "seed": 0}
COLUMNS = ["k", "model", "code bits", "train bits/byte", "bound bits/byte", "family", "alpha",
           "top-1 err", "top-1 err bound"]


def add_arguments(parser) -> None:
    parser.add_argument("--orders", type=int, nargs="+", help="Markov orders k (default: "
                        "0 1 2 quick, 0..4 full)")
    parser.add_argument("--no-gpt", action="store_true", help="skip the GPT counterparts")


def markov_row(stream, k: int, out: Path, progress: bool) -> dict:
    """Fit, code (and decode back), score and certify the order-k chain on `stream`."""
    import numpy as np

    from tokenbound.baselines import markov as M

    cached = steps.read_json(out / f"markov-k{k}.json")
    if cached is not None and cached.get("sha256") == stream.sha256:
        return cached
    tokens = np.asarray(stream.tokens)
    counts = M.fit_counts(tokens, stream.doc_offsets, k, stream.vocab_size, stream.start_id)
    message = M.encode_counts(counts)
    back = M.decode_counts(message)
    if not (np.array_equal(back.keys, counts.keys) and np.array_equal(back.counts, counts.counts)):
        raise RuntimeError(f"Markov k={k}: the message does not decode to the counts")
    atomic_write_bytes(out / f"markov-k{k}.bin", message)
    sums = M.markov_token_sums(counts, tokens, stream.doc_offsets, stream.start_id,
                               progress=progress)
    cert = M.certify_markov(sums, stream.vocab_size, 8 * len(message), DELTA)
    row = _row(k, f"Markov k={k}", 8 * len(message), cert["mean_bits"], cert["token"],
               cert["top1_error"], cert["top1"]["value"])
    row.update(sha256=stream.sha256, n_pairs=counts.n_pairs, n_contexts=counts.n_contexts,
               beta=M.BETA, certificate=cert)
    steps.atomic_json(out / f"markov-k{k}.json", row)
    return row


def gpt_row(k: int, scale: dict, out: Path, progress: bool) -> dict:
    """Train / compress / score exactly (stride 1) / certify a GPT with context_len = k."""
    from tokenbound.experiments.pipeline import Recipe, run

    recipe = Recipe(
        name=f"markov-gpt-k{k}", out=str(out / f"gpt-k{k}"), delta=DELTA,
        data={"corpus": "shakespeare", "tokenizer": "bytes", "max_train_docs": scale["docs"]},
        model={**GPT, "context_len": k},
        train={"steps": scale["steps"], "batch_size": scale["batch"], "lr": 0.05,
               "warmup_frac": 0.05, "weight_decay": 0.0, "eval_interval": 0,
               "eval_batches": 5, "ckpt_interval": 100, "seed": 0, "device": "cpu"},
        compress={"levels": 17, "method": "kmeans", "grouping": "model", "qat_steps": 0},
        evaluate={"context_len": k, "stride": 1, "mode": "exact", "batch_size": 4096,
                  "dtype": "fp32"},
        heldout=False)
    rep = run(recipe, progress=progress)
    t1 = rep["bound"]["topk"].get("1", {}).get("best", {})
    fam = rep["families"][rep["certified_family"]]
    return _row(k, f"GPT ctx={k}", rep["code_bits"], rep["empirical_bits_per_token"],
                {"value": rep["bound_bits_per_token"], "family": rep["certified_family"],
                 "alpha": fam["alpha"], "vacuous": rep["vacuous"]},
                t1.get("empirical"), t1.get("value"))


def _row(k, model, code_bits, train_bits, best: dict, top1, top1_bound) -> dict:
    return {"k": k, "model": model, "code bits": int(code_bits), "train bits/byte": train_bits,
            "bound bits/byte": best["value"], "family": best["family"], "alpha": best["alpha"],
            "top-1 err": top1, "top-1 err bound": top1_bound, "vacuous": best["vacuous"]}


def run(out_dir: str, quick: bool, progress: bool, orders=None, no_gpt: bool = False,
        scale_override: dict | None = None, **_) -> dict:
    """Markov chains and GPTs at each order; returns the results table.

    `scale_override` (tests only) replaces entries of the quick/full scale.
    """
    from tokenbound.data import open_stream

    scale = {**SCALES["quick" if quick else "full"], **(scale_override or {})}
    orders = tuple(orders) if orders else scale["orders"]
    if any(k < 0 for k in orders):
        raise UserError(f"--orders {' '.join(map(str, orders))}: an order k is the number of "
                        "previous tokens seen, 0 or more (e.g. --orders 0 1 2)")
    out = Path(out_dir)
    steps.prepare("shakespeare", "bytes", out / "data", max_train_docs=scale["docs"],
                  progress=progress)
    stream = open_stream(str(out / "data" / "train"))
    rows = []
    for k in orders:
        rows.append(markov_row(stream, k, out, progress))
        if k >= 1 and not no_gpt:
            rows.append(gpt_row(k, scale, out, progress))
    plots = [plot(rows, out / "markov.png")]
    return {"title": "Markov chains vs GPTs with the same context (Shakespeare bytes)",
            "columns": COLUMNS, "rows": rows, "plots": plots,
            "scale": {**scale, "orders": list(orders), "m": len(stream), "gpt": GPT},
            "notes": notes(rows, len(stream), scale["docs"])}


def notes(rows: list, m: int, docs: int) -> list[str]:
    return [f"Population: the first {docs} training scenes of Shakespeare, m = {m:,} bytes; "
            "every byte scored (exact mode, no sampling term); delta = 0.05 per row.",
            "What is bounded: the expected next-byte loss given the training contexts "
            "(bits per byte, prediction-smoothed); random guessing = 8 bits per byte.",
            "Markov code bits: the counts' Elias-gamma message, written and decoded back; "
            "beta = 0.1 fixed in advance. GPT code bits: the quantized message of the pipeline.",
            "GPT ctx=k: trained on windows of k bytes, scored with stride 1 (the same k bytes of "
            "context as the chain)."]


def plot(rows: list, path: Path) -> str:
    """Bound and train loss against k, Markov vs GPT; returns the file name."""
    with figure(path, (5.5, 3.6)) as (fig, ax):
        for prefix, color in (("Markov", "tab:blue"), ("GPT", "tab:orange")):
            rs = [r for r in rows if r["model"].startswith(prefix)]
            if not rs:
                continue
            ks = [r["k"] for r in rs]
            ax.plot(ks, [r["bound bits/byte"] for r in rs], "o-", color=color,
                    label=f"{prefix}: bound")
            ax.plot(ks, [r["train bits/byte"] for r in rs], "s--", color=color,
                    label=f"{prefix}: train loss")
        best = min(rows, key=lambda r: r["bound bits/byte"]) if rows else None
        mark_references(ax, random_guess=8.0, guess_label="random guess log2 256",
                        chosen=best and (best["k"], best["bound bits/byte"]),
                        chosen_label=best and f"lowest bound ({best['model']})")
        ax.set_xlabel("context k (bytes)")
        ax.set_ylabel("bits per byte")
        ax.legend(fontsize=7)
    return path.name
