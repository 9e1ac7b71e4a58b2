"""``train(config)``: config-driven fine-tuning, mixed precision, resumable, DDP.

Run folder (``train.out_dir``, or the folder given to ``resume``)::

    config.yaml            the run's config
    metrics.csv            one row per epoch (train loss, lr, images/s, validation Dice/HD95 per class)
    tb/                    TensorBoard scalars
    checkpoints/best/      best checkpoint by ``train.monitor`` (medseg.models.save_checkpoint folder)
    checkpoints/last/      latest checkpoint
    state.pt               resumable state: weights, optimiser, scheduler, GradScaler, counters, RNG
                           states of every rank (``torch.load(weights_only=True)``)
    preempted.json         only after a pre-emption (SIGTERM/SIGUSR1): exit code 75, resume to go on

Resuming restores everything in ``state.pt`` and continues at the same sample of the same epoch:
data order (``ShardSampler``: seed + epoch, skipping the batches already done) and augmentation
(seeded per sample) do not depend on where the run stopped, so a resumed CPU fp32 run ends with the
same weights as an uninterrupted one.
"""

from __future__ import annotations

import copy
import logging
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medseg.config import Config, config_to_dict, save_config
from medseg.data.manifest import ManifestEntry, load_entries
from medseg.errors import CheckpointError, ConfigError, TrainingError
from medseg.training.callbacks import (
    Callback,
    CSVLogger,
    ProgressBar,
    TensorBoardLogger,
    TrainState,
    metric_columns,
    metric_name,
)
from medseg.training.distributed import DistContext, init_distributed
from medseg.training.optim import build_loss, build_optimizer, build_scheduler
from medseg.training.preempt import PREEMPT_MARKER, PreemptionHandler, TrainingPreempted
from medseg.training.state import STATE_FILE, capture_rng, load_state, restore_rng, save_state
from medseg.utils import atomic_write_text, resolve_device

__all__ = ["RunResult", "train"]

log = logging.getLogger(__name__)

_AMP_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class RunResult:
    """What :func:`train` returns.

    Attributes:
        run_dir: the run folder.
        best_checkpoint: ``checkpoints/best`` (None if never saved).
        last_checkpoint: ``checkpoints/last``.
        best_metric: best value of ``monitor`` (None without any evaluation).
        monitor: the metric that selected the best checkpoint.
        epochs: completed epochs; steps: optimiser steps done.
        history: the ``metrics.csv`` rows as dicts.
        stop_reason: "completed", "max_steps", "early_stopping" or "callback".
    """

    run_dir: Path
    best_checkpoint: Path | None
    last_checkpoint: Path | None
    best_metric: float | None
    epochs: int
    steps: int
    history: list[dict[str, Any]] = field(default_factory=list)
    monitor: str = "dice"
    stop_reason: str = "completed"


def _monitor_mode(name: str) -> str:
    return "min" if name.startswith("hd95") or name.endswith("loss") else "max"


def _check_config(cfg: Config, has_val: bool) -> str:
    """Checks that need no data; returns the monitored metric name."""
    t = cfg.train
    device = resolve_device(t.device)
    if t.amp == "fp16" and not device.startswith("cuda"):
        raise ConfigError(
            "fp16 mixed precision needs a CUDA GPU (its GradScaler has no CPU path)",
            path="train.amp",
            hint="use train.amp=bf16 on CPU (or none)",
        )
    for key, value, low in (("train.epochs", t.epochs, 1), ("train.val_every", t.val_every, 1),
                            ("data.batch_size", cfg.data.batch_size, 1), ("train.max_steps", t.max_steps, 0),
                            ("train.early_stop_patience", t.early_stop_patience, 0),
                            ("optim.warmup_epochs", cfg.optim.warmup_epochs, 0),
                            ("data.num_workers", cfg.data.num_workers, 0),
                            ("train.save_every_steps", t.save_every_steps, 0)):
        if value < low:
            raise ConfigError(f"must be >= {low}, got {value}", path=key)
    names = [metric_name(n) for _, n in sorted(cfg.labels.items())]
    valid = ["dice", "hd95", "train_loss"] + [f"{m}_{n}" for m in ("dice", "hd95") for n in names]
    if t.monitor not in valid:
        raise ConfigError(f"unknown metric {t.monitor!r}", path="train.monitor", hint=f"one of {', '.join(valid)}")
    if not has_val and t.monitor != "train_loss":
        log.warning("no validation images: the best checkpoint is chosen by train_loss instead of %s", t.monitor)
        return "train_loss"
    return t.monitor


def _resolve_run_dir(cfg: Config, resume: str | PathLike[str] | None) -> tuple[Path, Path | None]:
    out = Path(cfg.train.out_dir)
    if resume is None:
        if (out / STATE_FILE).exists():
            raise ConfigError(
                f"{out} already holds a training run",
                path="train.out_dir",
                hint=f"resume it with --resume {out} (or --resume auto), or set another train.out_dir",
            )
        return out, None
    if str(resume) == "auto":
        return out, (out / STATE_FILE) if (out / STATE_FILE).is_file() else None
    folder = Path(resume)
    if folder.is_file() and folder.name == STATE_FILE:
        folder = folder.parent
    if not (folder / STATE_FILE).is_file():
        raise CheckpointError(
            f"no {STATE_FILE} to resume from",
            path=folder,
            hint="pass the run folder of an earlier run (train.out_dir), or --resume auto",
        )
    cfg.train.out_dir = str(folder)
    return folder, folder / STATE_FILE


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _load_init_weights(model: torch.nn.Module, folder: Path) -> None:
    """Copy the weights of a trained checkpoint into ``model`` (strict: same architecture)."""
    from medseg.models import load_checkpoint

    loaded = load_checkpoint(folder, device="cpu")
    try:
        model.load_state_dict(loaded.model.state_dict(), strict=True)
    except RuntimeError as e:
        raise CheckpointError(
            f"the checkpoint's network does not match model.* of this config ({str(e).splitlines()[0]})",
            path=folder,
            hint="use the same model.encoder / in_channels / num_classes as the checkpoint",
        ) from e
    log.info("initialised from checkpoint %s", folder)


def train(config: Config, *, resume: str | PathLike[str] | None = None, callbacks: Sequence[Callback] = ()) -> RunResult:
    """Fine-tune the model of ``config`` on its data; see the module docstring for the run folder.

    Args:
        config: the run's configuration (hyper-parameters are config fields).
        resume: a run folder (or its ``state.pt``) to continue, or ``"auto"`` to continue
            ``train.out_dir`` when it holds a run and start fresh otherwise.
        callbacks: :class:`~medseg.training.callbacks.Callback` instances (called on every rank).

    Launched by ``torchrun`` (``WORLD_SIZE > 1``) every process trains a shard of the data with DDP;
    rank 0 writes the run folder.

    Raises:
        ConfigError: invalid settings or missing data paths (before anything is written).
        TrainingError: non-finite loss (with the step and a fix) or unusable data.
        TrainingPreempted: SIGTERM/SIGUSR1 arrived; the state was saved (exit code 75).
    """
    cfg = copy.deepcopy(config).validate()
    run_dir, state_path = _resolve_run_dir(cfg, resume)
    entries = load_entries(cfg.data)
    has_val = any(e.split == "val" for e in entries)
    monitor = _check_config(cfg, has_val)
    ctx = init_distributed(cfg.train.device)
    clean = False
    try:
        # installed before the (possibly long) set-up so that an early SIGTERM is not fatal
        with PreemptionHandler() as preempt:
            result = _Run(cfg, ctx, run_dir, state_path, entries, list(callbacks), monitor, preempt).run()
        clean = True
        return result
    except TrainingPreempted:
        clean = True  # every rank stops at the same step
        raise
    finally:
        ctx.shutdown(clean=clean)


class _Run:
    """One training run (state + loop); :func:`train` is the public entry point."""

    def __init__(self, cfg: Config, ctx: DistContext, run_dir: Path, state_path: Path | None,
                 entries: list[ManifestEntry], callbacks: list[Callback], monitor: str,
                 preempt: PreemptionHandler) -> None:
        self.cfg, self.ctx, self.run_dir, self.state_path = cfg, ctx, run_dir, state_path
        self.preempt = preempt
        self.train_entries = [e for e in entries if e.split == "train"]
        self.val_entries = [e for e in entries if e.split == "val"]
        self.user_callbacks = callbacks
        self.monitor = monitor
        self.amp_dtype = _AMP_DTYPES[cfg.train.amp]
        # counters (restored on resume)
        self.epoch = 0
        self.step = 0
        self.batch_in_epoch = 0
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.bad_rounds = 0
        self.loss_sum = 0.0
        self.loss_count = 0.0
        self.images = 0.0
        self.seconds = 0.0
        self.history: list[dict[str, Any]] = []
        self.metrics: dict[str, float] = {}
        self.frozen: bool | None = None
        self.model: torch.nn.Module | None = None

    # ---- set-up ---------------------------------------------------------------------------
    def _setup(self) -> None:
        from medseg.data.datasets import ShardSampler, build_train_dataset
        from medseg.models import build_model

        cfg, ctx, t = self.cfg, self.ctx, self.cfg.train
        if ctx.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            save_config(cfg, self.run_dir / "config.yaml")
            (self.run_dir / PREEMPT_MARKER).unlink(missing_ok=True)
        if t.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.deterministic = True
            torch.backends.cudnn.benchmark = False
        elif ctx.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        _seed_everything(t.seed)  # the same initial weights on every rank
        self.dataset = build_train_dataset(cfg, self.train_entries, seed=t.seed)
        self.sampler = ShardSampler(self.dataset, num_replicas=ctx.world_size, rank=ctx.rank, seed=t.seed)
        bs = cfg.data.batch_size
        self.drop_last = self.sampler.num_samples >= bs
        self.steps_per_epoch = self.sampler.num_samples // bs if self.drop_last else 1
        raw = build_model(cfg.model)
        if t.init_checkpoint and self.state_path is None:
            _load_init_weights(raw, Path(t.init_checkpoint))
        raw = raw.to(ctx.device)
        if t.channels_last:
            raw.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.raw = raw
        self.optimizer = build_optimizer(raw, cfg)
        self.scheduler = build_scheduler(self.optimizer, cfg, self.steps_per_epoch)
        self.scaler = torch.amp.GradScaler("cuda") if t.amp == "fp16" else None
        self.loss_fn = build_loss(cfg)
        _seed_everything(t.seed + ctx.rank)
        if self.state_path is not None:
            self._restore(load_state(self.state_path))
        log.info("training %d images (%d steps/epoch of %d x %d ranks), validating %d; run folder %s",
                 len(self.dataset), self.steps_per_epoch, bs, ctx.world_size, len(self.val_entries), self.run_dir)

    def _restore(self, state: dict[str, Any]) -> None:
        ctx = self.ctx
        if state.get("steps_per_epoch") != self.steps_per_epoch or state.get("world_size") != ctx.world_size:
            log.warning("resuming with %s steps/epoch on %s ranks (the run had %s on %s): the data order "
                        "differs from an uninterrupted run", self.steps_per_epoch, ctx.world_size,
                        state.get("steps_per_epoch"), state.get("world_size"))
        try:
            self.raw.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as e:
            raise CheckpointError(f"the saved state does not fit this model/config ({e})", path=self.state_path,
                                  hint="resume with the config the run was started with") from e
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        c = state["counters"]
        self.epoch, self.step, self.batch_in_epoch = int(c["epoch"]), int(c["step"]), int(c["batch_in_epoch"])
        self.best, self.best_epoch, self.bad_rounds = c["best"], c["best_epoch"], int(c["bad_rounds"])
        if ctx.is_main:  # the saved sums are over all ranks: add them once
            self.loss_sum, self.loss_count = float(c["loss_sum"]), float(c["loss_count"])
            self.images, self.seconds = float(c["images"]), float(c["seconds"])
        self.history = list(state.get("history", []))
        rngs = state["rng"]
        if len(rngs) == ctx.world_size:
            restore_rng(rngs[ctx.rank])
        log.info("resumed %s at epoch %d, step %d (batch %d of the epoch)", self.run_dir, self.epoch + 1,
                 self.step, self.batch_in_epoch)

    def _wrap(self) -> torch.nn.Module:
        """DDP (and torch.compile) around the network; redone when the trainable parameters change."""
        model: torch.nn.Module = self.raw
        if self.ctx.distributed:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.ctx.device.index] if self.ctx.device.type == "cuda" else None
            model = DistributedDataParallel(model, device_ids=ids)
        if self.cfg.train.compile:
            model = torch.compile(model)  # type: ignore[assignment]
        return model

    def _apply_freeze(self, epoch: int) -> None:
        from medseg.models import set_encoder_trainable

        frozen = epoch < self.cfg.train.freeze_encoder_epochs
        if frozen != self.frozen or self.model is None:
            set_encoder_trainable(self.raw, not frozen)
            if self.frozen is not None:
                log.info("epoch %d: encoder %s", epoch + 1, "frozen" if frozen else "unfrozen")
            self.frozen = frozen
            self.model = self._wrap()

    # ---- saving ---------------------------------------------------------------------------
    def _summary(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "step": self.step,
            "batch_in_epoch": self.batch_in_epoch,
            "monitor": self.monitor,
            "best_metric": self.best,
            "best_epoch": self.best_epoch,
            "metrics": dict(self.metrics),
            "world_size": self.ctx.world_size,
            "run_dir": str(self.run_dir),
        }

    def _save(self, *, best: bool = False) -> None:
        """Last (and best) checkpoint + state.pt; collective (RNG states of all ranks), rank 0 writes."""
        from medseg.models import save_checkpoint

        self.ctx.broadcast_buffers(self.raw)
        rngs = self.ctx.gather(capture_rng())
        loss_sum, loss_count, images = self.ctx.sum(self.loss_sum, self.loss_count, self.images)
        if not self.ctx.is_main:
            return
        ckpt = self.run_dir / "checkpoints"
        summary = self._summary()
        if best:
            save_checkpoint(ckpt / "best", self.raw, self.cfg, training=summary)
        save_checkpoint(ckpt / "last", self.raw, self.cfg, training=summary)
        state = {
            "model": {k: v.detach().cpu() for k, v in self.raw.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else {},
            "rng": rngs,
            "counters": {
                "epoch": self.epoch, "step": self.step, "batch_in_epoch": self.batch_in_epoch,
                "best": self.best, "best_epoch": self.best_epoch, "bad_rounds": self.bad_rounds,
                "loss_sum": loss_sum, "loss_count": loss_count, "images": images, "seconds": self.seconds,
            },
            "history": [r for r in self.history if r["epoch"] <= self.epoch],  # completed epochs only
            "steps_per_epoch": self.steps_per_epoch,
            "world_size": self.ctx.world_size,
            "config": config_to_dict(self.cfg),
        }
        save_state(self.run_dir / STATE_FILE, state)

    # ---- one step -------------------------------------------------------------------------
    def _step(self, batch: dict[str, Any]) -> float:
        assert self.model is not None
        dev, t = self.ctx.device, self.cfg.train
        x = batch["image"].to(dev, non_blocking=True)
        y = batch["label"].to(dev, non_blocking=True)
        if t.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.amp_dtype is not None:
            with torch.autocast(device_type=dev.type, dtype=self.amp_dtype):
                logits = self.model(x)
        else:
            logits = self.model(x)
        loss = self.loss_fn(logits.float(), y)
        (bad,) = self.ctx.any_flags(not bool(torch.isfinite(loss.detach()).item()))
        if bad:
            raise TrainingError(
                f"non-finite loss at epoch {self.epoch + 1}, step {self.step + 1} "
                f"(batch: {', '.join(str(i) for i in batch.get('id', []))[:300]})",
                path=self.run_dir,
                hint=f"lower optim.lr (now {self.cfg.optim.lr:g}), keep optim.grad_clip > 0, use train.amp=bf16 "
                "instead of fp16, and check those images for corrupt values",
            )
        self.optimizer.zero_grad(set_to_none=True)
        clip = self.cfg.optim.grad_clip
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            if clip > 0:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(self.raw.parameters(), clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            if clip > 0:
                torch.nn.utils.clip_grad_norm_(self.raw.parameters(), clip)
            self.optimizer.step()
        self.scheduler.step()
        return float(loss.detach())

    def _lr(self) -> float:
        groups = self.optimizer.param_groups
        for g in groups:
            if g.get("name") == "decoder":
                return float(g["lr"])
        return float(groups[0]["lr"])

    # ---- epoch end ------------------------------------------------------------------------
    def _end_epoch(self, *, complete: bool, validate_now: bool, callbacks: list[Callback],
                   tstate: TrainState) -> bool:
        """Validation, metrics row, best/last checkpoints and state; returns True when early stopping fires."""
        from medseg.training.validate import validate

        ctx, t = self.ctx, self.cfg.train
        ctx.broadcast_buffers(self.raw)
        loss_sum, loss_count, images = ctx.sum(self.loss_sum, self.loss_count, self.images)
        train_loss = loss_sum / loss_count if loss_count else math.nan
        metrics: dict[str, float] = {}
        if validate_now and self.val_entries:
            metrics = validate(self.raw, self.val_entries, self.cfg, ctx, self.amp_dtype, t.channels_last)
            self.metrics = metrics
            tstate.metrics = metrics
            for cb in callbacks:
                cb.on_validation_end(tstate, metrics)
        value = train_loss if self.monitor == "train_loss" else metrics.get(self.monitor)
        improved = False
        if value is not None and math.isfinite(value):
            better = self.best is None or (value < self.best if _monitor_mode(self.monitor) == "min" else value > self.best)
            if better:
                self.best, self.best_epoch, self.bad_rounds, improved = float(value), self.epoch + 1, 0, True
            elif metrics or self.monitor == "train_loss":
                self.bad_rounds += 1
        row: dict[str, Any] = {
            "epoch": self.epoch + 1,
            "step": self.step,
            "lr": self._lr(),
            "train_loss": train_loss,
            "images_per_s": images / self.seconds if self.seconds > 0 else math.nan,
            "seconds": self.seconds,
            **metrics,
        }
        self.history.append(row)
        tstate.best_metric = self.best
        for cb in callbacks:
            cb.on_epoch_end(tstate, row)
        log.info("epoch %d: loss %.4f%s", self.epoch + 1, train_loss,
                 "".join(f", {k} {v:.4f}" for k, v in metrics.items() if k in ("dice", "hd95")))
        if complete:
            self.epoch += 1
            self.batch_in_epoch = 0
            self.loss_sum = self.loss_count = self.images = self.seconds = 0.0
        self._save(best=improved)
        patience = t.early_stop_patience
        return bool(patience and self.bad_rounds >= patience)

    # ---- the loop -------------------------------------------------------------------------
    def run(self) -> RunResult:
        self._setup()
        cfg, ctx, t = self.cfg, self.ctx, self.cfg.train
        internal: list[Callback] = []
        if ctx.is_main:
            resumed = self.state_path is not None
            internal.append(CSVLogger(self.run_dir / "metrics.csv", metric_columns(cfg.labels),
                                      keep_epochs=self.epoch if resumed else None))
            internal.append(TensorBoardLogger(self.run_dir / "tb", t.log_every, purge_step=self.step if resumed else None))
            if t.progress:
                total = t.epochs * self.steps_per_epoch
                internal.append(ProgressBar(min(total, t.max_steps) if t.max_steps else total, t.epochs))
        callbacks = internal + self.user_callbacks
        tstate = TrainState(config=cfg, run_dir=self.run_dir, model=self.raw, optimizer=self.optimizer,
                            rank=ctx.rank, world_size=ctx.world_size, epoch=self.epoch, step=self.step,
                            batch_in_epoch=self.batch_in_epoch, steps_per_epoch=self.steps_per_epoch,
                            total_steps=t.epochs * self.steps_per_epoch, best_metric=self.best, lr=self._lr())
        try:
            reason = self._loop(callbacks, tstate)
            for cb in callbacks:
                cb.on_train_end(tstate)
        finally:
            for cb in callbacks:
                cb.close()
        best = self.run_dir / "checkpoints" / "best"
        last = self.run_dir / "checkpoints" / "last"
        return RunResult(
            run_dir=self.run_dir,
            best_checkpoint=best if best.is_dir() else None,
            last_checkpoint=last if last.is_dir() else None,
            best_metric=self.best,
            epochs=self.epoch,
            steps=self.step,
            history=list(self.history),
            monitor=self.monitor,
            stop_reason=reason,
        )

    def _loop(self, callbacks: list[Callback], tstate: TrainState) -> str:
        from torch.utils.data import DataLoader

        cfg, ctx, t = self.cfg, self.ctx, self.cfg.train
        bs = cfg.data.batch_size
        for cb in callbacks:
            cb.on_train_start(tstate)
        if t.max_steps and self.step >= t.max_steps:
            return "max_steps"
        preempt = self.preempt
        while self.epoch < t.epochs:
            self._apply_freeze(self.epoch)
            assert self.model is not None
            self.dataset.set_epoch(self.epoch)
            self.sampler.set_epoch(self.epoch)
            self.sampler.skip = self.batch_in_epoch * bs
            loader = DataLoader(
                self.dataset, batch_size=bs, sampler=self.sampler, num_workers=cfg.data.num_workers,
                drop_last=self.drop_last, pin_memory=ctx.device.type == "cuda",
                generator=torch.Generator().manual_seed(t.seed * 100003 + self.epoch),
            )
            self.model.train()
            tstate.epoch, tstate.batch_in_epoch = self.epoch, self.batch_in_epoch
            for cb in callbacks:
                cb.on_epoch_start(tstate)
            stop: str | None = None
            tick = time.perf_counter()
            for batch in loader:
                loss = self._step(batch)
                n = float(batch["image"].shape[0])
                self.step += 1
                self.batch_in_epoch += 1
                self.loss_sum += loss * n
                self.loss_count += n
                self.images += n
                now = time.perf_counter()
                self.seconds += now - tick
                tstate.images_per_s = n * ctx.world_size / max(now - tick, 1e-9)
                tick = now
                tstate.step, tstate.batch_in_epoch, tstate.loss, tstate.lr = (
                    self.step, self.batch_in_epoch, loss, self._lr())
                tstate.batch_ids = [str(i) for i in batch.get("id", [])]
                for cb in callbacks:
                    cb.on_step_end(tstate)
                if t.log_every and self.step % t.log_every == 0:
                    log.info("epoch %d step %d: loss %.4f lr %.3g %.1f img/s", self.epoch + 1, self.step, loss,
                             tstate.lr, tstate.images_per_s)
                signalled, asked = ctx.any_flags(preempt.requested is not None, tstate.should_stop)
                if signalled:
                    stop = "preempted"
                elif asked:
                    stop = "callback"
                elif t.max_steps and self.step >= t.max_steps:
                    stop = "max_steps"
                if stop:
                    break
                if t.save_every_steps and self.step % t.save_every_steps == 0 and \
                        self.batch_in_epoch < self.steps_per_epoch:
                    self._save()
            complete = self.batch_in_epoch >= self.steps_per_epoch
            if stop == "preempted":
                if complete:  # the epoch's last step: keep the epoch bookkeeping exact
                    self._end_epoch(complete=True, validate_now=False, callbacks=callbacks, tstate=tstate)
                else:
                    self._save()
                self._mark_preempted(preempt.requested or "signal")
                raise TrainingPreempted(
                    f"training stopped by a pre-emption signal at epoch {self.epoch + (0 if complete else 1)}, "
                    f"step {self.step}; the state is saved",
                    path=self.run_dir,
                    hint=f"resume with `medseg train CONFIG --resume {self.run_dir}`",
                )
            last_epoch = complete and self.epoch + 1 >= t.epochs
            due = complete and ((self.epoch + 1) % t.val_every == 0 or last_epoch)
            early = self._end_epoch(complete=complete, validate_now=due or stop is not None,
                                    callbacks=callbacks, tstate=tstate)
            if stop:
                return stop
            if early:
                log.info("early stopping: %s did not improve for %d validations", self.monitor, self.bad_rounds)
                return "early_stopping"
        return "completed"

    def _mark_preempted(self, signal_name: str) -> None:
        if self.ctx.is_main:
            import json

            atomic_write_text(self.run_dir / PREEMPT_MARKER, json.dumps(
                {"signal": signal_name, "epoch": self.epoch, "step": self.step, "state": STATE_FILE}) + "\n")
