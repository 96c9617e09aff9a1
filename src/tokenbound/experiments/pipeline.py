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
    finetune: {lora_rank: 4, subspace_dim: 20000, seed: 0, train: {...}}
                               # with `data: prior_split: F, split_seed: S`: model/train train
                               # a base on DATA/prior, adapters on it are trained on DATA/train
                               # and certified on DATA/bound only (METHOD 2.9)
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

import dataclasses
import logging
import time
from pathlib import Path

from tokenbound.errors import OutDirMismatch, UserError
from tokenbound.experiments import recipes, steps
from tokenbound.experiments.recipes import Recipe
from tokenbound.experiments.report import build_report, write_report
from tokenbound.experiments.results import Compressed, Evaluated, RunResults

log = logging.getLogger(__name__)


def run(recipe: Recipe, *, progress: bool = False, say=lambda msg: None) -> dict:
    """Run every step of `recipe` (skipping finished ones) and write the report; returns it.

    The steps run in order, each handing its typed result (`results`) to the next:
    prepare -> train -> compress -> evaluate (train, then held-out) -> certify; then
    `report.build_report` renders them. `timings_s` holds each step's seconds in the run that
    did its work (OUT/timings.json keeps them across reruns; an interrupted step's time is
    added to the run that finishes it), `total` their sum and `this_run` the wall time of this
    call; `steps_reused` names the steps whose outputs an earlier run made.
    """
    from tokenbound.evaluation.engine import is_finished
    from tokenbound.training.run import is_complete

    out = Path(recipe.out).resolve()  # absolute: run dirs record their data path
    out.mkdir(parents=True, exist_ok=True)
    stored = _check_compress_json(recipe, out)  # before training: a changed setting fails at once
    steps.refresh_json(out / "recipe.json", recipe.to_dict())
    clock = _Clock(out, say)
    data_dir, message = out / "data", out / "model.tbm"
    d = recipe.data
    prepared = clock.step("prepare", lambda: steps.prepare(
        d["corpus"], d.get("tokenizer", "bytes"), data_dir, progress=progress,
        **{k: v for k, v in d.items() if k not in ("corpus", "tokenizer")}),
        reused=lambda res: all(s.skipped for s in res.values()))
    trained = None
    if recipe.finetune is not None:  # the split prior (METHOD 2.9): a base on DATA/prior first
        clock.step("train base", lambda: _train(recipe, data_dir / "prior", out, progress,
                                                run="base"),
                   reused=is_complete(out / "base"), own=lambda res: res.get("wall_seconds"))
    if recipe.model is not None:
        trained = clock.step("train", lambda: _train(recipe, data_dir, out, progress),
                             reused=is_complete(out / "train"),
                             own=lambda res: res.get("wall_seconds"))
    compressed = _compress(recipe, out, stored, clock)
    bounded = data_dir / ("bound" if recipe.finetune is not None else "train")
    evaluated = clock.step("evaluate", lambda: _evaluate(
        message, bounded, out / "eval_train", recipe.evaluate, progress),
        reused=is_finished(out / "eval_train"), own=lambda ev: ev.timing.get("seconds"))
    heldout, heldout_status = None, _heldout_status(recipe, data_dir)
    if heldout_status == "measured":
        heldout = clock.step("evaluate heldout", lambda: _evaluate(
            message, data_dir / "heldout", out / "eval_heldout",
            recipes.heldout_eval(recipe.evaluate), progress),
            reused=is_finished(out / "eval_heldout"), own=lambda ev: ev.timing.get("seconds"))
    elif recipe.heldout:
        say(f"[evaluate heldout] held-out loss {heldout_status}")
    certified = clock.step("bound", lambda: steps.certify(
        out / "eval_train", compressed.total_bits, delta=recipe.delta,
        extra_bits=recipe.extra_bits))
    prior = None
    if recipe.finetune is not None:
        prior = _split_prior(out / "eval_train", compressed.total_bits)
    steps.refresh_json(out / "bound.json", certified.to_dict() | ({"prior": prior} if prior
                                                                  else {}))
    results = RunResults(prepared, trained, compressed, evaluated, heldout, heldout_status,
                         certified, clock.finish(), clock.reused)
    rep = build_report(recipe, results)
    if prior:  # the report names the prior and the tokens the certificate covers
        rep["prior"] = prior
        rep["notes"] = [prior["assumes"], *rep.get("notes", [])]
    write_report(rep, out)
    return rep


def _check_compress_json(recipe: Recipe, out: Path) -> Compressed | None:
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
    return steps.compressed_from(comp)


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


def _train(recipe: Recipe, data_dir: Path, out: Path, progress: bool,
           run: str = "train") -> dict:
    """The train step (`run="base"`: the base of the split prior, on DATA/prior); a run
    directory trained with other settings is refused with advice that fits `run` (which has
    no --force). With `finetune:`, OUT/train holds adapters on OUT/base."""
    try:
        if recipe.finetune is not None and run == "train":
            return steps.finetune(out / "base", data_dir, out / "train", recipe.finetune,
                                  progress=progress)
        return steps.train(data_dir, out / run, recipe.model, recipe.train,
                           progress=progress)
    except OutDirMismatch as exc:
        raise UserError(
            f"{out} holds a model trained with other model/train settings (differs in "
            f"{', '.join(exc.keys)}); use a new --out directory for this recipe, or delete {out}/train "
            f"and the files made from it ({', '.join(MADE_FROM_TRAIN)}) to retrain here"
        ) from None


MADE_FROM_TRAIN = ("model.tbm", "compress.json", "eval_train", "eval_heldout")


def _split_prior(eval_dir: Path, code_bits: int) -> dict:
    """The report's prior for a recipe with `finetune:` (`experiments/prior.py`)."""
    from tokenbound.experiments.prior import prior_section

    man = steps.read_json(eval_dir / "eval.json")["manifest"]
    return prior_section(man["model"], code_bits, None, stream_identity=man["stream_identity"],
                         n_tokens=man["n_tokens"], stream_split=man.get("prior_split"))


def _trained_sha256(run_dir: Path) -> str | None:
    """sha256 of the trained weights of RUN (None when there are none)."""
    from tokenbound.fileio import file_sha256
    from tokenbound.training.run import MODEL

    p = Path(run_dir) / MODEL
    return file_sha256(str(p)) if p.is_file() else None


def _compress(recipe: Recipe, out: Path, stored: Compressed | None, clock: _Clock) -> Compressed:
    """The compress step: the message OUT/model.tbm and OUT/compress.json (`stored`, kept when
    valid and made from the same trained weights with the same settings)."""
    from tokenbound.compression import QuantConfig

    message, c = out / "model.tbm", recipe.compress
    trained = _trained_sha256(out / "train") if recipe.model is not None else None
    if steps.message_is_valid(message, stored) and stored.train_sha256 in (None, trained):
        return clock.step("compress", lambda: stored, reused=True, own=lambda res: res.seconds)
    if recipe.model is None and recipes.is_groupwise(c):  # per-group PTQ of an hf: model
        comp = clock.step("compress", lambda: _compress_group(recipe, out, message))
        return _save_compress(out, comp, trained, c, clock)
    qcfg = QuantConfig.from_recipe(c)
    if recipe.model is not None:
        comp = clock.step("compress", lambda: steps.compress_run(
            out / "train", message, qcfg, steps.QATConfig.from_recipe(c)))
    else:
        comp = clock.step("compress", lambda: steps.compress_hf(recipe.hf, message, qcfg))
    return _save_compress(out, comp, trained, c, clock)


def _save_compress(out: Path, comp: Compressed, trained, c: dict, clock: _Clock) -> Compressed:
    comp = dataclasses.replace(comp, train_sha256=trained, recipe_compress=dict(c),
                               seconds=clock.timings["compress"])
    steps.atomic_json(out / "compress.json", comp.to_dict())
    return comp


def _compress_group(recipe: Recipe, out: Path, message: Path) -> Compressed:
    """Per-group quantization of the recipe's `hf:` model, its loss before/after measured on
    the fixed sample of the training stream (`experiments.ptq`); warnings are logged."""
    from tokenbound.compression.groupwise import GroupConfig
    from tokenbound.experiments.ptq import compress_hf_groupwise

    c = dict(recipe.compress)
    windows, context = c.pop("loss_windows", 4), c.pop("loss_context", 256)
    comp = compress_hf_groupwise(recipe.hf, message, GroupConfig(**c),
                                 stream_dir=out / "data" / "train", context_len=context,
                                 n_windows=windows)
    for w in comp.warnings:
        log.warning("compress: %s", w)
    return comp


def _evaluate(message: Path, stream_dir: Path, eval_dir: Path, cfg: dict,
              progress: bool) -> Evaluated:
    """The evaluate step; a directory scored with other settings or another model is refused
    with advice that fits `run`."""
    try:
        return steps.evaluate(message, stream_dir, eval_dir, cfg, progress=progress)
    except OutDirMismatch as exc:
        stale = " and ".join(str(p) for p in sorted(eval_dir.parent.glob("eval_*")))
        raise UserError(f"{eval_dir} holds scores made with another model or other evaluate "
                        f"settings (differs in {', '.join(exc.keys)}); use a new --out directory for "
                        f"this recipe, or delete {stale} to score again") from None


def _heldout_status(recipe: Recipe, data_dir: Path) -> str:
    """"measured", or why the held-out loss is not measured."""
    from tokenbound.data import open_stream

    if not recipe.heldout:
        return "not measured: `heldout: false` in the recipe"
    if not (data_dir / "heldout").is_dir():
        return "not measured: no held-out split"
    if len(open_stream(str(data_dir / "heldout"))) == 0:
        return "not measured: empty held-out split"
    return "measured"
