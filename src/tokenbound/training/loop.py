"""The training loop: AdamW on `model.trainable_parameters()`, resumable, data-parallel.

Objective: mean next-token cross-entropy (nats) over the non-ignored targets of the global
batch (`batches.py`). Under DDP each rank computes the summed loss of its rows divided by the
global target count times the world size; DDP averages gradients over ranks, so the gradient
equals the single-process one (up to float summation order).

Schedule (`config.lr_at`): linear warmup, cosine decay to `min_lr_ratio * lr`. AdamW with
decoupled weight decay on tensors with >= 2 dims only, gradient norm clipped to `grad_clip`.
Determinism: batch `t` is a function of `(seed, t)`; the torch RNG (dropout) is reseeded from
`(seed, t, rank)` before step `t`; so a run resumed from a checkpoint ends with the same weights
as an uninterrupted one (bit for bit in float32 on the same machine and thread count).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from pathlib import Path

import torch

from tokenbound.errors import UserError
from tokenbound.fileio import atomic_write_json, dir_lock
from tokenbound.training import distributed as D
from tokenbound.training import run as R
from tokenbound.training.batches import (LN2, check_batch_args, estimate_loss, make_batch,
                                         target_count, token_losses_nats)
from tokenbound.training.checkpoint import (atomic_save_tensors, load_checkpoint,
                                            save_checkpoint, step_seed)
from tokenbound.training.config import TrainConfig, lr_at

log = logging.getLogger(__name__)

EVAL_SEED_OFFSET = 1_000_003  # eval windows use seed + this: fixed, disjoint from the data order


def make_optimizer(model, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW over `model.trainable_parameters()`: decay on >= 2-dim tensors, none on the rest."""
    params = [p for p in model.trainable_parameters() if p.requires_grad]
    if not params:
        raise UserError("the model has no trainable parameters; check the model flags")
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas)


def train(cfg: TrainConfig, progress: bool = True, *, force: bool = False) -> dict:
    """Train (or resume, or just report) the run `cfg.out`; returns the train.json summary.

    Rerunning a finished run returns its summary without training. A different configuration
    for an existing `cfg.out` raises UserError unless `force` (then the run's files are removed
    first). Under torchrun / an initialized process group, every rank calls this; only rank 0
    writes files and draws the progress bar.
    """
    rank, world = D.dist_info()
    with dir_lock(cfg.out) if rank == 0 else contextlib.nullcontext():
        trainer = _Trainer(cfg, rank, world, force)
        if R.is_complete(cfg.out):
            return json.loads((Path(cfg.out) / R.SUMMARY).read_text())
        return trainer.run(progress and rank == 0)


class _Trainer:
    """State of one training process; `run()` does the steps, logging, checkpoints, summary."""

    def __init__(self, cfg: TrainConfig, rank: int, world: int, force: bool):
        self.cfg, self.rank, self.world = cfg, rank, world
        self.run_dir = Path(cfg.out)
        self.device = D.resolve_device(cfg.device, world)
        self.train_stream, self.heldout = R.open_data(cfg.data)
        _check_data(cfg, self.train_stream, world)
        if self.heldout is not None and _too_short(self.heldout, cfg.context_len):
            log.warning("held-out stream %s is shorter than one window; not evaluated", cfg.data)
            self.heldout = None
        resolved = R.resolved_config(cfg, self.train_stream, self.heldout)
        resolved["provenance"]["world_size"] = world
        R.check_run_dir(self.run_dir, resolved, force)
        D.barrier(world)
        if rank == 0:
            if force:
                R.reset_run_dir(self.run_dir)
            if not (self.run_dir / R.CONFIG).exists():
                atomic_write_json(self.run_dir / R.CONFIG, resolved)
        D.barrier(world)

    def _setup(self) -> None:
        self.model = R.build_run_model(self.cfg.model).to(self.device)
        self.model.train()
        self.optimizer = make_optimizer(self.model, self.cfg)
        self.params = [p for group in self.optimizer.param_groups for p in group["params"]]
        self.start_step = 0
        self.progress = {"tokens_seen": 0, "train_seconds": 0.0, "wall_seconds": 0.0,
                         "curve": [], "pending_nats": 0.0, "pending_targets": 0}
        ckpt = load_checkpoint(self.run_dir)
        if ckpt is not None:
            trained, opt_state, info = ckpt
            self.model.load_trained_state(trained)
            self.optimizer.load_state_dict(opt_state)
            self.start_step = int(info["step"])
            self.progress = info["progress"]
            if self.rank != 0:  # rank 0 holds the global pending sums
                self.progress["pending_nats"] = 0.0
            log.info("resuming %s from step %d", self.run_dir, self.start_step)
        self.net = self.model
        if self.world > 1:
            self.net = torch.nn.parallel.DistributedDataParallel(self.model)

    def run(self, show: bool) -> dict:
        self._setup()
        cfg, t_wall = self.cfg, time.perf_counter()
        bar = _bar(show, cfg.steps, self.start_step)
        try:
            for step in range(self.start_step, cfg.steps):
                t0 = time.perf_counter()
                loss_bits = self._step(step)
                self.progress["train_seconds"] += time.perf_counter() - t0
                done = step + 1
                if bar is not None:
                    _update_bar(bar, loss_bits, self.progress)
                if done == cfg.steps or (cfg.eval_interval and done % cfg.eval_interval == 0):
                    self._log_point(done)
                if cfg.ckpt_interval and done % cfg.ckpt_interval == 0 and done < cfg.steps:
                    self._checkpoint(done, t_wall)
                    t_wall = time.perf_counter()
        finally:
            if bar is not None:
                bar.close()  # ends the bar's line: an error prints on a line of its own
        self.progress["wall_seconds"] += time.perf_counter() - t_wall
        return self._finish()

    def _step(self, step: int) -> float:
        cfg = self.cfg
        torch.manual_seed(step_seed(cfg.seed, step, self.rank))
        x, y, doc_ids = (t.to(self.device) for t in make_batch(
            self.train_stream, cfg.context_len, cfg.batch_size, cfg.seed, step,
            rank=self.rank, world_size=self.world))
        n_targets = target_count(self.train_stream, cfg.context_len, cfg.batch_size, cfg.seed,
                                 step)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
            nll_sum = token_losses_nats(self.net, x, y, doc_ids).sum()
        local = float(nll_sum.detach())
        if not math.isfinite(local):
            raise _diverged(cfg, f"the training loss is {local} at step {step + 1}")
        (nll_sum * (self.world / n_targets)).backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.params, cfg.grad_clip)
        for group in self.optimizer.param_groups:
            group["lr"] = lr_at(step, cfg)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.progress["pending_nats"] += local
        self.progress["pending_targets"] += n_targets
        self.progress["tokens_seen"] += cfg.batch_size * cfg.context_len
        return local * self.world / n_targets / LN2

    def _log_point(self, done: int) -> None:
        """Append a curve point: mean train loss since the last point (+ held-out estimate)."""
        p = self.progress
        nats = D.all_reduce_sum(p["pending_nats"], self.world, self.device)
        point = {"step": done, "lr": lr_at(done - 1, self.cfg),
                 "train_bits": nats / max(1, p["pending_targets"]) / LN2}
        if self.rank == 0 and self.heldout is not None and self.cfg.eval_batches:
            point["heldout_bits"] = self._estimate(self.heldout)
        p["curve"].append(point)
        p["pending_nats"], p["pending_targets"] = 0.0, 0
        log.info("step %d: %s", done, point)

    def _estimate(self, stream) -> float:
        cfg = self.cfg
        return estimate_loss(self.model, stream, cfg.context_len, cfg.eval_batches,
                             cfg.batch_size, cfg.seed + EVAL_SEED_OFFSET, autocast=cfg.bf16)

    def _checkpoint(self, done: int, t_wall: float) -> None:
        p = dict(self.progress)
        p["pending_nats"] = D.all_reduce_sum(p["pending_nats"], self.world, self.device)
        p["wall_seconds"] += time.perf_counter() - t_wall
        if self.rank == 0:
            save_checkpoint(self.run_dir, done, self.model.trained_state(), self.optimizer, p)
        self.progress["wall_seconds"] = p["wall_seconds"]
        D.barrier(self.world)

    def _finish(self) -> dict:
        cfg, p = self.cfg, self.progress
        summary = None
        if self.rank == 0:
            summary = {
                "steps": cfg.steps, "tokens_seen": p["tokens_seen"],
                "train_bits": self._estimate(self.train_stream) if cfg.eval_batches else None,
                "heldout_bits": p["curve"][-1].get("heldout_bits"),  # taken at the last step
                "tokens_per_s": p["tokens_seen"] / max(p["train_seconds"], 1e-9),
                "train_seconds": p["train_seconds"], "wall_seconds": p["wall_seconds"],
                "world_size": self.world, "curve": p["curve"],
                "loss_note": "bits per token on fixed seeded packed windows (estimate, not a "
                             "bound)",
            }
            trained = self.model.trained_state()
            if not all(bool(torch.isfinite(t).all()) for t in trained.values()):
                raise _diverged(cfg, "the final weights hold NaN or infinite values")
            atomic_save_tensors(self.run_dir / R.MODEL, trained,
                                metadata={"steps": str(cfg.steps)})
            atomic_write_json(self.run_dir / R.SUMMARY, summary)
        D.barrier(self.world)
        if summary is None:
            summary = json.loads((self.run_dir / R.SUMMARY).read_text())
        return summary


def _diverged(cfg: TrainConfig, what: str) -> UserError:
    """The error of a run whose loss or weights stopped being finite (nothing final saved)."""
    clip = f"--grad-clip {cfg.grad_clip:g}" if cfg.grad_clip > 0 else "--grad-clip 0 (off)"
    return UserError(f"training diverged: {what} (--lr {cfg.lr:g}, {clip}); no final model "
                     f"was saved; train into a new --out with a smaller --lr or --grad-clip 1")


def _check_data(cfg: TrainConfig, stream, world: int) -> None:
    check_batch_args(stream, cfg.context_len, cfg.batch_size, world)
    if getattr(cfg.model, "base", None) is not None:  # fine-tuning: the base's tokenizer
        from tokenbound.training.finetune import check_stream

        check_stream(cfg.model, stream)
    vocab = getattr(cfg.model, "vocab_size", None)
    if vocab is not None and vocab != stream.vocab_size:
        raise UserError(f"the model's vocab_size {vocab} differs from the data's "
                        f"{stream.vocab_size}; pass --vocab-size {stream.vocab_size}")


def _too_short(stream, context_len: int) -> bool:
    return len(stream.tokens) + len(stream.doc_offsets) - 1 < context_len + 1


def _bar(show: bool, total: int, initial: int):
    if not show:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc="train", unit="step", dynamic_ncols=True)


def _update_bar(bar, loss_bits: float, progress: dict) -> None:
    bar.update(1)
    tps = progress["tokens_seen"] / max(progress["train_seconds"], 1e-9)
    bar.set_postfix(loss=f"{loss_bits:.3f}b", tok_s=f"{tps:,.0f}", refresh=False)
