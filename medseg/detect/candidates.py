"""Nodule candidates from a probability map: connected components inside the lungs, then NMS.

Conventions: ``prob`` is a numpy array ``(z, y, x)`` on the grid of the CT :class:`Image`; every
world position is in mm in the DICOM patient frame (LPS), the frame of LUNA16 CSV files.
"""

from __future__ import annotations

import csv
import io
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import numpy as np
from scipy import ndimage

from medseg.errors import GeometryError, InputError
from medseg.image import Image
from medseg.utils import atomic_write_text

__all__ = [
    "Detection",
    "detect_candidates",
    "non_max_suppression",
    "dilate_mask_mm",
    "write_candidates_csv",
    "CANDIDATE_COLUMNS",
]

log = logging.getLogger(__name__)

#: LUNA16 submission format
CANDIDATE_COLUMNS = ("seriesuid", "coordX", "coordY", "coordZ", "probability")


@dataclass(frozen=True)
class Detection:
    """One nodule candidate.

    Attributes:
        center: probability-weighted centroid ``(x, y, z)`` in world mm (LPS).
        center_index: the same centroid as a continuous voxel index ``(x, y, z)``.
        diameter_mm: equivalent-sphere diameter ``(6 V / pi)^(1/3)`` of the component.
        volume_mm3: component volume (voxel count x voxel volume).
        score: the **maximum** probability inside the component (the ranking score written to
            the LUNA16 CSV).
        mean_probability: mean probability inside the component.
        n_voxels: number of voxels in the component.
    """

    center: tuple[float, float, float]
    center_index: tuple[float, float, float]
    diameter_mm: float
    volume_mm3: float
    score: float
    mean_probability: float
    n_voxels: int

    @property
    def radius_mm(self) -> float:
        return self.diameter_mm / 2.0


def _array_spacing(image: Image) -> tuple[float, float, float]:
    """Spacing in array axis order ``(z, y, x)``."""
    sx, sy, sz = image.spacing
    return (sz, sy, sx)


def dilate_mask_mm(mask: np.ndarray, image: Image, margin_mm: float) -> np.ndarray:
    """Grow a boolean ``(z, y, x)`` mask by ``margin_mm`` (Euclidean distance in mm, anisotropic)."""
    mask = np.asarray(mask, dtype=bool)
    if margin_mm <= 0 or not mask.any():
        return mask
    spacing = _array_spacing(image)
    # work in the mask's bounding box grown by the margin: the distance transform is the cost
    nz = np.nonzero(mask)
    pad = [int(math.ceil(margin_mm / s)) + 1 for s in spacing]
    box = tuple(
        slice(max(int(ax.min()) - pd, 0), min(int(ax.max()) + pd + 1, dim))
        for ax, pd, dim in zip(nz, pad, mask.shape, strict=True)
    )
    # distance (mm) from every voxel to the nearest mask voxel; per-axis spacing gives the world
    # distance because the index axes of a CT grid are orthogonal
    dist = ndimage.distance_transform_edt(~mask[box], sampling=spacing)
    out = np.zeros_like(mask)
    out[box] = dist <= margin_mm
    return out


def non_max_suppression(detections: Sequence[Detection], distance_mm: float | None = None) -> list[Detection]:
    """Greedy distance NMS: keep the highest score, drop others whose centre is too close.

    Two detections are duplicates when their centres are closer than ``distance_mm``, or, when
    ``distance_mm`` is None, closer than the sum of their equivalent radii (their equivalent
    spheres overlap: fragments of one nodule, which LUNA16 would otherwise count as false
    positives when they fall outside the nodule radius). ``distance_mm=0`` disables NMS. Returns
    detections sorted by decreasing score.
    """
    ordered = sorted(detections, key=lambda d: -d.score)
    if distance_mm is not None and distance_mm <= 0:
        return ordered
    kept: list[Detection] = []
    for d in ordered:
        c = np.asarray(d.center)
        dup = False
        for k in kept:
            lim = distance_mm if distance_mm is not None else d.radius_mm + k.radius_mm
            if float(np.sum((c - np.asarray(k.center)) ** 2)) < lim * lim:
                dup = True
                break
        if not dup:
            kept.append(d)
    return kept


def detect_candidates(
    prob: np.ndarray,
    image: Image,
    *,
    lung_mask: np.ndarray | Image | None = None,
    threshold: float = 0.5,
    min_diameter_mm: float = 3.0,
    nms_distance_mm: float | None = None,
    lung_margin_mm: float = 5.0,
) -> list[Detection]:
    """Nodule candidates from a nodule probability map.

    Voxels with ``prob >= threshold`` inside the (dilated) lung mask are grouped into
    26-connected components (``scipy.ndimage.label``). Each component becomes a
    :class:`Detection` with a probability-weighted world centre, its volume, equivalent-sphere
    diameter and score = max probability. Components smaller than ``min_diameter_mm``
    (equivalent diameter) are dropped, then duplicates are suppressed by distance
    (:func:`non_max_suppression`).

    Args:
        prob: ``(z, y, x)`` float array in [0, 1] on the grid of ``image``.
        image: the CT the map was predicted on (geometry only; affine index -> LPS mm).
        lung_mask: optional ``(z, y, x)`` mask (array or label Image on the same grid; any
            non-zero voxel is lung). It is dilated by ``lung_margin_mm`` so juxtapleural nodules,
            which a lung mask often leaves out, stay.
        threshold: probability threshold.
        min_diameter_mm: smallest equivalent diameter kept (LUNA16 counts nodules >= 3 mm).
        nms_distance_mm: NMS distance; None = the sum of the two equivalent radii, 0 = off.
        lung_margin_mm: dilation of the lung mask in mm.

    Returns:
        Detections sorted by decreasing score.

    Raises:
        GeometryError: shapes differ or the image is not 3-D.
        InputError: probabilities outside [0, 1] or not finite.
    """
    if image.ndim != 3:
        raise GeometryError(f"candidate detection needs a 3-D CT, got {image.ndim}-D", path=image.source.path)
    p = np.asarray(prob)
    if p.shape != image.shape:
        raise GeometryError(
            f"probability map shape {p.shape} does not match the CT shape {image.shape} (z, y, x)",
            hint="predict on the same grid as the CT (resample the map back first)",
        )
    p = p.astype(np.float32, copy=False)
    if p.size and (not np.all(np.isfinite(p)) or p.min() < 0 or p.max() > 1):
        raise InputError(
            "the probability map must hold finite values in [0, 1]",
            hint="apply softmax/sigmoid and take the nodule channel",
        )
    if not 0 < threshold <= 1:
        raise InputError(f"threshold must be in (0, 1], got {threshold}")
    fg = p >= threshold
    if lung_mask is not None:
        m = lung_mask.array if isinstance(lung_mask, Image) else np.asarray(lung_mask)
        if m.shape != image.shape:
            raise GeometryError(
                f"lung mask shape {m.shape} does not match the CT shape {image.shape} (z, y, x)",
                hint="resample the lung mask onto the CT grid",
            )
        if isinstance(lung_mask, Image) and not lung_mask.same_geometry(image):
            raise GeometryError("the lung mask Image is on another grid than the CT", hint="resample it first")
        fg &= dilate_mask_mm(m != 0, image, lung_margin_mm)
    if not fg.any():
        return []
    # label only the bounding box of the foreground (a full-size label array is 4 bytes a voxel)
    box = tuple(slice(int(ax.min()), int(ax.max()) + 1) for ax in np.nonzero(fg))
    offset = np.array([b.start for b in box], dtype=np.float64)
    labels, n = ndimage.label(fg[box], structure=np.ones((3, 3, 3), dtype=bool))
    pb = p[box]
    idx = np.arange(1, n + 1)
    counts = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    # probability-weighted centroid in array order (z, y, x)
    com = np.asarray(ndimage.center_of_mass(pb, labels, idx), dtype=np.float64).reshape(n, 3) + offset
    maxp = np.asarray(ndimage.maximum(pb, labels, idx), dtype=np.float64).reshape(n)
    meanp = np.asarray(ndimage.mean(pb, labels, idx), dtype=np.float64).reshape(n)
    vvox = image.voxel_volume
    dets: list[Detection] = []
    for j in range(n):
        volume = float(counts[j]) * vvox
        diameter = (6.0 * volume / math.pi) ** (1.0 / 3.0)
        if diameter < min_diameter_mm:
            continue
        cidx = com[j, ::-1]  # (z, y, x) -> index order (x, y, z)
        world = image.index_to_world(cidx)
        dets.append(
            Detection(
                center=(float(world[0]), float(world[1]), float(world[2])),
                center_index=(float(cidx[0]), float(cidx[1]), float(cidx[2])),
                diameter_mm=diameter,
                volume_mm3=volume,
                score=float(maxp[j]),
                mean_probability=float(meanp[j]),
                n_voxels=int(counts[j]),
            )
        )
    out = non_max_suppression(dets, nms_distance_mm)
    log.info("%d components, %d >= %.1f mm, %d after NMS", n, len(dets), min_diameter_mm, len(out))
    return out


def write_candidates_csv(
    path: str | PathLike[str],
    seriesuid: str | dict[str, Sequence[Detection]],
    detections: Sequence[Detection] | None = None,
) -> Path:
    """Write candidates in the LUNA16 submission format (``seriesuid,coordX,coordY,coordZ,probability``).

    ``write_candidates_csv(path, uid, detections)`` writes one scan; ``write_candidates_csv(path,
    {uid: detections, ...})`` writes several. Coordinates are world mm (LPS), probability = the
    detection score. The file is written atomically.
    """
    if isinstance(seriesuid, dict):
        if detections is not None:
            raise InputError("pass either a seriesuid and detections, or one {seriesuid: detections} mapping")
        per_scan = seriesuid
    else:
        if detections is None:
            raise InputError("detections are missing", hint="write_candidates_csv(path, seriesuid, detections)")
        per_scan = {seriesuid: detections}
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CANDIDATE_COLUMNS)
    for uid, dets in per_scan.items():
        if not uid or "," in uid:
            raise InputError(f"invalid seriesuid {uid!r}")
        for d in dets:
            x, y, z = d.center
            w.writerow([uid, f"{x:.4f}", f"{y:.4f}", f"{z:.4f}", f"{d.score:.6f}"])
    out = Path(path)
    atomic_write_text(out, buf.getvalue())
    return out
