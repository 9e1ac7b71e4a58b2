"""The callback protocol, the state callbacks see, and the built-in loggers (CSV, TensorBoard, progress bar).

Write a callback by subclassing :class:`Callback` and overriding what you need; pass instances to
``medseg.train(config, callbacks=[...])``. Callbacks run on every rank (``state.rank``); set
``state.should_stop = True`` to end training after the current step (a checkpoint is saved).
"""

from __future__ import annotations

import csv
import io
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medseg.utils import atomic_write_text

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from medseg.config import Config

__all__ = ["Callback", "TrainState", "CSVLogger", "TensorBoardLogger", "ProgressBar"]

log = logging.getLogger(__name__)


@dataclass
class TrainState:
    """What callbacks see. Counters: ``epoch`` (0-based, the epoch running), ``step`` (optimiser steps
    done in the whole run), ``batch_in_epoch`` (steps done in this epoch)."""

    config: Config
    run_dir: Path
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    rank: int = 0
    world_size: int = 1
    epoch: int = 0
    step: int = 0
    batch_in_epoch: int = 0
    steps_per_epoch: int = 0
    total_steps: int = 0
    #: loss of the last step (this rank), learning rate of the decoder group, throughput (all ranks)
    loss: float = math.nan
    lr: float = 0.0
    images_per_s: float = 0.0
    #: ``id`` of every sample in the last batch on this rank (image path, ``#z<slice>`` for CT)
    batch_ids: list[str] = field(default_factory=list)
    #: the last validation metrics and the best monitored value so far
    metrics: dict[str, float] = field(default_factory=dict)
    best_metric: float | None = None
    #: set to True to stop after this step (saved like a pre-emption, but returns normally)
    should_stop: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0


class Callback:
    """Hooks called by the training loop; every method is optional (no-op by default)."""

    def on_train_start(self, state: TrainState) -> None:
        """Before the first step (after a resume: the restored counters are set)."""

    def on_epoch_start(self, state: TrainState) -> None:
        """Before the first step of an epoch."""

    def on_step_end(self, state: TrainState) -> None:
        """After each optimiser step (``state.loss``, ``state.lr``, ``state.batch_ids`` are set)."""

    def on_validation_end(self, state: TrainState, metrics: dict[str, float]) -> None:
        """After a validation round; ``metrics`` like ``{"dice": ..., "dice_left_lung": ..., "hd95": ...}``."""

    def on_epoch_end(self, state: TrainState, row: dict[str, float]) -> None:
        """After an epoch (and its validation); ``row`` is the line written to ``metrics.csv``."""

    def on_train_end(self, state: TrainState) -> None:
        """After training finished (normally, by max_steps, early stopping or should_stop)."""

    def close(self) -> None:
        """Always called at the end, also after an error (release files, stop displays)."""


def metric_columns(labels: dict[int, str]) -> list[str]:
    """Column names of ``metrics.csv``."""
    names = [metric_name(n) for _, n in sorted(labels.items())]
    return (
        ["epoch", "step", "lr", "train_loss", "images_per_s", "seconds", "dice"]
        + [f"dice_{n}" for n in names]
        + ["hd95"]
        + [f"hd95_{n}" for n in names]
    )


def metric_name(label_name: str) -> str:
    """``"right lung"`` -> ``"right_lung"``."""
    return "".join(c if c.isalnum() else "_" for c in label_name.strip().lower())


class CSVLogger(Callback):
    """One row per epoch in ``<run_dir>/metrics.csv`` (rank 0). On resume, rows of epochs that were
    not completed before the resume point are dropped first."""

    def __init__(self, path: Path, columns: list[str], *, keep_epochs: int | None = None) -> None:
        self.path = path
        self.columns = columns
        if keep_epochs is not None and path.is_file():
            with path.open(newline="") as f:
                rows = [r for r in csv.DictReader(f) if r.get("epoch") and int(r["epoch"]) <= keep_epochs]
            self._write(rows)
        elif not path.is_file() or keep_epochs is None:
            self._write([])

    def _write(self, rows: list[dict[str, Any]]) -> None:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=self.columns, extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        atomic_write_text(self.path, buf.getvalue())

    def on_epoch_end(self, state: TrainState, row: dict[str, float]) -> None:
        with self.path.open("a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=self.columns, extrasaction="ignore", lineterminator="\n")
            w.writerow({k: ("" if v is None else (f"{v:.6g}" if isinstance(v, float) else v)) for k, v in row.items()})


class TensorBoardLogger(Callback):
    """Scalars in ``<run_dir>/tb`` (rank 0): loss and lr every ``train.log_every`` steps, metrics per epoch."""

    def __init__(self, folder: Path, log_every: int, purge_step: int | None = None) -> None:
        self.writer: Any = None
        self.log_every = max(1, log_every)
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(folder), purge_step=purge_step)
        except ImportError as e:  # tensorboard is a dependency, but keep training without it
            log.warning("TensorBoard logging disabled: %s", e)

    def on_step_end(self, state: TrainState) -> None:
        if self.writer is not None and state.step % self.log_every == 0:
            self.writer.add_scalar("train/loss", state.loss, state.step)
            self.writer.add_scalar("train/lr", state.lr, state.step)
            self.writer.add_scalar("train/images_per_s", state.images_per_s, state.step)

    def on_epoch_end(self, state: TrainState, row: dict[str, float]) -> None:
        if self.writer is None:
            return
        for k, v in row.items():
            if k not in ("epoch", "step") and isinstance(v, float) and math.isfinite(v):
                self.writer.add_scalar(("train/" if k in ("train_loss", "lr", "images_per_s", "seconds") else "val/") + k,
                                       v, state.step)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class ProgressBar(Callback):
    """A rich progress bar on stderr (rank 0, ``train.progress``): epoch, loss, lr, images/s, ETA."""

    def __init__(self, total_steps: int, epochs: int) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.epochs = epochs
        self.progress = Progress(
            TextColumn("epoch {task.fields[epoch]}/{task.fields[epochs]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}  lr {task.fields[lr]:.2e}  {task.fields[ips]:.1f} img/s"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
        )
        self.task = self.progress.add_task("train", total=total_steps, epoch=0, epochs=epochs, loss=math.nan,
                                           lr=0.0, ips=0.0)
        self.started = False

    def on_train_start(self, state: TrainState) -> None:
        self.progress.start()
        self.started = True
        self.progress.update(self.task, completed=state.step, epoch=min(state.epoch + 1, self.epochs))

    def on_step_end(self, state: TrainState) -> None:
        self.progress.update(self.task, completed=state.step, epoch=state.epoch + 1, loss=state.loss,
                             lr=state.lr, ips=state.images_per_s)

    def on_validation_end(self, state: TrainState, metrics: dict[str, float]) -> None:
        text = "  ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k in ("dice", "hd95"))
        self.progress.console.print(f"epoch {state.epoch + 1}: {text}")

    def close(self) -> None:
        if self.started:
            self.progress.stop()
            self.started = False
