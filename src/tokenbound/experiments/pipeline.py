"""`tokenbound run RECIPE.yaml`: prepare -> train -> compress -> evaluate -> bound -> report.

A recipe is a YAML mapping (see `src/tokenbound/recipes/*.yaml`):

    name: demo                 # free text
    out: runs/demo             # all outputs go here (the CLI's --out overrides it)
    delta: 0.05                # total failure probability of the certificate
    data: {corpus: shakespeare, tokenizer: bytes, max_train_docs: null}
                               # (also heldout_fraction, doc_separator, glob, text_column,
                               # as for `tokenbound prepare`)
    model: {...}               # GPTConfig fields: a model trained here ...
    train: {...}               # ... with these TrainConfig fields
    hf: path/to/hf_model_dir   # ... or instead of model/train: a local Hugging Face causal LM
    compress: {levels: 17, method: kmeans, grouping: model, qat_steps: 0}
    evaluate: {context_len: 256, stride: 256, mode: exact, batch_size: 16, dtype: fp32}
    heldout: true              # also score DATA/heldout (a reference, not part of the bound)
    extra_bits: 0              # bits paid for choices made after seeing the training data
                               # (e.g. 2 when the compress settings were picked among 4 tried)

Every section is checked when the recipe is read (`recipes.check_recipe`), before any step
runs. Every step is skipped when its output exists and is valid, so an interrupted run resumes
where it stopped (training and evaluation also resume inside the step). Everything in the recipe is
fixed before the data is seen; nothing is selected on the training scores except the grids that
the bounds pay for and what `extra_bits` pays for (K settings tried on this data and the best
kept: extra_bits = ceil(log2 K), added to the message length in every bound).
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

from tokenbound.errors import OutDirMismatch, UserError
from tokenbound.experiments import recipes, steps
from tokenbound.experiments.recipes import Recipe
from tokenbound.experiments.report import provenance, write_report

log = logging.getLogger(__name__)


def run(recipe: Recipe, *, progress: bool = False, say=lambda msg: None) -> dict:
    """Run every step of `recipe` (skipping finished ones) and write the report; returns it.

    `timings_s` holds each step's seconds in the run that did its work (OUT/timings.json keeps
    them across reruns; an interrupted step's time is added to the run that finishes it),
    `total` their sum and `this_run` the wall time of this call; `steps_reused` names the steps
    whose outputs an earlier run made.
    """
    from tokenbound.evaluation.engine import is_finished
    from tokenbound.training.run import is_complete

    out = Path(recipe.out).resolve()  # absolute: run dirs record their data path
    out.mkdir(parents=True, exist_ok=True)
    _check_compress_json(recipe, out)  # before training: a changed setting fails at once
    steps.refresh_json(out / "recipe.json", recipe.to_dict())
    clock = _Clock(out, say)
    data_dir = out / "data"
    d = recipe.data
    prep = clock.step("prepare", lambda: steps.prepare(
        d["corpus"], d.get("tokenizer", "bytes"), data_dir, progress=progress,
        **{k: v for k, v in d.items() if k not in ("corpus", "tokenizer")}),
        reused=lambda res: all(s["skipped"] for s in res.values()))
    train_info = None
    if recipe.model is not None:
        train_info = clock.step("train", lambda: _train(recipe, data_dir, out, progress),
                                reused=is_complete(out / "train"),
                                own=lambda res: res.get("wall_seconds"))
    comp = _compress(recipe, out, clock)
    message = out / "model.tbm"
    ev = clock.step("evaluate", lambda: _evaluate(message, data_dir / "train", out / "eval_train",
                                                  recipe.evaluate, progress),
                    reused=is_finished(out / "eval_train"), own=_eval_seconds)
    held, held_status = None, _heldout_status(recipe, data_dir)
    if held_status is None:
        held = clock.step("evaluate heldout", lambda: _evaluate(
            message, data_dir / "heldout", out / "eval_heldout",
            recipes.heldout_eval(recipe.evaluate), progress),
            reused=is_finished(out / "eval_heldout"), own=_eval_seconds)
    elif recipe.heldout:
        say(f"[evaluate heldout] held-out loss {held_status}")
    cert = clock.step("bound", lambda: steps.certify(out / "eval_train", comp["total_bits"],
                                                     delta=recipe.delta,
                                                     extra_bits=recipe.extra_bits))
    steps.refresh_json(out / "bound.json", cert)
    rep = build_report(recipe, prep, train_info, comp, ev, held, cert, clock.finish())
    rep["heldout_status"] = held_status or "measured"
    if held_status and recipe.heldout:
        rep["notes"].append(f"Held-out loss {held_status}" + (
            " (no document fell in the held-out split; a single text file is one document "
            "unless `doc_separator:` under `data:` splits it)." if "empty" in held_status
            else "."))
    rep["steps_reused"] = clock.reused
    write_report(rep, out)
    return rep


class _Clock:
    """Seconds per step, kept in OUT/timings.json across reruns (see `run`)."""

    def __init__(self, out: Path, say):
        self.path, self.say, self.t0 = out / "timings.json", say, time.perf_counter()
        old = steps.read_json(self.path) or {}
        self.done, self.partial = old.get("done", {}), old.get("partial", {})
        self.timings: dict = {}
        self.reused: list[str] = []

    def step(self, name: str, fn, *, reused=False, own=None):
        """Run step `name`; `reused` (a bool, or a function of the result) says that an earlier
        run made its output; `own(result)` reads the step's own record of its seconds."""
        self.say(f"[{name}]")
        t = time.perf_counter()
        try:
            res = fn()
        except BaseException:
            self.partial[name] = self.partial.get(name, 0.0) + time.perf_counter() - t
            self._save()
            raise
        spent = time.perf_counter() - t
        if reused(res) if callable(reused) else reused:
            self.reused.append(name)
            self.partial.pop(name, None)  # e.g. a refused attempt: no work was done
            seconds = self.done.get(name, own(res) if own is not None else None)
        else:
            seconds = self.partial.pop(name, 0.0) + spent
            if own is not None and own(res) is not None:
                seconds = max(seconds, own(res))  # e.g. training resumed by another command
            self.done[name] = round(seconds, 2)
        if seconds is not None:
            self.timings[name] = round(seconds, 2)
        self._save()
        return res

    def finish(self) -> dict:
        total = round(sum(self.timings.values()), 2)
        return {**self.timings, "total": total,
                "this_run": round(time.perf_counter() - self.t0, 2)}

    def _save(self) -> None:
        steps.refresh_json(self.path, {"done": self.done, "partial": self.partial})


def _train(recipe: Recipe, data_dir: Path, out: Path, progress: bool) -> dict:
    """The train step; a run directory trained with other settings is refused with advice
    that fits `run` (which has no --force)."""
    try:
        return steps.train(data_dir, out / "train", recipe.model, recipe.train,
                           progress=progress)
    except OutDirMismatch as exc:
        raise UserError(
            f"{out} holds a model trained with other model/train settings (differs in "
            f"{', '.join(exc.keys)}); use a new --out directory for this recipe, or delete {out}/train "
            f"and the files made from it ({', '.join(MADE_FROM_TRAIN)}) to retrain here"
        ) from None


MADE_FROM_TRAIN = ("model.tbm", "compress.json", "eval_train", "eval_heldout")


def _trained_sha256(run_dir: Path) -> str | None:
    """sha256 of the trained weights of RUN (None when there are none)."""
    from tokenbound.fileio import file_sha256
    from tokenbound.training.run import MODEL

    p = Path(run_dir) / MODEL
    return file_sha256(str(p)) if p.is_file() else None


def _compress(recipe: Recipe, out: Path, clock: _Clock) -> dict:
    """The compress step: the message OUT/model.tbm and OUT/compress.json (kept when valid
    and made from the same trained weights with the same settings)."""
    from tokenbound.compression import QuantConfig

    message, c = out / "model.tbm", recipe.compress
    comp = _check_compress_json(recipe, out)
    trained = _trained_sha256(out / "train") if recipe.model is not None else None
    if (steps.message_is_valid(message, comp)
            and comp.get("train_sha256", trained) == trained):
        return clock.step("compress", lambda: comp, reused=True,
                          own=lambda res: res.get("seconds"))
    qcfg = QuantConfig.from_recipe(c)
    if recipe.model is not None:
        comp = clock.step("compress", lambda: steps.compress_run(
            out / "train", message, qcfg, steps.QATConfig.from_recipe(c)))
        comp["train_sha256"] = trained
    else:
        comp = clock.step("compress", lambda: steps.compress_hf(recipe.hf, message, qcfg))
    comp["recipe_compress"] = dict(c)
    comp["seconds"] = clock.timings["compress"]
    steps.atomic_json(out / "compress.json", comp)
    return comp


def _check_compress_json(recipe: Recipe, out: Path) -> dict | None:
    """OUT/compress.json, refused when it was made with other `compress:` settings (compared
    after the recipe checks, so 3e-4 and 0.0003 are equal). Called before any step runs."""
    comp = steps.read_json(out / "compress.json")
    if comp is None:
        return None
    try:
        stored = recipes.check_compress(comp.get("recipe_compress"),
                                        trained=recipe.model is not None)
    except UserError:
        stored = None
    if stored != recipe.compress:
        raise UserError(f"{out} holds a message made with other compress settings "
                        f"({comp.get('recipe_compress')}); use a new --out for this recipe, or "
                        f"delete {out}/model.tbm, {out}/compress.json and {out}/eval_*")
    return comp


def _evaluate(message: Path, stream_dir: Path, eval_dir: Path, cfg: dict, progress: bool):
    """The evaluate step; a directory scored with other settings or another model is refused
    with advice that fits `run`."""
    try:
        return steps.evaluate(message, stream_dir, eval_dir, cfg, progress=progress)
    except OutDirMismatch as exc:
        stale = " and ".join(str(p) for p in sorted(eval_dir.parent.glob("eval_*")))
        raise UserError(f"{eval_dir} holds scores made with another model or other evaluate "
                        f"settings (differs in {', '.join(exc.keys)}); use a new --out directory for "
                        f"this recipe, or delete {stale} to score again") from None


def _eval_seconds(ev: dict) -> float | None:
    return (ev.get("timing") or {}).get("seconds")


def _heldout_status(recipe: Recipe, data_dir: Path) -> str | None:
    """Why the held-out loss is not measured, or None when it is."""
    from tokenbound.data import open_stream

    if not recipe.heldout:
        return "not measured: `heldout: false` in the recipe"
    if not (data_dir / "heldout").is_dir():
        return "not measured: no held-out split"
    if len(open_stream(str(data_dir / "heldout"))) == 0:
        return "not measured: empty held-out split"
    return None


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
    from tokenbound.bounds import best_per_family

    fams = {f: {"bound": c["value"], "empirical": c["empirical"],
                "complexity_term": c["complexity_term"], "sampling_term": c["sampling_term"],
                "alpha": c["alpha"], "center": c["center"], "lam": c["lam"],
                "k_nats": c["k_nats"], "certificate": c["certificate"]}
            for f, c in best_per_family(cert["token"]["candidates"]).items()}
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
    from tokenbound.bounds import best_per_family

    curve: dict = {}
    for (f, a), c in best_per_family(cert["token"]["candidates"], by_alpha=True).items():
        curve.setdefault(f, {})[a] = c["value"]
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
