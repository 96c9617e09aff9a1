"""What the compression-family experiments share (`compression`, `doc-vs-token`, `quantization`,
`sampling`, `scaling`): the scales and variants fixed before any data is seen, the shared data
directory (Shakespeare bytes, first N training scenes), and each variant's pipeline run,
held-out estimate and sampled certificates, cached under WORK so that every experiment of the
family reuses them.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from tokenbound.experiments import steps

DELTA = 0.05
WORK = "runs/experiments"  # shared data + model runs of this family (quick/ and full/ inside)
PAPER_SAMPLES = 10_000     # n of the paper column's sample (fixed before training)
SCALES = {  # fixed before any data is seen
    "quick": {"docs": 6, "context_len": 128, "n_layer": 2, "n_head": 4, "d_model": 64,
              "steps": 100, "batch": 16, "subspace_dim": 4096, "eval_batch": 32,
              "heldout_samples": 300},
    "full": {"docs": 20, "context_len": 256, "n_layer": 4, "n_head": 4, "d_model": 128,
             "steps": 200, "batch": 32, "subspace_dim": 16384, "eval_batch": 16,
             "heldout_samples": 1000},
}
# variant -> (linear kind of attn/mlp, uses the subspace, peak learning rate), fixed in advance:
# 3e-3 for full-rank parametrizations, 1e-2 for LoRA, 0.05 in a random subspace (the demo's).
VARIANTS = {
    "dense + PTQ": ("dense", False, 3e-3),
    "LoRA": ("lora", False, 1e-2),
    "Kronecker": ("kronecker", False, 3e-3),
    "Monarch": ("monarch", False, 3e-3),
    "SubLoRA": ("lora", True, 0.05),
    "Kronecker + subspace": ("kronecker", True, 0.05),
    "dense + subspace": ("dense", True, 0.05),
}


def add_arguments(parser, *, variant: str | None = None, variants: bool = False) -> None:
    """The flags the family's experiments share: `--variants` (a subset, default all) when
    `variants`, `--variant` (one, default "dense + subspace"; `variant` says what it is used
    for) when given, and `--work` (the shared directory of data and model runs)."""
    if variants:
        parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), metavar="VARIANT",
                            help="subset of: " + ", ".join(VARIANTS) + " (default: all)")
    if variant is not None:
        parser.add_argument("--variant", default="dense + subspace", choices=list(VARIANTS),
                            metavar="VARIANT", help=f"which compression variant {variant}"
                            "(default: dense + subspace)")
    parser.add_argument("--work", default=WORK, help="shared directory of the data and model "
                        f"runs of the compression-family experiments, reused by each (default "
                        f"{WORK})")


def get_scale(quick: bool, override: dict | None = None) -> dict:
    """The quick or full scale, with `override`'s entries replacing its own."""
    return {**SCALES["quick" if quick else "full"], **(override or {})}


def work_dir(work: str, quick: bool) -> Path:
    """WORK/quick or WORK/full (absolute): where the variants' runs are cached."""
    return Path(work).resolve() / ("quick" if quick else "full")


def shared_data(work: str, scale: dict, progress: bool = False) -> Path:
    """WORK/data-N: Shakespeare bytes, first N training scenes (N = scale['docs'])."""
    d = Path(work).resolve() / f"data-{scale['docs']}"
    steps.prepare("shakespeare", "bytes", d, max_train_docs=scale["docs"], progress=progress)
    return d


def model_config(scale: dict, kind: str = "dense", subspace: bool = False, **over) -> dict:
    """GPTConfig fields of a variant at this scale (head dense, tied embeddings)."""
    cfg = {"vocab_size": 256, "context_len": scale["context_len"], "n_layer": scale["n_layer"],
           "n_head": scale["n_head"], "d_model": scale["d_model"],
           "linear": {"attn": kind, "mlp": kind, "head": "dense"}, "seed": 0}
    if subspace:
        cfg["subspace_dim"] = scale["subspace_dim"]
    return {**cfg, **over}


def train_config(scale: dict, lr: float) -> dict:
    return {"steps": scale["steps"], "batch_size": scale["batch"], "lr": lr, "warmup_frac": 0.05,
            "weight_decay": 0.0, "eval_interval": 0, "eval_batches": 5, "ckpt_interval": 50,
            "seed": 0, "device": "cpu"}


def run_model(run_dir: Path, data_dir: Path, scale: dict, model: dict, train: dict, *,
              progress: bool = False, levels: int = 17) -> dict:
    """The pipeline (train, compress, exact evaluation of train and held-out, certify) in
    `run_dir`, with `run_dir/data` a link to the shared data; returns report.json (cached)."""
    from tokenbound.experiments.pipeline import Recipe, run

    run_dir.mkdir(parents=True, exist_ok=True)
    link = run_dir / "data"
    if not link.exists():
        link.symlink_to(data_dir)
    L = scale["context_len"]
    recipe = Recipe(
        name=run_dir.name, out=str(run_dir), delta=DELTA,
        data={"corpus": "shakespeare", "tokenizer": "bytes", "max_train_docs": scale["docs"]},
        model=model, train=train,
        compress={"levels": levels, "method": "kmeans", "grouping": "model", "qat_steps": 0},
        evaluate={"context_len": L, "stride": L, "mode": "exact",
                  "batch_size": scale["eval_batch"], "dtype": "fp32"}, heldout=False)
    rep = run(recipe, progress=progress)
    rep["heldout_bits_per_token"] = heldout_estimate(run_dir, scale, progress)["mean_bits"]
    return rep


def heldout_estimate(run_dir: Path, scale: dict, progress: bool = False) -> dict:
    """Held-out bits/byte of RUN's message, estimated on `heldout_samples` windows drawn
    uniformly (seed 0, stride = L; the mean over the distinct drawn windows' tokens). A
    reference, not a bound; cached in RUN/heldout_estimate.json."""
    cache = run_dir / "heldout_estimate.json"
    got = steps.read_json(cache)
    if got is not None:
        return got
    L, n = scale["context_len"], scale["heldout_samples"]
    cfg = {"context_len": L, "stride": L, "mode": "sampled", "n_samples": n, "seed": 0,
           "batch_size": scale["eval_batch"], "dtype": "fp32"}
    ev = steps.evaluate(run_dir / "model.tbm", run_dir / "data" / "heldout",
                        run_dir / "eval_heldout_sampled", cfg, progress=progress)
    got = {"mean_bits": ev.totals["mean_bits"], "n_tokens": ev.totals["n_tokens"],
           "n_draws": n}
    steps.atomic_json(cache, got)
    return got


def sampled_certificate(run_dir: Path, scale: dict, *, stride: int, n: int = PAPER_SAMPLES,
                        name: str | None = None, progress: bool = False) -> dict:
    """Sampled evaluation of RUN's message (n draws, seed 0) + `steps.certify`; cached.

    Returns {"cert": bound.json dict (token + paper), "eval": `results.Evaluated` as a dict
    (manifest, totals, timing, sample), "wall_s": first-run time}.
    """
    name = name or f"eval_sampled_s{stride}_n{n}"
    cache = run_dir / f"{name}.json"
    got = steps.read_json(cache)
    if got is not None:
        return got
    comp = steps.read_json(run_dir / "compress.json")
    cfg = {"context_len": scale["context_len"], "stride": stride, "mode": "sampled",
           "n_samples": n, "seed": 0, "batch_size": scale["eval_batch"], "dtype": "fp32"}
    t = time.perf_counter()
    ev = steps.evaluate(run_dir / "model.tbm", run_dir / "data" / "train", run_dir / name, cfg,
                        progress=progress)
    cert = steps.certify(run_dir / name, comp["total_bits"], delta=DELTA)
    got = {"cert": cert.to_dict(), "eval": dataclasses.asdict(ev),
           "wall_s": round(time.perf_counter() - t, 2)}
    steps.atomic_json(cache, got)
    return got


def sample_from_exact(run_dir: Path, scale: dict, n: int = PAPER_SAMPLES) -> dict:
    """The paper column and a sampled certificate from the exact evaluation, without rescoring.

    The n windows (stride L, seed 0) that a sampled evaluation would draw are looked up in the
    exact per-window statistics of RUN/eval_train: same windows, same model, same numerics
    (scoring is independent of batch composition), so the sample equals the one a separate
    sampled evaluation would produce. Returns {"paper": ..., "sampled": ...} (bound dicts).
    """
    from tokenbound import bounds as B
    from tokenbound.data import open_stream
    from tokenbound.evaluation import draw_windows, load_result

    stats, _ = load_result(str(run_dir / "eval_train"))
    off = open_stream(str(run_dir / "data" / "train")).doc_offsets  # (n_docs + 1,)
    L = scale["context_len"]
    stats.draws = draw_windows(n, off, L, L, 0)  # (n,) window of each drawn position
    arr = stats.sample_arrays()
    comp = steps.read_json(run_dir / "compress.json")
    V, m = int(stats.meta["vocab_size"]), int(stats.totals()["n_tokens"])
    common = dict(vocab_size=V, code_bits=int(comp["total_bits"]), extra_bits=0, delta=DELTA)
    cert = B.certify_sampled(arr["Y"], arr["W"], m=m, alphas=tuple(stats.meta["alphas"]),
                             centers=tuple(stats.meta["centers"]), **common)  # as evaluated
    return {"paper": steps.paper_from_sample(arr, stats, m, common),
            "sampled": cert.best.to_dict(), "n": n}


def variant_run(name: str, work: str, quick: bool, scale: dict, progress: bool) -> dict:
    """Report of variant `name` (trained and certified once, then cached in WORK)."""
    kind, sub, lr = VARIANTS[name]
    data = shared_data(work, scale, progress)
    slug = name.replace(" + ", "+").replace(" ", "-").lower()
    return run_model(work_dir(work, quick) / "compression" / slug, data, scale,
                     model_config(scale, kind, sub), train_config(scale, lr), progress=progress)
