"""Validation on whole images through the inference contract, on the original grid.

Each validation image goes ``prepare_inputs -> model (MONAI SlidingWindowInferer with windows of
data.image_size, as the Predictor) -> softmax -> restore_outputs -> argmax``, and MONAI's
``DiceMetric`` and ``HausdorffDistanceMetric`` (95th percentile) are computed per foreground class
against the label map on the image's own grid (HD95 in mm with the image spacing; in pixels for
pictures without spacing). Ranks validate disjoint shares and the per-image results are gathered.
"""

from __future__ import annotations

import contextlib
import logging
import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from medseg.config import Config
from medseg.data.manifest import ManifestEntry
from medseg.data.preprocess import prepare_inputs, restore_outputs
from medseg.errors import GeometryError, InputError
from medseg.training.callbacks import metric_name
from medseg.training.distributed import DistContext

__all__ = ["validate", "aggregate"]

log = logging.getLogger(__name__)


def _autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager[Any]:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


@torch.no_grad()
def predict_probs(model: torch.nn.Module, x: torch.Tensor, cfg: Config, device: torch.device,
                  amp_dtype: torch.dtype | None = None, channels_last: bool = False) -> torch.Tensor:
    """Softmax probabilities ``(N, K, H, W)`` (CPU, float32) for prepared inputs ``(N, C, H, W)``."""
    from monai.inferers import SlidingWindowInferer

    inferer = SlidingWindowInferer(
        roi_size=tuple(int(s) for s in cfg.data.image_size),
        sw_batch_size=cfg.infer.batch_size,
        overlap=cfg.infer.sliding_window_overlap,
        mode="gaussian",
        padding_mode="constant",
    )

    def net(t: torch.Tensor) -> torch.Tensor:
        if channels_last:
            t = t.contiguous(memory_format=torch.channels_last)
        with _autocast(device, amp_dtype):
            logits = model(t)
        return torch.softmax(logits.float(), dim=1)

    outs = []
    for start in range(0, x.shape[0], cfg.infer.batch_size):
        chunk = x[start : start + cfg.infer.batch_size].to(device)
        probs = inferer(chunk, net)
        outs.append(torch.as_tensor(probs).float().cpu())
    return torch.cat(outs)


def _one_hot(labels: np.ndarray, k: int) -> torch.Tensor:
    t = torch.from_numpy(labels.astype(np.int64))
    return torch.nn.functional.one_hot(t, k).movedim(-1, 0)[None].to(torch.uint8)


def evaluate_image(model: torch.nn.Module, entry: ManifestEntry, cfg: Config, device: torch.device,
                   amp_dtype: torch.dtype | None = None, channels_last: bool = False) -> dict[str, Any]:
    """Per-class Dice and HD95 of one validation image (lists over the foreground classes)."""
    from monai.metrics import compute_dice, compute_hausdorff_distance

    from medseg.io import read_image

    image = read_image(entry.image, kind="intensity")
    if entry.label is None:
        raise InputError("a validation image has no label", path=entry.image, hint="add a label column to the manifest")
    label = read_image(entry.label, kind="label")
    if label.shape != image.shape:
        raise GeometryError(f"label shape {label.shape} differs from image shape {image.shape}", path=entry.label)
    prepared = prepare_inputs(image, cfg)
    probs = predict_probs(model, prepared.tensor, cfg, device, amp_dtype, channels_last)
    pred = restore_outputs(probs, prepared).argmax(axis=0)
    k = cfg.model.num_classes
    y_pred, y = _one_hot(pred, k), _one_hot(np.asarray(label.array), k)
    dice = compute_dice(y_pred, y, include_background=False, ignore_empty=True)[0]
    spacing = tuple(reversed(image.spacing)) if image.spacing_known else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MONAI warns for an empty class (HD is inf/nan then, skipped later)
        hd = compute_hausdorff_distance(y_pred, y, include_background=False, percentile=95, spacing=spacing)[0]
    return {"id": str(entry.image), "dice": dice.tolist(), "hd95": hd.tolist()}


def aggregate(results: Sequence[dict[str, Any]], labels: dict[int, str]) -> dict[str, float]:
    """Means over images per class (non-finite values, e.g. HD95 of an empty prediction, are skipped)
    and over classes: ``dice``, ``dice_<name>``, ``hd95``, ``hd95_<name>``."""
    names = [metric_name(n) for _, n in sorted(labels.items())]
    out: dict[str, float] = {}
    for metric in ("dice", "hd95"):
        values = np.array([r[metric] for r in results], dtype=np.float64).reshape(len(results), len(names))
        values[~np.isfinite(values)] = np.nan
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # mean of an all-NaN column is NaN, as meant
            per_class = np.nanmean(values, axis=0) if len(results) else np.full(len(names), np.nan)
            overall = float(np.nanmean(per_class)) if np.isfinite(per_class).any() else math.nan
        out[metric] = overall
        for n, v in zip(names, per_class, strict=True):
            out[f"{metric}_{n}"] = float(v)
    return out


def validate(model: torch.nn.Module, entries: Sequence[ManifestEntry], cfg: Config, ctx: DistContext,
             amp_dtype: torch.dtype | None = None, channels_last: bool = False) -> dict[str, float]:
    """Validation metrics over ``entries`` (this rank evaluates ``entries[rank::world_size]``); same on all ranks."""
    was_training = model.training
    model.eval()
    try:
        mine = [evaluate_image(model, e, cfg, ctx.device, amp_dtype, channels_last)
                for e in list(entries)[ctx.rank :: ctx.world_size]]
    finally:
        model.train(was_training)
    results = [r for part in ctx.gather(mine) for r in part]
    return aggregate(results, cfg.labels)
