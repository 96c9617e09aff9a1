"""`tokenbound run RECIPE.yaml`: prepare -> train -> compress -> evaluate -> bound -> report.

A recipe is a YAML mapping (see `src/tokenbound/recipes/*.yaml`):

    name: demo                 # free text
    out: runs/demo             # all outputs go here (the CLI's --out overrides it)
    delta: 0.05                # total failure probability of the certificate
    data: {corpus: shakespeare, tokenizer: bytes, max_train_docs: null}
    model: {...}               # GPTConfig fields: a model trained here ...
    train: {...}               # ... with these TrainConfig fields
    hf: path/to/hf_model_dir   # ... or instead of model/train: a local Hugging Face causal LM
    compress: {levels: 17, method: kmeans, grouping: model, qat_steps: 0}
    evaluate: {context_len: 256, stride: 256, mode: exact, batch_size: 16, dtype: fp32}
    heldout: true              # also score DATA/heldout (a reference, not part of the bound)
    extra_bits: 0              # bits paid for choices made after seeing the training data
                               # (e.g. 2 when the compress settings were picked among 4 tried)

Every step is skipped when its output exists and is valid, so an interrupted run resumes where
it stopped (training and evaluation also resume inside the step). Everything in the recipe is
fixed before the data is seen; nothing is selected on the training scores except the grids that
the bounds pay for and what `extra_bits` pays for (K settings tried on this data and the best
kept: extra_bits = ceil(log2 K), added to the message length in every bound).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from tokenbound.errors import UserError
from tokenbound.experiments import steps
from tokenbound.experiments.report import provenance, write_report

log = logging.getLogger(__name__)

SECTIONS = {"name", "out", "delta", "data", "model", "train", "hf", "compress", "evaluate",
            "heldout", "description", "extra_bits"}
# `compress:` keys read by `run` itself (the others are QuantConfig fields).
COMPRESS_RUN_KEYS = ("qat_steps", "qat_lr", "qat_optimizer", "batch_size", "eval_batches")


@dataclass
class Recipe:
    """A whole certificate run, fixed in advance (see the module docstring for the fields)."""

    name: str
    out: str
    data: dict
    compress: dict
    evaluate: dict
    model: dict | None = None
    train: dict = field(default_factory=dict)
    hf: str | None = None
    delta: float = 0.05
    heldout: bool = True
    description: str = ""
    extra_bits: int = 0

    def __post_init__(self):
        if (self.model is None) == (self.hf is None):
            raise UserError("a recipe needs exactly one of `model:` (train a GPT here) or "
                            "`hf: DIR` (a local Hugging Face causal LM)")
        if not 0 < float(self.delta) < 1:
            raise UserError(f"recipe delta must lie in (0, 1), got {self.delta}")
        if (not isinstance(self.extra_bits, int) or isinstance(self.extra_bits, bool)
                or self.extra_bits < 0):
            raise UserError(f"recipe extra_bits must be a whole number of bits >= 0, got "
                            f"{self.extra_bits!r}")
        for key in ("corpus",):
            if key not in self.data:
                raise UserError(f"recipe `data:` needs `{key}:` (e.g. corpus: shakespeare)")
        if "levels" not in self.compress:
            raise UserError("recipe `compress:` needs `levels:` (codebook size, e.g. 17)")
        from dataclasses import fields

        from tokenbound.compression import QuantConfig

        known = {f.name for f in fields(QuantConfig)} | set(COMPRESS_RUN_KEYS)
        unknown = sorted(set(self.compress) - known)
        if unknown:  # a typo (e.g. qat_step) would otherwise be ignored silently
            raise UserError(f"recipe `compress:` has unknown key(s) {unknown}; allowed: "
                            f"{sorted(known)}")
        from tokenbound.compression.qat import QAT_OPTIMIZERS

        if self.compress.get("qat_optimizer", "sgd") not in QAT_OPTIMIZERS:
            raise UserError(f"recipe `compress: qat_optimizer: {self.compress['qat_optimizer']!r}`"
                            f": use {' or '.join(QAT_OPTIMIZERS)}")
        if "context_len" not in self.evaluate:
            raise UserError("recipe `evaluate:` needs `context_len:` (e.g. 256)")

    @staticmethod
    def load(path: str | Path, out: str | None = None) -> "Recipe":
        import yaml

        p = Path(path)
        if not p.is_file():
            raise UserError(f"recipe {path}: no such file")
        try:
            raw = yaml.safe_load(p.read_text())
        except yaml.YAMLError as exc:
            raise UserError(f"recipe {path}: not valid YAML ({exc})") from None
        if not isinstance(raw, dict):
            raise UserError(f"recipe {path}: expected a mapping of sections")
        unknown = set(raw) - SECTIONS
        if unknown:
            raise UserError(f"recipe {path}: unknown section(s) {sorted(unknown)}; "
                            f"allowed: {sorted(SECTIONS)}")
        raw.setdefault("name", p.stem)
        if out is not None:
            raw["out"] = out
        raw.setdefault("out", str(Path("runs") / raw["name"]))
        return Recipe(**raw)

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("name", "out", "delta", "data", "model", "train",
                                              "hf", "compress", "evaluate", "heldout",
                                              "extra_bits")}


def run(recipe: Recipe, *, progress: bool = False, say=lambda msg: None) -> dict:
    """Run every step of `recipe` (skipping finished ones) and write the report; returns it."""
    from tokenbound.compression import QuantConfig

    out = Path(recipe.out).resolve()  # absolute: run dirs record their data path
    out.mkdir(parents=True, exist_ok=True)
    steps.atomic_json(out / "recipe.json", recipe.to_dict())
    t0, timings = time.perf_counter(), {}

    def timed(name, fn):
        t = time.perf_counter()
        say(f"[{name}]")
        res = fn()
        timings[name] = round(time.perf_counter() - t, 2)
        return res

    data_dir = out / "data"
    d = recipe.data
    prep = timed("prepare", lambda: steps.prepare(
        d["corpus"], d.get("tokenizer", "bytes"), data_dir,
        max_train_docs=d.get("max_train_docs"), progress=progress))
    message = out / "model.tbm"
    comp = steps.read_json(out / "compress.json")
    train_info = None
    if recipe.model is not None:
        train_info = timed("train", lambda: steps.train(data_dir, out / "train", recipe.model,
                                                        recipe.train, progress=progress))
    if comp is not None and comp.get("recipe_compress") != recipe.compress:
        raise UserError(f"{out} holds a message made with other compress settings "
                        f"({comp.get('recipe_compress')}); use a new --out for this recipe")
    if not steps.message_is_valid(message, comp):
        c = recipe.compress
        qcfg = QuantConfig.from_recipe(c)
        if recipe.model is not None:
            comp = timed("compress", lambda: steps.compress_run(
                out / "train", message, qcfg, qat_steps=int(c.get("qat_steps", 0)),
                qat_lr=float(c.get("qat_lr", 5e-5)), batch_size=int(c.get("batch_size", 8)),
                eval_batches=int(c.get("eval_batches", 10)),
                qat_optimizer=str(c.get("qat_optimizer", "sgd"))))
        else:
            comp = timed("compress", lambda: steps.compress_hf(recipe.hf, message, qcfg))
        comp["recipe_compress"] = dict(recipe.compress)
        steps.atomic_json(out / "compress.json", comp)
    ev = timed("evaluate", lambda: steps.evaluate(message, data_dir / "train", out / "eval_train",
                                                  recipe.evaluate, progress=progress))
    held = None
    if recipe.heldout and (data_dir / "heldout").is_dir():
        held = timed("evaluate heldout", lambda: steps.evaluate(
            message, data_dir / "heldout", out / "eval_heldout",
            {**recipe.evaluate, "mode": "exact", "n_samples": None}, progress=progress))
    cert = timed("bound", lambda: steps.certify(out / "eval_train", comp["total_bits"],
                                                delta=recipe.delta,
                                                extra_bits=recipe.extra_bits))
    steps.atomic_json(out / "bound.json", cert)
    timings["total"] = round(time.perf_counter() - t0, 2)
    rep = build_report(recipe, prep, train_info, comp, ev, held, cert, timings)
    write_report(rep, out)
    return rep


def build_report(recipe: Recipe, prep: dict, train_info: dict | None, comp: dict, ev: dict,
                 held: dict | None, cert: dict, timings: dict) -> dict:
    """The report dictionary (report.json): every number copied from the steps' outputs."""
    from tokenbound.data import open_stream

    stream = open_stream(str(Path(recipe.out).resolve() / "data" / "train"))
    V = cert["vocab_size"]
    tok = stream.meta.get("tokenizer")
    unit = "bits per byte" if tok == "bytes" else "bits per token"
    best = cert["token"]["best"]
    fams = _families(cert)
    rep = {
        "name": recipe.name, "unit": unit,
        "bound_bits_per_token": best["value"], "certified_family": best["family"],
        "families": fams,
        "what_is_bounded": _statement(stream, unit),
        "empirical_bits_per_token": cert.get("mean_bits") if cert.get("mean_bits") is not None
        else ev.get("totals", {}).get("mean_bits"),
        "heldout_bits_per_token": None if held is None else held.get("totals", {}).get("mean_bits"),
        "random_guess_bits_per_token": math.log2(V),
        "vacuous": best["vacuous"], "delta": recipe.delta,
        "code_bits": comp["total_bits"], "prefix_free_bits": comp["prefix_free_bits"],
        "extra_bits": recipe.extra_bits,
        "bits_by_part": comp["bits_by_part"], "trained_parameters": comp["trained_parameters"],
        "quantization": {k: comp.get(k) for k in ("quant", "loss_before", "loss_after",
                                                  "loss_increase", "qat_steps")},
        "n_tokens": cert["m"], "n_scored": ev["totals"]["n_tokens"] if "totals" in ev else None,
        "mode": cert["mode"],
        "bound_vs_alpha": _curve(cert),
        "topk": {k: {"bound": t["best"]["value"], "empirical": t["best"]["empirical"],
                     "family": t["best"]["family"], "random_guess": t["best"]["random_guess"]}
                 for k, t in cert.get("topk", {}).items()} if cert["mode"] == "exact" else {},
        "document_level": cert["token"].get("document"),
        "train": train_info, "timings_s": timings,
        "notes": _notes(stream, cert),
        "bound": cert,
        "provenance": provenance(
            recipe=recipe.to_dict(), data_sha256=stream.sha256, data_meta_request=stream.meta.get(
                "request"), message_sha256=comp["sha256"],
            eval_model_sha256=ev["manifest"].get("model", {}).get("sha256")
            if isinstance(ev["manifest"].get("model"), dict) else None,
            seeds={"model": (recipe.model or {}).get("seed", 0),
                   "data_order": recipe.train.get("seed", 0),
                   "eval_sampling": recipe.evaluate.get("seed", 0),
                   "quant_loss_estimate": steps.LOSS_SEED, "qat": steps.QAT_SEED}),
    }
    for k in ("1", "10", "100"):
        if k in rep["topk"]:
            rep[f"top{k}_error_bound"] = rep["topk"][k]["bound"]
    return rep


def _families(cert: dict) -> dict:
    """Best candidate of each family (all were paid for in the union bound) + paper mode."""
    fams: dict = {}
    for c in cert["token"]["candidates"]:
        f = c["family"]
        if f not in fams or c["value"] < fams[f]["bound"]:
            fams[f] = {"bound": c["value"], "empirical": c["empirical"],
                       "complexity_term": c["complexity_term"], "sampling_term": c["sampling_term"],
                       "alpha": c["alpha"], "center": c["center"], "lam": c["lam"],
                       "k_nats": c["k_nats"], "certificate": c["certificate"]}
    if cert.get("paper"):
        p = cert["paper"]
        fams["paper (not a certificate)"] = {
            "bound": p["value"], "empirical": p["empirical"],
            "complexity_term": p["complexity_term"], "sampling_term": p["sampling_term"],
            "alpha": p["alpha"], "center": None, "lam": None, "k_nats": p["k_nats"],
            "certificate": False}
    return fams


def _curve(cert: dict) -> dict:
    """Per family, the best bound at each alpha (for the bound-versus-alpha plot)."""
    curve: dict = {}
    for c in cert["token"]["candidates"]:
        pts = curve.setdefault(c["family"], {})
        a = c["alpha"]
        if a not in pts or c["value"] < pts[a]:
            pts[a] = c["value"]
    return {f: [{"alpha": a, "bound": v} for a, v in sorted(p.items())] for f, p in curve.items()}


def _statement(stream, unit: str) -> str:
    return (f"What is bounded: the model's expected next-token loss ({unit}, prediction-smoothed), "
            "averaged over the training positions, where the expectation is over the true "
            "distribution of each next token **given its training context**. It is not the "
            "loss on new documents.")


def _notes(stream, cert: dict) -> list[str]:
    notes = []
    if not stream.meta.get("eot_delimited", False):
        notes.append("Documents are delimited without an end-of-text token: the risk is "
                     "conditional on the document layout (where each document starts).")
    if cert["mode"] == "exact":
        notes.append("Exact mode: every training token was scored, so there is no sampling term.")
        notes.append("Top-k error bounds and the document-level bound are separate certificates, "
                     "each at the same delta.")
    else:
        notes.append(f"Sampled mode: n = {cert['n']:,} positions drawn uniformly with replacement; "
                     "the sampling terms pay for every candidate compared on the sample.")
    doc = cert["token"].get("document")
    if doc:
        notes.append(f"Document-level bound (documents assumed i.i.d., N = {doc['m']:,}): "
                     f"{doc['value']:.4f} (alpha = {doc['alpha']}).")
    return notes
