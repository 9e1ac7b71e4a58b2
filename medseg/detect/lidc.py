"""LIDC multi-reader nodules: match readers' annotations, agreement, consensus masks, LUNA16 list.

LIDC has no nodule identity across its (up to four) readers. :func:`match_nodules` groups the
annotations the way pylidc's ``cluster_annotations`` does: two annotations are the same nodule when
their outlines (or point marks) come within ``tolerance_mm`` of each other (3-D, mm), taken
transitively. Each group (:class:`MatchedNodule`) gives the reader count, every reader's filled
outline, pairwise outline Dice, the mean centroid and the mean volume-equivalent diameter.

* :func:`consensus_mask` / :func:`consensus_label_map`: voxels outlined by at least ``level``
  (default 50 %) of the readers who outlined the nodule, on a CT grid: training targets from the
  readers' outlines instead of spheres;
* :func:`luna16_list`: nodules outlined by >= 3 readers with diameter >= 3 mm, as LUNA16 rows
  (centre = mean of the readers' centroids, diameter = mean of their volume-equivalent diameters;
  LUNA16 averaged the readers' positions and diameters in the same way).

Outline volumes use the CT's slice spacing; positions use the CT's in-plane geometry and the XML's
``imageZposition`` (see :func:`medseg.io.lidc.roi_points_mm`), so the CT may hold only some of the
series' slices (outlines on missing slices still count for matching, centroids and Dice).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np

from medseg.detect.targets import NoduleAnnotation
from medseg.errors import GeometryError, InputError
from medseg.image import Image
from medseg.io.lidc import LidcNodule, LidcRead, fill_roi, roi_points_mm

__all__ = [
    "ReaderMark",
    "MatchedNodule",
    "match_nodules",
    "consensus_mask",
    "consensus_label_map",
    "luna16_list",
    "nodule_table",
]


@dataclass(frozen=True, eq=False)
class ReaderMark:
    """One reader's annotation of a nodule, filled on the CT's in-plane grid.

    Attributes:
        nodule: the XML annotation.
        slices: ``z_mm -> (rows, cols)`` bool mask (outline interior + boundary, holes cut).
        centroid_mm: ``(x, y, z)`` LPS mm, mean of the filled voxels (the point for point marks).
        volume_mm3: filled voxels x pixel area x slice spacing (0 for point marks).
    """

    nodule: LidcNodule
    slices: dict[float, np.ndarray]
    centroid_mm: np.ndarray
    volume_mm3: float

    @property
    def reader(self) -> int:
        return self.nodule.reader

    @property
    def is_point_mark(self) -> bool:
        return self.nodule.is_point_mark

    @property
    def diameter_mm(self) -> float:
        """Volume-equivalent sphere diameter (NaN for point marks)."""
        return (6.0 * self.volume_mm3 / math.pi) ** (1.0 / 3.0) if self.volume_mm3 > 0 else float("nan")


@dataclass(frozen=True, eq=False)
class MatchedNodule:
    """The annotations of several readers that are the same nodule."""

    index: int
    marks: tuple[ReaderMark, ...]

    @property
    def readers(self) -> list[int]:
        return sorted({m.reader for m in self.marks})

    @property
    def n_readers(self) -> int:
        return len(self.readers)

    @property
    def outlined(self) -> list[ReaderMark]:
        """The readers' outlines (point marks left out)."""
        return [m for m in self.marks if not m.is_point_mark]

    @property
    def n_outlined(self) -> int:
        return len({m.reader for m in self.outlined})

    @property
    def is_small(self) -> bool:
        """True when every reader gave a point mark (LIDC "nodule < 3 mm")."""
        return not self.outlined

    @property
    def centroid_mm(self) -> np.ndarray:
        """Mean of the readers' centroids (outlines when any reader outlined, else the points)."""
        marks = self.outlined or list(self.marks)
        return np.mean([m.centroid_mm for m in marks], axis=0)

    @property
    def diameter_mm(self) -> float:
        """Mean volume-equivalent diameter over the outlining readers (NaN when none outlined)."""
        d = [m.diameter_mm for m in self.outlined]
        return float(np.mean(d)) if d else float("nan")

    def reader_slices(self, reader: int) -> dict[float, np.ndarray]:
        """One reader's outlines of this nodule, merged (a reader may split a nodule)."""
        out: dict[float, np.ndarray] = {}
        for m in self.outlined:
            if m.reader == reader:
                for z, s in m.slices.items():
                    out[z] = out[z] | s if z in out else s.copy()
        return out

    def pairwise_dice(self) -> dict[tuple[int, int], float]:
        """Outline Dice of every pair of outlining readers (3-D, over all their slices)."""
        readers = sorted({m.reader for m in self.outlined})
        masks = {r: self.reader_slices(r) for r in readers}
        out = {}
        for a, b in combinations(readers, 2):
            inter = sum(int((masks[a][z] & masks[b][z]).sum()) for z in set(masks[a]) & set(masks[b]))
            total = sum(int(s.sum()) for s in masks[a].values()) + sum(int(s.sum()) for s in masks[b].values())
            out[(a, b)] = 2.0 * inter / total if total else float("nan")
        return out


def _mark(nodule: LidcNodule, ct: Image) -> ReaderMark:
    rows, cols = ct.shape[1:]
    if nodule.is_point_mark:
        roi = nodule.rois[0]
        mask = np.zeros((rows, cols), dtype=bool)
        c, r = (int(v) for v in roi.points[0])
        if 0 <= r < rows and 0 <= c < cols:
            mask[r, c] = True
        return ReaderMark(nodule, {roi.z_mm: mask}, roi_points_mm(roi.points, roi.z_mm, ct.affine)[0], 0.0)
    slices: dict[float, np.ndarray] = {}
    for roi in nodule.rois:  # inclusions first, then cut the exclusions (their boundary stays)
        if roi.inclusion:
            filled = fill_roi(roi, (rows, cols))
            slices[roi.z_mm] = slices[roi.z_mm] | filled if roi.z_mm in slices else filled
    for roi in nodule.rois:
        if not roi.inclusion and roi.z_mm in slices:
            hole = fill_roi(roi, (rows, cols))
            edge = np.zeros_like(hole)
            pts = roi.points[(roi.points[:, 1] < rows) & (roi.points[:, 0] < cols)]
            edge[pts[:, 1], pts[:, 0]] = True
            slices[roi.z_mm] &= ~(hole & ~edge)
    pts_mm, n = [], 0
    for z, s in slices.items():
        rr, cc = np.nonzero(s)
        if len(rr):
            pts_mm.append(roi_points_mm(np.stack([cc, rr], 1), z, ct.affine))
            n += len(rr)
    if not n:
        raise InputError(f"reader {nodule.reader}'s nodule {nodule.nodule_id} has an empty outline",
                         path="lidc xml")
    sx, sy, sz = ct.spacing
    centroid = np.concatenate(pts_mm).mean(axis=0)
    return ReaderMark(nodule, slices, centroid, n * sx * sy * sz)


def _boundary_mm(nodule: LidcNodule, ct: Image) -> np.ndarray:
    return np.concatenate([roi_points_mm(r.points, r.z_mm, ct.affine) for r in nodule.rois if r.inclusion]
                          or [roi_points_mm(nodule.rois[0].points, nodule.rois[0].z_mm, ct.affine)])


def match_nodules(read: LidcRead, ct: Image, *, tolerance_mm: float | None = None) -> list[MatchedNodule]:
    """Group the readers' nodule annotations into nodules (see the module docstring).

    Args:
        read: the LIDC XML (:func:`medseg.io.lidc.read_lidc_xml`).
        ct: the CT (or some of its slices): in-plane grid and geometry, slice spacing.
        tolerance_mm: two annotations are one nodule when their outline points come this close;
            default twice the in-plane pixel spacing (readers' point marks of one < 3 mm nodule
            lie 1-2 pixels apart).

    Returns:
        nodules, most readers first, then by z (superior first).
    """
    from scipy.spatial import cKDTree

    if ct.ndim != 3:
        raise GeometryError(f"LIDC nodules need the 3-D CT, got shape {ct.shape}", path=ct.source.path or "ct")
    if read.series_uid and ct.source.series_instance_uid and read.series_uid != ct.source.series_instance_uid:
        raise InputError(f"the XML is for series {read.series_uid}, the CT is {ct.source.series_instance_uid}",
                         path=read.path, hint="pass the XML of this series")
    tol = float(tolerance_mm) if tolerance_mm is not None else 2.0 * max(ct.spacing[:2])
    nodules = read.nodules
    trees = [cKDTree(_boundary_mm(n, ct)) for n in nodules]
    parent = list(range(len(nodules)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in combinations(range(len(nodules)), 2):
        if nodules[i].reader == nodules[j].reader:
            continue  # one reader's two annotations are two nodules
        d, _ = trees[j].query(trees[i].data, k=1, distance_upper_bound=tol + 1e-9)
        if np.isfinite(d).any():
            parent[find(i)] = find(j)
    groups: dict[int, list[int]] = {}
    for i in range(len(nodules)):
        groups.setdefault(find(i), []).append(i)
    marks = [_mark(n, ct) for n in nodules]
    out = [tuple(marks[i] for i in sorted(g, key=lambda k: (nodules[k].reader, k))) for g in groups.values()]
    out.sort(key=lambda ms: (-len({m.reader for m in ms}), -float(np.mean([m.centroid_mm[2] for m in ms]))))
    return [MatchedNodule(i, ms) for i, ms in enumerate(out)]


def consensus_mask(nodule: MatchedNodule, ct: Image, *, level: float = 0.5, atol_mm: float = 0.1) -> np.ndarray:
    """``(z, y, x)`` bool: voxels outlined by >= ``level`` of the readers who outlined ``nodule``.

    Slices of the outlines the CT does not hold are left out (matched by z within ``atol_mm``).
    Empty for point-mark-only nodules.
    """
    if not 0.0 < level <= 1.0:
        raise InputError(f"consensus level must be in (0, 1], got {level}", path="level")
    out = np.zeros(ct.shape, dtype=bool)
    readers = sorted({m.reader for m in nodule.outlined})
    if not readers:
        return out
    z_of_slice = np.asarray([float(ct.index_to_world([0, 0, k])[2]) for k in range(ct.shape[0])])
    need = math.ceil(level * len(readers) - 1e-9)
    per_reader = [nodule.reader_slices(r) for r in readers]
    for z in sorted(set().union(*per_reader)):
        k = int(np.argmin(np.abs(z_of_slice - z)))
        if abs(z_of_slice[k] - z) > atol_mm:
            continue
        count = sum(s[z].astype(np.int32) for s in per_reader if z in s)
        out[k] |= np.asarray(count) >= need
    return out


def consensus_label_map(
    nodules: Sequence[MatchedNodule], ct: Image, *, level: float = 0.5, min_readers: int = 1
) -> Image:
    """Label map (1 = nodule) of the consensus outlines of every nodule outlined by >= ``min_readers``."""
    arr = np.zeros(ct.shape, dtype=np.uint8)
    for n in nodules:
        if n.n_outlined >= min_readers:
            arr[consensus_mask(n, ct, level=level)] = 1
    return Image(arr, ct.affine, "label", ct.modality, ct.source)


def luna16_list(
    nodules: Sequence[MatchedNodule], series_uid: str, *, min_readers: int = 3, min_diameter_mm: float = 3.0
) -> list[NoduleAnnotation]:
    """LUNA16-style reference rows: nodules outlined by >= ``min_readers`` with diameter >= 3 mm."""
    out = []
    for n in nodules:
        if n.n_outlined >= min_readers and n.diameter_mm >= min_diameter_mm:
            c = n.centroid_mm
            out.append(NoduleAnnotation(series_uid, (float(c[0]), float(c[1]), float(c[2])), float(n.diameter_mm)))
    return out


def nodule_table(nodules: Sequence[MatchedNodule]) -> list[dict[str, object]]:
    """One row per nodule: readers, point marks, centroid, diameter, pairwise Dice (mean, min)."""
    rows = []
    for n in nodules:
        dice = list(n.pairwise_dice().values())
        c = n.centroid_mm
        rows.append({
            "nodule": n.index, "n_readers": n.n_readers, "n_outlined": n.n_outlined,
            "readers": " ".join(map(str, n.readers)), "point_marks": sum(m.is_point_mark for m in n.marks),
            "x_mm": round(float(c[0]), 2), "y_mm": round(float(c[1]), 2), "z_mm": round(float(c[2]), 2),
            "diameter_mm": round(n.diameter_mm, 2) if n.outlined else "",
            "dice_mean": round(float(np.mean(dice)), 3) if dice else "",
            "dice_min": round(float(np.min(dice)), 3) if dice else "",
            "malignancy": " ".join(str(m.nodule.malignancy) for m in n.outlined if m.nodule.malignancy),
        })
    return rows
