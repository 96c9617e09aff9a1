"""Experiment `memorization`: structured vs unstructured sequences under quantization.

Paper (Lotfi et al. 2024, memorization section): a model trained on structured (compressible)
sequences and on unstructured (random) ones; as the model is compressed harder, its recall of
the unstructured sequences collapses first, while structured ones survive. Here:

* structured documents: `f(0), f(1), ..., f(L-1)` (mod 10) for a random expression tree `f` over
  `n`, the constants 1..9 and `+, -, *` (depth <= 3); one tree per document;
* unstructured documents: the same number and length of values drawn i.i.d. from the pooled
  values of the structured documents (same marginal distribution, no structure);
* vocabulary 12: digits 0..9, start token 10 (context only), end-of-text 11 (scored);
* one dense GPT trained on each set (same architecture, steps, seeds), then post-training
  quantization (k-means, one codebook) at 64, 32, 16, 8, 4, 2 levels through the pipeline's
  compress step; top-1 accuracy = 1 - top-1 error of the exact evaluation of every training
  token (the end-of-text token included; it is easy for both).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from tokenbound.errors import UserError
from tokenbound.experiments import steps
from tokenbound.experiments.report import figure

log = logging.getLogger(__name__)

HELP = "structured vs random integer sequences: recall under harder quantization"
V, START, EOT = 12, 10, 11
LEVELS = (64, 32, 16, 8, 4, 2)
SCALES = {  # fixed in advance
    "quick": {"docs": 100, "length": 30, "steps": 400, "batch": 32},
    "full": {"docs": 200, "length": 30, "steps": 2000, "batch": 32},
}
GPT = {"vocab_size": V, "n_layer": 2, "n_head": 4, "d_model": 64, "seed": 0}
COLUMNS = ["levels", "code bits (structured)", "accuracy structured",
           "code bits (random)", "accuracy random"]


def random_tree(rng: np.random.Generator, depth: int = 3):
    """A nested tuple ("+"|"-"|"*", left, right), "n", or an int constant 1..9."""
    if depth == 0 or rng.random() < 0.3:
        return "n" if rng.random() < 0.6 else int(rng.integers(1, 10))
    return (str(rng.choice(["+", "-", "*"])), random_tree(rng, depth - 1),
            random_tree(rng, depth - 1))


def eval_tree(tree, n: np.ndarray) -> np.ndarray:
    """Values of the tree at n (int64 array), mod 10."""
    if isinstance(tree, str):
        return n % 10
    if isinstance(tree, int):
        return np.full_like(n, tree % 10)
    op, a, b = tree
    x, y = eval_tree(a, n), eval_tree(b, n)
    return {"+": x + y, "-": x - y, "*": x * y}[op] % 10


def make_documents(n_docs: int, length: int, seed: int = 0) -> tuple[list, list]:
    """(structured, unstructured) lists of documents (int arrays ending with EOT)."""
    rng = np.random.default_rng(seed)
    n = np.arange(length, dtype=np.int64)
    structured = [eval_tree(random_tree(rng), n) for _ in range(n_docs)]
    pool = np.concatenate(structured)
    unstructured = [rng.choice(pool, size=length) for _ in range(n_docs)]
    close = np.array([EOT], dtype=np.int64)
    return ([np.concatenate([d, close]) for d in structured],
            [np.concatenate([d, close]) for d in unstructured])


def write_data(docs: list, path: Path, kind: str) -> None:
    from tokenbound.data import open_stream, write_stream

    if (path / "train").is_dir():
        open_stream(str(path / "train"))
        return
    write_stream(path / "train", docs, {"tokenizer": "memorization-digits", "vocab_size": V,
                                        "eot_id": EOT, "start_id": START, "kind": kind})


def accuracy_fp32(run: Path, data: Path, ctx: int) -> float:
    """Top-1 accuracy of the unquantized final model, every token scored exactly."""
    from tokenbound.bounds.grids import ALPHA_GRID, BETTING_LAMBDAS, CENTERS, TOPK
    from tokenbound.data import open_stream
    from tokenbound.evaluation import make_windows, score_windows
    from tokenbound.evaluation.stats import stats_meta
    from tokenbound.sources import load_run_fn

    model = load_run_fn(run).fn
    s = open_stream(str(data / "train"))
    w = make_windows(s.doc_offsets, ctx, ctx)
    ws = score_windows(model, np.asarray(s.tokens), s.doc_offsets, s.start_id, w,
                       np.arange(len(w.n_scored)),
                       stats_meta(V, ALPHA_GRID, TOPK, CENTERS, BETTING_LAMBDAS), batch_size=64)
    return float(1.0 - ws.totals()["topk_mean_err"][TOPK.index(1)])


def one_kind(docs: list, kind: str, out: Path, scale: dict, progress: bool) -> dict:
    """Train on one kind, then quantize at each level: {levels: (code bits, accuracy)}."""
    from tokenbound.bounds.grids import TOPK
    from tokenbound.evaluation import load_result
    from tokenbound.compression import QuantConfig

    base = out / kind
    write_data(docs, base / "data", kind)
    ctx = scale["length"] + 1
    steps.train(base / "data", base / "train", {**GPT, "context_len": ctx},
                {"steps": scale["steps"], "batch_size": scale["batch"], "lr": 3e-3,
                 "warmup_frac": 0.05, "weight_decay": 0.0, "eval_interval": 0,
                 "ckpt_interval": 500, "seed": 0, "device": "cpu"}, progress=progress)
    res = {"fp32": (None, accuracy_fp32(base / "train", base / "data", ctx))}
    for L in LEVELS:
        msg, rep_path = base / f"q{L}.tbm", base / f"q{L}.json"
        comp = steps.read_compressed(rep_path)
        if not steps.message_is_valid(msg, comp):
            comp = steps.compress_run(base / "train", msg,
                                      QuantConfig(levels=L, method="kmeans"),
                                      steps.QATConfig(eval_batches=0))
            steps.atomic_json(rep_path, comp.to_dict())
        ev_dir = base / f"eval-q{L}"
        steps.evaluate(str(msg), base / "data" / "train", ev_dir,
                       {"context_len": ctx, "mode": "exact", "batch_size": 64})
        stats, _ = load_result(str(ev_dir))
        res[L] = (comp.total_bits, float(1.0 - stats.totals()["topk_mean_err"][TOPK.index(1)]))
    return res


def add_arguments(parser) -> None:
    parser.add_argument("--steps", type=int, help="training steps (default 400 quick, 2000 full)")


def run(out_dir: str, quick: bool, progress: bool,
        scale_override: dict | None = None, **kw) -> dict:
    scale = {**SCALES["quick" if quick else "full"], **(scale_override or {})}
    if kw.get("steps") is not None:
        if int(kw["steps"]) < 1:
            raise UserError(f"--steps {kw['steps']}: training needs at least 1 step "
                            f"(default {scale['steps']})")
        scale["steps"] = int(kw["steps"])
    out = Path(out_dir)
    structured, unstructured = make_documents(scale["docs"], scale["length"], seed=0)
    s = one_kind(structured, "structured", out, scale, progress)
    u = one_kind(unstructured, "random", out, scale, progress)
    rows = [{"levels": str(L), "code bits (structured)": s[L][0], "accuracy structured": s[L][1],
             "code bits (random)": u[L][0], "accuracy random": u[L][1]}
            for L in ("fp32",) + LEVELS]
    return {"title": "Memorization: structured vs random sequences under quantization",
            "columns": COLUMNS, "rows": rows, "scale": {**scale, "gpt": GPT,
                                                        "levels": list(LEVELS)},
            "plots": [plot(rows, out / "memorization.png")],
            "notes": [f"{scale['docs']} documents of {scale['length']} digits + end-of-text "
                      "per kind; accuracy = top-1 accuracy on every training token (teacher "
                      "forcing, exact evaluation).",
                      f"Chance level without memorization (always the most common digit, the "
                      f"end-of-text token scored right): {chance(unstructured):.4f}.",
                      "fp32: the trained model before quantization (no message)."]}


def chance(docs: list) -> float:
    """Accuracy of predicting the most common digit everywhere and EOT at the end."""
    vals = np.concatenate([d[:-1] for d in docs])
    top = np.bincount(vals, minlength=10).max()
    return float((top + len(docs)) / (vals.size + len(docs)))


def plot(rows: list, path: Path) -> str:
    rs = [r for r in rows if r["levels"] != "fp32"]
    x = [int(r["levels"]) for r in rs]
    with figure(path, (5.5, 3.6), yscale="linear") as (fig, ax):
        ax.plot(x, [r["accuracy structured"] for r in rs], "o-", label="structured")
        ax.plot(x, [r["accuracy random"] for r in rs], "s-", label="random (i.i.d.)")
        ax.set_xscale("log", base=2)
        ax.invert_xaxis()
        ax.set_xlabel("quantization levels (harder compression to the right)")
        ax.set_ylabel("top-1 accuracy on training tokens")
        ax.set_ylim(0, 1.02)
        ax.legend()
    return path.name
