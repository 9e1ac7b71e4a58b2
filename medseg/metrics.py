"""Segmentation and uncertainty metrics on plain arrays (layer 2: numpy / scipy / MONAI only).

Conventions used by every function here:

* Masks are boolean (or 0/1) numpy arrays of the same shape, ``(y, x)`` for 2-D or ``(z, y, x)``
  for 3-D, i.e. the :class:`medseg.image.Image` array order.
* ``spacing`` is given **per array axis, in array axis order**: ``(row, col)`` = ``(y, x)`` for 2-D
  and ``(z, y, x)`` for 3-D, in millimetres. :attr:`medseg.image.Image.spacing` is in *index*
  order ``(x, y[, z])``, so pass ``image.spacing[::-1]``. ``None`` means 1 per axis: distances are
  then in pixels/voxels and sizes in pixel/voxel counts.
* Empty masks: both empty -> Dice 1.0 and Hausdorff/HD95 0.0 (perfect agreement on "nothing");
  exactly one empty -> Dice 0.0 and Hausdorff/HD95 ``inf`` (no surface to measure to).
* Surface distances come from MONAI :func:`monai.metrics.compute_hausdorff_distance` (edge voxels =
  mask XOR its binary erosion, Euclidean distance transform with the spacing). Its "HD95" is the
  **maximum of the two directed 95th percentiles** (A->B and B->A), as in MONAI and nnU-Net.
* Probability maps are ``(K, ...)`` with the class axis first (softmax output, sums to 1 along
  axis 0, class 0 = background), the spatial axes as above.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Iterable, Sequence
from typing import Literal

import numpy as np

from medseg.errors import InputError

__all__ = [
    "dice",
    "hd95",
    "hausdorff",
    "volume_ml",
    "area_cm2",
    "structure_size",
    "per_label_metrics",
    "mean_entropy",
    "flip_disagreement",
    "case_uncertainty",
]

logger = logging.getLogger(__name__)


def _as_mask(a: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(a)
    if arr.ndim not in (2, 3):
        raise InputError(f"{name} must be a 2-D (y, x) or 3-D (z, y, x) mask, got shape {arr.shape}")
    return arr.astype(bool, copy=False)


def _pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ma, mb = _as_mask(a, "a"), _as_mask(b, "b")
    if ma.shape != mb.shape:
        raise InputError(
            f"masks have different shapes {ma.shape} and {mb.shape}",
            hint="resample both masks onto the same grid first",
        )
    return ma, mb


def _spacing(spacing: Sequence[float] | float | None, ndim: int) -> tuple[float, ...]:
    if spacing is None:
        return (1.0,) * ndim
    if np.isscalar(spacing):
        return (float(spacing),) * ndim  # type: ignore[arg-type]
    sp = tuple(float(s) for s in spacing)  # type: ignore[union-attr]
    if len(sp) != ndim or not all(math.isfinite(s) and s > 0 for s in sp):
        raise InputError(
            f"spacing must hold {ndim} positive numbers (array axis order), got {sp}",
            hint="pass image.spacing[::-1] for a medseg Image",
        )
    return sp


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice coefficient ``2|A and B| / (|A| + |B|)`` of two masks of the same shape.

    Both empty -> 1.0; one empty -> 0.0. Written with numpy because MONAI's ``compute_dice``
    needs one-hot float tensors and returns NaN (not 1) when both masks are empty.
    """
    ma, mb = _pair(a, b)
    sa, sb = int(ma.sum()), int(mb.sum())
    if sa + sb == 0:
        return 1.0
    return 2.0 * int(np.logical_and(ma, mb).sum()) / (sa + sb)


def _surface_distance(
    a: np.ndarray, b: np.ndarray, spacing: Sequence[float] | float | None, percentile: float | None
) -> float:
    ma, mb = _pair(a, b)
    ea, eb = bool(ma.any()), bool(mb.any())
    if not ea and not eb:
        return 0.0
    if ea != eb:
        return math.inf
    from monai.metrics import compute_hausdorff_distance

    sp = _spacing(spacing, ma.ndim)
    with warnings.catch_warnings():  # MONAI warns about its own deprecated internal argument
        warnings.simplefilter("ignore", FutureWarning)
        hd = compute_hausdorff_distance(
            ma[None, None], mb[None, None], include_background=True, percentile=percentile, spacing=list(sp)
        )
    return float(hd.reshape(-1)[0])


def hausdorff(a: np.ndarray, b: np.ndarray, spacing: Sequence[float] | float | None = None) -> float:
    """Symmetric Hausdorff distance between the surfaces of two masks, in mm (pixels if no spacing).

    ``spacing`` is per array axis (``image.spacing[::-1]``). Both empty -> 0.0, one empty -> inf.
    """
    return _surface_distance(a, b, spacing, None)


def hd95(a: np.ndarray, b: np.ndarray, spacing: Sequence[float] | float | None = None) -> float:
    """95th-percentile Hausdorff distance (MONAI: max of the two directed 95th percentiles), in mm.

    ``spacing`` is per array axis (``image.spacing[::-1]``); ``None`` gives pixels/voxels.
    Both empty -> 0.0, one empty -> inf.
    """
    return _surface_distance(a, b, spacing, 95.0)


def volume_ml(mask: np.ndarray, spacing: Sequence[float]) -> float:
    """Volume of a 3-D mask in millilitres (cm^3): voxel count x voxel volume (mm^3) / 1000."""
    m = _as_mask(mask, "mask")
    if m.ndim != 3:
        raise InputError(
            f"volume_ml needs a 3-D (z, y, x) mask, got shape {m.shape}", hint="use area_cm2 for 2-D"
        )
    return float(m.sum()) * float(np.prod(_spacing(spacing, 3))) / 1000.0


def area_cm2(mask: np.ndarray, spacing: Sequence[float]) -> float:
    """Area of a 2-D mask in cm^2: pixel count x pixel area (mm^2) / 100."""
    m = _as_mask(mask, "mask")
    if m.ndim != 2:
        raise InputError(
            f"area_cm2 needs a 2-D (y, x) mask, got shape {m.shape}", hint="use volume_ml for 3-D"
        )
    return float(m.sum()) * float(np.prod(_spacing(spacing, 2))) / 100.0


def structure_size(mask: np.ndarray, spacing: Sequence[float] | None) -> tuple[float, str]:
    """Size of a mask and its unit: mL (3-D), cm^2 (2-D), or a voxel/pixel count without spacing."""
    m = _as_mask(mask, "mask")
    if spacing is None:
        return float(m.sum()), ("voxels" if m.ndim == 3 else "px")
    if m.ndim == 3:
        return volume_ml(m, spacing), "mL"
    return area_cm2(m, spacing), "cm2"


def per_label_metrics(
    a: np.ndarray,
    b: np.ndarray,
    labels: Iterable[int],
    spacing: Sequence[float] | None = None,
) -> dict[int, dict[str, float | str]]:
    """Dice, HD95, Hausdorff and sizes for each label value of two label maps of the same shape.

    Args:
        a, b: integer label maps ``(y, x)`` or ``(z, y, x)`` (``a`` is the reference).
        labels: label values to compare (0 = background is allowed but rarely useful).
        spacing: per array axis in mm (``image.spacing[::-1]``); ``None`` -> pixel units.

    Returns:
        ``{label: {"dice", "hd95", "hausdorff", "size_a", "size_b", "size_diff", "size_diff_pct",
        "size_unit", "distance_unit"}}`` where sizes are mL (3-D) / cm^2 (2-D) or counts without
        spacing, ``size_diff = size_b - size_a`` and ``size_diff_pct`` is relative to ``size_a``
        (NaN when ``a`` is empty).
    """
    la, lb = np.asarray(a), np.asarray(b)
    if la.shape != lb.shape:
        raise InputError(
            f"label maps have different shapes {la.shape} and {lb.shape}",
            hint="resample both onto the same grid first",
        )
    out: dict[int, dict[str, float | str]] = {}
    for label in labels:
        ma, mb = la == label, lb == label
        size_a, unit = structure_size(ma, spacing)
        size_b, _ = structure_size(mb, spacing)
        out[int(label)] = {
            "dice": dice(ma, mb),
            "hd95": hd95(ma, mb, spacing),
            "hausdorff": hausdorff(ma, mb, spacing),
            "size_a": size_a,
            "size_b": size_b,
            "size_diff": size_b - size_a,
            "size_diff_pct": 100.0 * (size_b - size_a) / size_a if size_a > 0 else math.nan,
            "size_unit": unit,
            "distance_unit": "px" if spacing is None else "mm",
        }
    return out


def _probs(probs: np.ndarray, name: str = "probs") -> np.ndarray:
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim < 2 or p.shape[0] < 2:
        raise InputError(
            f"{name} must be (K, ...) class probabilities with K >= 2 classes first, got shape {p.shape}",
            hint="apply softmax over the class axis and drop the batch axis",
        )
    if not np.all(np.isfinite(p)):
        raise InputError(f"{name} contains NaN or infinite values")
    return p


def mean_entropy(
    probs: np.ndarray,
    *,
    region: Literal["all", "foreground"] = "all",
    normalize: bool = True,
) -> float:
    """Mean per-voxel Shannon entropy ``-sum_k p_k log p_k`` of a ``(K, ...)`` probability map.

    Args:
        probs: class probabilities, class axis first (sums to 1 along axis 0).
        region: ``"all"`` averages over every voxel; ``"foreground"`` only over voxels whose argmax
            is not class 0 (an empty predicted foreground gives 0.0). Whole-image means are diluted
            by easy background, so ``"foreground"`` ranks cases better.
        normalize: divide by ``log K`` so the result is in [0, 1] whatever the number of classes.
    """
    p = _probs(probs)
    k = p.shape[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        ent = -np.sum(np.where(p > 0, p * np.log(np.clip(p, 1e-300, None)), 0.0), axis=0)
    if normalize:
        ent = ent / math.log(k)
    if region == "foreground":
        fg = np.argmax(p, axis=0) != 0
        if not fg.any():
            return 0.0
        return float(ent[fg].mean())
    if region != "all":
        raise InputError(f"region must be 'all' or 'foreground', got {region!r}")
    return float(ent.mean())


def flip_disagreement(
    probs_a: np.ndarray,
    probs_b: np.ndarray,
    *,
    mode: Literal["dice", "abs"] = "dice",
) -> float:
    """Disagreement between two predictions of the same case (e.g. plain vs flipped-back TTA).

    Both are ``(K, ...)`` probability maps on the same grid (undo the flip before calling).

    * ``mode="dice"``: ``1 - mean Dice`` between the two argmax label maps over the foreground
      classes present in either (0.0 when neither predicts any foreground). In [0, 1].
    * ``mode="abs"``: mean over voxels of ``0.5 * sum_k |p_a - p_b|`` (total-variation distance
      between the two class distributions). In [0, 1].
    """
    pa, pb = _probs(probs_a, "probs_a"), _probs(probs_b, "probs_b")
    if pa.shape != pb.shape:
        raise InputError(f"probability maps differ in shape: {pa.shape} vs {pb.shape}")
    if mode == "abs":
        return float(0.5 * np.abs(pa - pb).sum(axis=0).mean())
    if mode != "dice":
        raise InputError(f"mode must be 'dice' or 'abs', got {mode!r}")
    la, lb = np.argmax(pa, axis=0), np.argmax(pb, axis=0)
    scores = [dice(la == c, lb == c) for c in range(1, pa.shape[0]) if (la == c).any() or (lb == c).any()]
    if not scores:
        return 0.0
    return float(1.0 - np.mean(scores))


def case_uncertainty(probs: np.ndarray, probs_tta: np.ndarray | None = None) -> dict[str, float]:
    """Uncertainty summary of one case from its softmax output.

    Args:
        probs: ``(K, ...)`` class probabilities (class axis first, spatial axes ``(y, x)`` or
            ``(z, y, x)``).
        probs_tta: optional second prediction of the same case on the same grid, e.g. the
            prediction of the flipped input flipped back (flip test-time augmentation).

    Returns:
        ``entropy``: mean normalised entropy over all voxels (in [0, 1]);
        ``entropy_fg``: the same over the predicted foreground (argmax != 0; 0.0 if none);
        with ``probs_tta`` also ``tta_disagreement`` = 1 - mean Dice between the two argmax maps
        (foreground classes) and ``tta_prob_diff`` = mean total-variation distance
        ``0.5 * sum_k |p - p_tta|``;
        ``uncertainty``: the ranking score, ``entropy_fg`` without TTA, else
        ``(entropy_fg + tta_disagreement) / 2``. All values are in [0, 1].
    """
    out = {
        "entropy": mean_entropy(probs, region="all"),
        "entropy_fg": mean_entropy(probs, region="foreground"),
    }
    if probs_tta is None:
        out["uncertainty"] = out["entropy_fg"]
        return out
    out["tta_disagreement"] = flip_disagreement(probs, probs_tta, mode="dice")
    out["tta_prob_diff"] = flip_disagreement(probs, probs_tta, mode="abs")
    out["uncertainty"] = 0.5 * (out["entropy_fg"] + out["tta_disagreement"])
    return out
