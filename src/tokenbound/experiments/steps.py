"""The pipeline's steps, each idempotent: it returns at once when its output exists and is valid.

    prepare  corpus -> DATA/train, DATA/heldout           (tokenbound.data)
    train    DATA -> RUN (resumable)                       (tokenbound.training)
    compress RUN or HF dir -> MESSAGE (+ compress.json)    (tokenbound.compression)
    evaluate MESSAGE x stream -> EVAL dir (resumable)      (tokenbound.evaluation)
    certify  EVAL + MESSAGE length -> bound.json           (tokenbound.bounds)

This module is the only place (with `pipeline`) that wires packages together; the commands
`compress`, `bound` and `run` call it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tokenbound.compression.qat import QAT_OPTIMIZERS
from tokenbound.configs import Config, ConfigError, setting
from tokenbound.errors import UserError
from tokenbound.experiments.results import Certified, Compressed, Evaluated, PreparedSplit
from tokenbound.fileio import atomic_write_bytes, atomic_write_json, file_sha256, refresh_text

log = logging.getLogger(__name__)

LOSS_SEED = 1234  # the fixed windows of the quantization loss estimate (same before and after)
QAT_SEED = 4321   # batches of quantization-aware fine-tuning


def atomic_json(path: str | Path, obj) -> None:
    """Pretty JSON (indent 2), written atomically (`fileio.atomic_write_json`)."""
    atomic_write_json(path, obj, indent=2)


def refresh_json(path: str | Path, obj) -> None:
    """`atomic_json`, skipped when the file already holds exactly this JSON (a finished
    directory that is read-only is left alone: `fileio.refresh_text`)."""
    refresh_text(path, json.dumps(obj, indent=2) + "\n")


def read_json(path: str | Path) -> dict | None:
    """The JSON object at `path`, or None when the file is missing or unreadable."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


# ---- prepare ---------------------------------------------------------------------------------
def prepare(corpus: str, tokenizer: str, out: str | Path, *, max_train_docs: int | None = None,
            progress: bool = False, **settings) -> dict[str, PreparedSplit]:
    """Write OUT/train and OUT/heldout with `tokenbound.data.prepare` (the function `tokenbound
    prepare` calls: each reuses the other's streams); skipped when identical streams exist.
    Returns split -> result.

    `max_train_docs` keeps only the first N training documents (a smaller population `m`,
    fixed in the recipe before any data is seen; used by `demo --quick`). `settings` are
    `load_corpus`'s `heldout_fraction`, `doc_separator` (escapes such as \\n decoded, as by
    `prepare --doc-separator`), `glob` and `text_column`.
    """
    from tokenbound.data import prepare as prepare_streams
    from tokenbound.data import tokenizer_from_spec
    from tokenbound.data.tokenizer import unescape

    prior_split, split_seed = settings.pop("prior_split", None), settings.pop("split_seed", 0)
    if settings.get("doc_separator") is not None:
        settings["doc_separator"] = unescape(settings["doc_separator"])
    summaries = prepare_streams(corpus, tokenizer_from_spec(tokenizer), out,
                                max_train_docs=max_train_docs, progress=progress, **settings)
    res = {s.split: PreparedSplit(n_tokens=len(s.stream), n_docs=s.stream.n_docs,
                                  n_bytes=s.n_bytes, sha256=s.stream.sha256, skipped=s.skipped)
           for s in summaries}
    if prior_split is not None:  # OUT/prior and OUT/bound (data/split.py)
        from tokenbound.data.split import PARTS, write_split

        existed = all((Path(out) / p / "meta.json").is_file() for p in PARTS)
        for part, st in zip(PARTS, write_split(Path(out) / "train", out, prior_split,
                                               split_seed)):
            res[part] = PreparedSplit(n_tokens=len(st), n_docs=st.n_docs,
                                      n_bytes=int(st.meta.get("n_bytes") or 0),
                                      sha256=st.sha256, skipped=existed)
    return res


# ---- train -----------------------------------------------------------------------------------
def train(data: str | Path, out: str | Path, model: dict, train: dict, *,
          progress: bool = False) -> dict:
    """Train (or resume) RUN=out on DATA with the GPTConfig fields `model` and TrainConfig
    fields `train`; returns train.json."""
    from tokenbound.models import GPTConfig
    from tokenbound.training import TrainConfig
    from tokenbound.training import train as run_training

    cfg = TrainConfig(data=str(data), out=str(out), model=GPTConfig.from_dict(dict(model)),
                      **dict(train))
    return run_training(cfg, progress=progress)


def finetune(base_run: str | Path, data: str | Path, out: str | Path, fin: dict, *,
             progress: bool = False) -> dict:
    """Train (or resume) RUN=out: adapters (`fin`: lora_rank, lora_alpha, lora_targets,
    subspace_dim, seed, and TrainConfig fields under `train`) on the base run `base_run`."""
    from tokenbound.training import TrainConfig
    from tokenbound.training import train as run_training
    from tokenbound.training.finetune import adapter_config
    from tokenbound.training.run import open_data

    rank = fin.get("lora_rank", 4)
    model = adapter_config(str(base_run), rank=rank, alpha=fin.get("lora_alpha", 2.0 * rank),
                           targets=fin.get("lora_targets", ()), seed=fin.get("seed", 0),
                           subspace_dim=fin.get("subspace_dim"), stream=open_data(str(data))[0])
    cfg = TrainConfig(data=str(data), out=str(out), model=model, **dict(fin.get("train", {})))
    return run_training(cfg, progress=progress)


# ---- compress ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class QATConfig(Config):
    """What the compress step of a trained run does besides quantizing: quantization-aware
    fine-tuning and the loss estimate before/after (the recipe's other `compress:` keys and
    `tokenbound compress`'s flags)."""

    qat_steps: int = setting(0, "quantization-aware fine-tuning steps (default 0)")
    qat_lr: float = setting(5e-5, "QAT learning rate")
    qat_optimizer: str = setting("sgd", "QAT optimizer: SGD with momentum 0.9 (default) or Adam",
                                 cli={"choices": QAT_OPTIMIZERS})
    batch_size: int = setting(8, "sequences per batch for QAT and the loss estimate (default 8)")
    eval_batches: int = setting(10, "batches of the loss estimate before/after (default 10; 0 "
                                    "skips)")

    def __post_init__(self):
        for name, low in (("qat_steps", 0), ("batch_size", 1), ("eval_batches", 0)):
            if getattr(self, name) < low:
                raise ConfigError(name, "{" + name + "} must be >= {low}, got {v}", low=low,
                                  v=getattr(self, name))
        if not self.qat_lr > 0:
            raise ConfigError("qat_lr", "{qat_lr} must be > 0, got {v}", v=self.qat_lr)
        if self.qat_optimizer not in QAT_OPTIMIZERS:
            raise ConfigError("qat_optimizer", "{qat_optimizer} {v!r}: use {known}",
                              v=self.qat_optimizer, known=" or ".join(QAT_OPTIMIZERS))


def compress_run(run: str | Path, out: str | Path, qcfg,
                 qat: QATConfig = QATConfig()) -> Compressed:
    """Quantize the final model of RUN, optionally QAT (`qat`), write the message to `out` and
    check that it decodes to exactly the quantized weights. Returns the compress report."""
    from tokenbound.compression import qat_finetune, quantize_
    from tokenbound.training import IGNORE_INDEX, batch_iterator, estimate_loss, load_run
    from tokenbound.training.run import open_data

    model, cfg, info = load_run(run)
    stream, _ = open_data(info["config"]["data"])
    ctx = int(info["config"].get("context_len") or cfg.context_len)

    def loss():
        if not qat.eval_batches:
            return None
        return estimate_loss(model, stream, ctx, qat.eval_batches, qat.batch_size, LOSS_SEED)

    before = loss()
    qstate = quantize_(model, qcfg)
    if qat.qat_steps:
        batches = batch_iterator(stream, ctx, qat.batch_size, QAT_SEED)
        qstate = qat_finetune(model, qstate, batches, qat.qat_steps, qat.qat_lr,
                              ignore_index=IGNORE_INDEX, optimizer=qat.qat_optimizer)
    after = loss()
    extra = {"tokenizer": stream.meta.get("tokenizer"), "vocab_size": stream.vocab_size,
             "start_id": stream.start_id, "eot_id": stream.eot_id, "context_len": ctx}
    tuned = dict(qat_lr=qat.qat_lr, qat_optimizer=qat.qat_optimizer) if qat.qat_steps else {}
    return dataclasses.replace(write_message(model, cfg, qstate, extra, out), run=str(run),
                               loss_before=before, loss_after=after,
                               loss_increase=None if before is None else after - before,
                               qat_steps=qat.qat_steps, **tuned)


def compress_hf(hf_dir: str | Path, out: str | Path, qcfg) -> Compressed:
    """Post-training quantization of a local Hugging Face causal LM into a message."""
    from tokenbound.compression import quantize_

    from tokenbound.sources import load_hf_model

    if not Path(hf_dir).is_dir():
        raise UserError(f"{hf_dir}: not a directory holding a Hugging Face model")
    model = load_hf_model(str(hf_dir), flag="--hf")
    qstate = quantize_(model, qcfg)
    return dataclasses.replace(write_message(model, model.config, qstate, {"source": "hf"}, out),
                               hf=str(hf_dir))


def write_message(model, cfg, qstate, extra: dict, out: str | Path) -> Compressed:
    """Encode, write atomically, decode back and check the weights bit for bit."""
    import torch

    from tokenbound.compression import decode, encode

    message = encode(model, cfg, qstate, extra_header=extra)
    out_path = Path(out)
    atomic_write_bytes(out_path, message)
    model2, _, info = decode(out_path)
    for (name, a), (_, b) in zip(model.state_dict().items(), model2.state_dict().items()):
        if not torch.equal(a.cpu(), b):
            raise RuntimeError(f"decoded tensor {name} differs from the quantized model")
    n = info["trained_parameters"]
    return Compressed(out=str(out_path), total_bits=info["total_bits"],
                      bits_by_part=info["bits_by_part"], prefix_free_bits=info["prefix_free_bits"],
                      trained_parameters=n, quantized_parameters=qstate.quantized_parameters,
                      bits_per_parameter=info["total_bits"] / max(n, 1), sha256=info["sha256"],
                      quant=qstate.config.to_dict())


def read_compressed(path: str | Path) -> Compressed | None:
    """The compress report stored at `path` (compress.json), or None when missing/unreadable."""
    return compressed_from(read_json(path))


def compressed_from(d: dict | None) -> Compressed | None:
    """`Compressed` from a compress.json dict; None when there is none or it lacks a field."""
    try:
        return None if d is None else Compressed.from_dict(d)
    except TypeError:
        return None


def message_is_valid(path: str | Path, report: Compressed | None) -> bool:
    """True when `path` exists and its sha256 and size match the compress report."""
    p = Path(path)
    if report is None or not p.is_file():
        return False
    return (8 * p.stat().st_size == report.total_bits
            and file_sha256(p) == report.sha256)


# ---- evaluate --------------------------------------------------------------------------------
def evaluate(model_source: str, stream_dir: str | Path, out: str | Path, eval_cfg: dict, *,
             progress: bool = False) -> Evaluated:
    """Score the stream with the model (message file, HF dir or GGUF); resumable shards."""
    from tokenbound.data import open_stream
    from tokenbound.evaluation import EvalConfig
    from tokenbound.evaluation import evaluate as run_eval
    from tokenbound.sources import load_model_fn

    cfg = EvalConfig(**dict(eval_cfg))
    stream = open_stream(str(stream_dir))
    model = load_model_fn(str(model_source), device=cfg.device, dtype=cfg.dtype)
    from tokenbound.evaluation.estimate import warn_if_long

    def warn(est):  # a recipe's n_samples can mean hours on a CPU: say so before scoring
        warn_if_long(est, cfg.context_len, cfg.device, f"evaluate {out}")

    return Evaluated.from_eval_json(out, run_eval(model, stream, str(out), cfg,
                                                  progress=progress, on_estimate=warn))


# ---- certify ---------------------------------------------------------------------------------
def certify(eval_dir: str | Path, code_bits: int, *, delta: float = 0.05, extra_bits: int = 0,
            extra_candidates: int = 1, estimator: str = "betting") -> Certified:
    """Bounds of every family from an evaluation directory and the message length C (bits).

    Exact mode: `certify_exact` (azuma, bernstein, betting; the certified value is their
    minimum with ln(#families), ln(#alphas), ln(#centers) and each lambda grid paid, and
    ln(extra_candidates) for other models or strides compared on these results), top-k
    bounds (`certify_topk_exact`, k in TOPK with k < V, each its own certificate at `delta`), the
    document-level bound, and the paper's arithmetic (not a certificate; it needs a sample,
    so it is only computed in sampled mode). Sampled mode: `certify_sampled`.
    """
    from tokenbound import bounds as B
    from tokenbound.evaluation import load_result

    stats, ev = load_result(str(eval_dir))
    man = ev["manifest"]
    V = int(stats.meta["vocab_size"])
    alphas = tuple(stats.meta["alphas"])
    ks = tuple(stats.meta["topk"])
    grids = dict(alphas=alphas, centers=tuple(stats.meta["centers"]))  # as evaluated, not today's
    common = dict(vocab_size=V, code_bits=int(code_bits), extra_bits=int(extra_bits), delta=delta,
                  extra_candidates=extra_candidates)
    head = dict(mode=man["mode"], vocab_size=V, alphas=list(alphas), eval_manifest=man)
    if man["mode"] == "exact":
        tot = stats.totals()
        m = int(tot["n_tokens"])
        doc_means = stats.doc_sum_x / stats.doc_n[:, None] if stats.doc_n is not None else None
        cert = B.certify_exact(m, tot["sum_x"], tot["sum_center"], tot["sum_dev2"], stats.betting,
                               doc_means=doc_means, betting_lams=tuple(stats.meta["betting_lambdas"]),
                               **grids, **common)
        topk = {}
        for j, k in enumerate(ks):
            if k not in B.topk_applicable(ks, V):  # k >= V: no top-k row (error 0 by definition)
                continue
            c = B.certify_topk_exact(m, tot["topk_err"][j], tot["topk_center"][j],
                                     tot["topk_dev2"][j], k=k, k_choices=len(ks), **common)
            topk[str(k)] = c.to_dict()
        return Certified(**head, topk=topk, token=cert.to_dict(), m=m, n=None,
                         mean_bits=float(tot["mean_bits"]))
    s = stats.sample_arrays()
    m = int(man["n_tokens"])
    cert = B.certify_sampled(s["Y"], s["W"], m=m, estimator=estimator, **grids, **common)
    return Certified(**head, topk=list(ks), token=cert.to_dict(),
                     paper=paper_from_sample(s, stats, m, common), m=m,
                     n=int(s["Y"].shape[0]), mean_bits=None)


def paper_from_sample(s: dict, stats, m: int, common: dict) -> dict:
    """The published arithmetic (METHOD 2.7), best over the paper's own alpha grid
    (`grids.PAPER_ALPHA_GRID`, whatever else was scored): not a certificate."""
    from tokenbound import bounds as B

    best = None
    for ia, alpha in enumerate(stats.meta["alphas"]):
        if alpha not in B.grids.PAPER_ALPHA_GRID:
            continue
        a, c = B.smoothing(common["vocab_size"], alpha)
        r = B.paper_bound(a + float(np.mean(s["Y"][:, ia])), a, c, m, int(s["Y"].shape[0]),
                          common["code_bits"], common["extra_bits"], common["delta"], alpha=alpha,
                          random_guess=float(np.log2(common["vocab_size"])))
        if best is None or r.value < best.value:
            best = r
    return best.to_dict()
