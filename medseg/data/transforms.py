"""Training-time random transforms (MONAI dictionary transforms) per task.

Samples are dictionaries ``{"image": (C, H, W) float32 in [0, 1], "label": (1, H, W)}`` (C = 1 for
radiographs, k adjacent slices for CT) produced by :mod:`medseg.data.preprocess`; augmentation
works on the [0, 1] image and the encoder normalisation is applied afterwards by the dataset, so
the network sees exactly what :func:`~medseg.data.preprocess.prepare_inputs` gives at inference.

Pipeline: (CT only) ``SpatialPadd`` + ``RandSpatialCropd`` to ``data.image_size``;
``RandAffined`` (rotation, scale, translation; labels nearest); ``Rand2DElasticd`` when
``augment.elastic_prob > 0``; optional left-right flip that also swaps "left X"/"right X" labels;
``RandScaleIntensityd``, ``RandAdjustContrastd``, ``RandGaussianNoised``; clip to [0, 1]; (radiographs,
``augment.opacity_prob > 0``) a simulated dense opacity inside one lung, :class:`RandLungOpacityd`.

CT positive sampling (``data.foreground_labels``): :func:`positive_crop` crops a slice holding
those labels to ``data.image_size`` around one of their voxels before the pipeline above (whose
pad + random crop then changes nothing).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch
from monai.transforms import (
    Compose,
    MapTransform,
    RandAdjustContrastd,
    RandAffined,
    RandCropByPosNegLabeld,
    RandGaussianNoised,
    RandomizableTransform,
    RandScaleIntensityd,
    RandSpatialCropd,
    SpatialPadd,
)

from medseg.config import Config
from medseg.structures import LabelMap

__all__ = ["train_transforms", "positive_crop", "RandFlipSwapLeftRightd", "RandLungOpacityd", "left_right_pairs",
           "seed_for"]


def left_right_pairs(labels: Mapping[int, str]) -> list[tuple[int, int]]:
    """``(left value, right value)`` pairs of mirror-image structures, by any spelling
    (:meth:`medseg.structures.LabelMap.mirror_pairs`)."""
    return [(le, r) for r, le in LabelMap.coerce(labels).mirror_pairs()]


class RandFlipSwapLeftRightd(RandomizableTransform, MapTransform):
    """Flip image and label along x and swap left/right label values.

    Hand-written because MONAI's ``RandFlipd`` mirrors pixels only: a mirrored left lung looks like
    a right lung, so its label must change too.
    """

    def __init__(self, keys: tuple[str, str], pairs: list[tuple[int, int]], prob: float = 0.5) -> None:
        MapTransform.__init__(self, keys)
        RandomizableTransform.__init__(self, prob)
        self.image_key, self.label_key = keys
        self.pairs = pairs

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        self.randomize(None)
        if not self._do_transform:
            return d
        d[self.image_key] = torch.flip(torch.as_tensor(d[self.image_key]), dims=[-1])
        label = torch.flip(torch.as_tensor(d[self.label_key]), dims=[-1])
        swapped = label.clone()
        for a, b in self.pairs:
            swapped[label == a] = b
            swapped[label == b] = a
        d[self.label_key] = swapped
        return d


class RandLungOpacityd(RandomizableTransform, MapTransform):
    """Simulate a dense opacity (consolidation, ARDS, effusion: a "white base") inside one lung of a
    radiograph; the label is unchanged, so the network learns that opaque lung is still lung.

    Hand-written because MONAI has no label-guided intensity transform. On ``image`` ``(1, H, W)`` in
    [0, 1] (larger = denser) with ``label`` ``(1, H, W)``: one lung (a random one of ``lung_values``
    present) gets a smooth blob - a Gaussian centred at a random point of the lower half of that lung's
    extent, sigma 25-60 % of its height - multiplied by the lung mask blurred over ~3 % of the image
    height; the image is pulled towards the soft-tissue level (90th percentile of the image outside the
    lungs) by ``strength`` (uniform in ``strength_range``) times that weight. Lungs smaller than 1 % of
    the image are left alone.
    """

    def __init__(
        self,
        keys: tuple[str, str],
        lung_values: list[int],
        prob: float = 0.3,
        strength_range: tuple[float, float] = (0.4, 0.9),
    ) -> None:
        MapTransform.__init__(self, keys)
        RandomizableTransform.__init__(self, prob)
        self.image_key, self.label_key = keys
        self.lung_values = list(lung_values)
        self.strength_range = strength_range

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        from scipy import ndimage

        d = dict(data)
        self.randomize(None)
        if not self._do_transform or not self.lung_values:
            return d
        image = torch.as_tensor(d[self.image_key])
        label = np.asarray(torch.as_tensor(d[self.label_key]))[0]
        present = [v for v in self.lung_values if (label == v).sum() >= 0.01 * label.size]
        # draw every random number before deciding anything, so the stream does not depend on the data
        pick, cy, cx, sig, strength = self.R.random(5)
        if not present:
            return d
        mask = label == present[int(pick * len(present)) % len(present)]
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        top, bottom, left, right = rows[0], rows[-1], cols[0], cols[-1]
        height = float(bottom - top + 1)
        y0 = top + (0.5 + 0.5 * cy) * height
        x0 = left + cx * float(right - left + 1)
        sigma = (0.25 + 0.35 * sig) * height
        yy, xx = np.ogrid[: mask.shape[0], : mask.shape[1]]
        blob = np.exp(-((yy - y0) ** 2 + (xx - x0) ** 2) / (2.0 * sigma**2))
        soft = ndimage.gaussian_filter(mask.astype(np.float32), sigma=max(1.0, 0.03 * mask.shape[0]))
        weight = torch.from_numpy((blob * soft).astype(np.float32))
        outside = image[0][torch.from_numpy(label == 0)]
        tissue = float(torch.quantile(outside, 0.9)) if outside.numel() else 1.0
        s = self.strength_range[0] + strength * (self.strength_range[1] - self.strength_range[0])
        out = image.clone()
        out[0] = image[0] + (tissue - image[0]).clamp(min=0.0) * (s * weight)
        d[self.image_key] = out
        return d


class _Clip01d(MapTransform):
    """Clip the image back to [0, 1] after intensity augmentation (the encoder's input range)."""

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = torch.as_tensor(d[key]).clamp(0.0, 1.0)
        return d


def train_transforms(cfg: Config) -> Compose:
    """The random training pipeline of ``cfg`` (see the module docstring); deterministic when disabled.

    Seed it per sample with ``Compose.set_random_state(seed)`` for reproducible augmentation.
    """
    aug = cfg.data.augment
    size = [int(s) for s in cfg.data.image_size]
    keys = ["image", "label"]
    ts: list[Any] = []
    if cfg.data.task == "ct":
        ts += [
            SpatialPadd(keys=keys, spatial_size=size, mode="constant", value=0),
            RandSpatialCropd(keys=keys, roi_size=size, random_size=False),
        ]
    if aug.enabled:
        if aug.affine_prob > 0:
            ts.append(
                RandAffined(
                    keys=keys,
                    prob=aug.affine_prob,
                    rotate_range=math.radians(aug.rotate_deg),
                    scale_range=(aug.scale, aug.scale),
                    translate_range=(aug.translate_frac * size[0], aug.translate_frac * size[1]),
                    mode=("bilinear", "nearest"),
                    padding_mode="zeros",
                )
            )
        if aug.elastic_prob > 0:
            from monai.transforms import Rand2DElasticd

            ts.append(
                Rand2DElasticd(
                    keys=keys,
                    prob=aug.elastic_prob,
                    spacing=(max(8, size[0] // 8), max(8, size[1] // 8)),
                    magnitude_range=(1.0, 2.0),
                    mode=("bilinear", "nearest"),
                    padding_mode="zeros",
                )
            )
        if aug.flip_lr:
            ts.append(RandFlipSwapLeftRightd(("image", "label"), left_right_pairs(cfg.labels), prob=0.5))
        if aug.opacity_prob > 0 and cfg.data.task == "cxr":
            lungs = list(LabelMap.coerce(cfg.labels).lung_values())
            ts.append(RandLungOpacityd(("image", "label"), lungs, prob=aug.opacity_prob))
        if aug.intensity_prob > 0:
            p = aug.intensity_prob
            ts += [
                RandScaleIntensityd(keys="image", factors=aug.intensity_scale, prob=p),
                RandAdjustContrastd(keys="image", gamma=(float(aug.gamma[0]), float(aug.gamma[-1])), prob=p),
                RandGaussianNoised(keys="image", std=aug.noise_std, prob=p),
                _Clip01d(keys="image"),
            ]
    return Compose(ts)


def positive_crop(cfg: Config) -> RandCropByPosNegLabeld:
    """In-plane crop of ``data.image_size`` centred on a random voxel of the sample's ``"positive"`` mask.

    Takes ``{"image": (k, H, W), "label": (1, H, W), "positive": (1, H, W) bool}`` and returns a
    one-element list of the cropped ``image``/``label`` (MONAI moves the centre inwards so the crop
    stays inside the slice; a slice smaller than the size is cropped to its own size and padded
    later by :func:`train_transforms`). Seed it with ``set_random_state``.
    """
    size = [int(s) for s in cfg.data.image_size]
    return RandCropByPosNegLabeld(
        keys=["image", "label"], label_key="positive", spatial_size=size, pos=1.0, neg=0.0, num_samples=1,
        allow_smaller=True,
    )


def seed_for(seed: int, epoch: int, index: int) -> int:
    """A 32-bit seed that depends only on (run seed, epoch, sample index): augmentation is the same
    whatever the number of workers/ranks and after a resume."""
    return int(np.random.SeedSequence([seed & 0xFFFFFFFF, epoch, index]).generate_state(1)[0])
