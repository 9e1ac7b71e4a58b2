"""Loss, optimiser and learning-rate schedule from the config (MONAI losses, torch AdamW)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from medseg.config import Config
from medseg.errors import ConfigError

__all__ = ["build_loss", "build_optimizer", "build_scheduler", "lr_factor"]


class _CrossEntropy(nn.Module):
    """Cross-entropy on ``(B, K, H, W)`` logits and ``(B, 1, H, W)`` integer labels (MONAI has no plain CE loss)."""

    def __init__(self) -> None:
        super().__init__()
        self.ce = nn.CrossEntropyLoss()

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.ce(logits, target[:, 0].long())


def build_loss(cfg: Config) -> nn.Module:
    """``train.loss``: "dicece" (default), "dice", "dicefocal" (MONAI, softmax, one-hot labels) or "ce"."""
    from monai.losses import DiceCELoss, DiceFocalLoss, DiceLoss

    name = cfg.train.loss
    if name == "dicece":
        return DiceCELoss(to_onehot_y=True, softmax=True, batch=True)
    if name == "dice":
        return DiceLoss(to_onehot_y=True, softmax=True, batch=True)
    if name == "dicefocal":
        return DiceFocalLoss(to_onehot_y=True, softmax=True, batch=True)
    if name == "ce":
        return _CrossEntropy()
    raise ConfigError(f"unknown loss {name!r}", path="train.loss", hint="one of dicece, dice, ce, dicefocal")


def build_optimizer(model: nn.Module, cfg: Config) -> torch.optim.Optimizer:
    """AdamW over :func:`medseg.models.param_groups` (encoder at ``lr * encoder_lr_mult``)."""
    from medseg.models import param_groups

    o = cfg.optim
    groups = param_groups(model, o.lr, o.encoder_lr_mult, o.weight_decay)
    return torch.optim.AdamW(groups, lr=o.lr, weight_decay=o.weight_decay)


def lr_factor(step: int, *, total_steps: int, warmup_steps: int, schedule: str) -> float:
    """Multiplier of the base learning rates after ``step`` optimiser steps.

    Linear warm-up from ``1/warmup_steps`` to 1 over ``warmup_steps``, then cosine decay to 0 at
    ``total_steps`` (``schedule="cosine"``) or constant.
    """
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, max(0.0, (step - warmup_steps) / span))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: Config, steps_per_epoch: int) -> Any:
    """Per-step ``LambdaLR``: warm-up for ``optim.warmup_epochs`` then ``optim.schedule`` over ``train.epochs``.

    The schedule depends on ``train.epochs`` only (not on ``train.max_steps``), so stopping early
    and resuming follows the same learning rates as an uninterrupted run.
    """
    total = max(1, cfg.train.epochs * steps_per_epoch)
    warmup = max(0, cfg.optim.warmup_epochs * steps_per_epoch)
    schedule = cfg.optim.schedule

    def factor(step: int) -> float:
        return lr_factor(step, total_steps=total, warmup_steps=warmup, schedule=schedule)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
