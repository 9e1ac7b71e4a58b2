"""Nodule reference annotations (LUNA16 / LIDC CSV files) and spherical nodule masks.

Coordinates are world millimetres in the DICOM patient frame (**LPS**, the frame of
ImagePositionPatient), which is the frame of LUNA16's ``annotations.csv`` (its ``.mhd`` offsets are
the DICOM ImagePositionPatient of the first slice). :class:`~medseg.image.Image` uses the same frame,
so annotations map onto any CT grid through ``image.world_to_index`` (any spacing and direction).
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import numpy as np

from medseg.errors import GeometryError, InputError
from medseg.image import Image

__all__ = ["NoduleAnnotation", "read_nodule_annotations", "nodule_mask", "sphere_index_box"]

log = logging.getLogger(__name__)

#: LUNA16 columns (annotations.csv, annotations_excluded.csv)
LUNA16_COLUMNS = ("seriesuid", "coordX", "coordY", "coordZ", "diameter_mm")
#: columns of the XML-derived per-reader table shipped with the LIDC subset (nodules_from_xml.csv)
_XML_COLUMNS = ("center_x_mm", "center_y_mm", "center_z_mm", "equiv_sphere_diameter_mm")


@dataclass(frozen=True)
class NoduleAnnotation:
    """One reference nodule (or one excluded finding).

    Attributes:
        seriesuid: SeriesInstanceUID of the CT the nodule is in.
        center: ``(x, y, z)`` world position in mm, LPS (DICOM patient frame).
        diameter_mm: diameter in mm; LUNA16's excluded findings may hold ``-1`` (unknown), which
            the evaluator treats as 10 mm like the official script.
        reader: for per-reader LIDC tables, the reader (reading session) index; ``None`` otherwise.
    """

    seriesuid: str
    center: tuple[float, float, float]
    diameter_mm: float
    reader: str | None = None

    @property
    def radius_mm(self) -> float:
        return self.diameter_mm / 2.0


def read_csv_table(path: Path, what: str, hint: str) -> tuple[list[str], list[dict[str, str]]]:
    """Header (stripped names) and rows of a CSV file; a missing file is an :class:`InputError`."""
    if not path.is_file():
        raise InputError(f"{what} not found", path=path, hint=hint)
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        fields = [c.strip() for c in (reader.fieldnames or [])]
        reader.fieldnames = fields
        return fields, list(reader)


def csv_float(value: str | None, path: Path, line: int, column: str) -> float:
    """A finite float from a CSV cell, or an :class:`InputError` naming the line and column."""
    try:
        out = float(value) if value is not None else math.nan
    except ValueError:
        out = math.nan
    if not math.isfinite(out):
        raise InputError(
            f"line {line}: column '{column}' must be a finite number, got {value!r}",
            path=path,
            hint="fix or delete that row",
        )
    return out


def read_nodule_annotations(
    path: str | PathLike[str], *, seriesuid: str | None = None
) -> list[NoduleAnnotation]:
    """Read nodule annotations from a CSV file.

    Two layouts are accepted:

    * LUNA16 (``annotations.csv`` / ``annotations_excluded.csv``): columns ``seriesuid, coordX,
      coordY, coordZ, diameter_mm`` (extra columns ignored). ``seriesuid`` filters the rows
      when given.
    * the per-reader table derived from LIDC XML (``nodules_from_xml.csv`` beside the LIDC subset):
      ``reader, center_x_mm, center_y_mm, center_z_mm, equiv_sphere_diameter_mm, is_point_mark``.
      It has no series column, so ``seriesuid`` is required; "nodule < 3 mm" point marks are
      skipped because their diameters are not meaningful.

    Returns:
        annotations in file order; coordinates in world mm (LPS).

    Raises:
        InputError: missing file, missing columns, or a non-numeric value (naming the line).
    """
    p = Path(path)
    fields, rows = read_csv_table(p, "annotation CSV", "pass a LUNA16-style annotations.csv")
    out: list[NoduleAnnotation] = []
    if all(c in fields for c in LUNA16_COLUMNS):
        for i, row in enumerate(rows, start=2):
            uid = (row.get("seriesuid") or "").strip()
            if not uid:
                raise InputError(f"line {i}: empty seriesuid", path=p, hint="fix or delete that row")
            if seriesuid is not None and uid != seriesuid:
                continue
            center = tuple(csv_float(row.get(c), p, i, c) for c in ("coordX", "coordY", "coordZ"))
            d = csv_float(row.get("diameter_mm"), p, i, "diameter_mm")
            out.append(NoduleAnnotation(uid, (center[0], center[1], center[2]), d))
        return out
    if all(c in fields for c in _XML_COLUMNS):
        if seriesuid is None:
            raise InputError(
                "this per-reader LIDC table has no seriesuid column",
                path=p,
                hint="pass seriesuid= (the CT's SeriesInstanceUID)",
            )
        for i, row in enumerate(rows, start=2):
            if (row.get("is_point_mark") or "0").strip() == "1":
                continue
            center = tuple(csv_float(row.get(c), p, i, c) for c in _XML_COLUMNS[:3])
            d = csv_float(row.get("equiv_sphere_diameter_mm"), p, i, "equiv_sphere_diameter_mm")
            out.append(NoduleAnnotation(seriesuid, (center[0], center[1], center[2]), d, row.get("reader")))
        return out
    raise InputError(
        f"not a nodule annotation table: columns {fields}",
        path=p,
        hint="expected LUNA16 columns " + ",".join(LUNA16_COLUMNS),
    )


def sphere_index_box(image: Image, center: Sequence[float], radius_mm: float) -> tuple[slice, slice, slice] | None:
    """Array slices ``(z, y, x)`` of the voxels that can lie within ``radius_mm`` of ``center``.

    Works for any direction/spacing: the half-extent along index axis ``i`` of a world sphere of
    radius r is ``r * ||row i of inverse(A)||`` (A = the 3x3 part of the affine). ``None`` when the
    box misses the grid.
    """
    inv = np.linalg.inv(image.affine[:3, :3])
    c_idx = image.world_to_index(np.asarray(center, dtype=np.float64))
    half = radius_mm * np.linalg.norm(inv, axis=1)
    lo = np.floor(c_idx - half).astype(int)
    hi = np.ceil(c_idx + half).astype(int) + 1
    size = np.asarray(image.size)
    lo = np.maximum(lo, 0)
    hi = np.minimum(hi, size)
    if np.any(hi <= lo):
        return None
    # index order (x, y, z) -> array order (z, y, x)
    return slice(lo[2], hi[2]), slice(lo[1], hi[1]), slice(lo[0], hi[0])


def _box_world(image: Image, box: tuple[slice, slice, slice]) -> np.ndarray:
    """World coordinates ``(nz, ny, nx, 3)`` (LPS mm) of the voxel centres in ``box``."""
    zz, yy, xx = np.meshgrid(
        np.arange(box[0].start, box[0].stop),
        np.arange(box[1].start, box[1].stop),
        np.arange(box[2].start, box[2].stop),
        indexing="ij",
    )
    idx = np.stack([xx, yy, zz], axis=-1).astype(np.float64)
    return image.index_to_world(idx)


def nodule_mask(
    image: Image,
    annotations: Iterable[NoduleAnnotation],
    *,
    seriesuid: str | None = None,
    label: int = 1,
) -> Image:
    """Spherical nodule masks on the grid of ``image``.

    A voxel is set when its centre lies within ``diameter_mm / 2`` of an annotation centre, the
    distance measured in world mm (so anisotropic spacing and oblique or flipped directions are
    handled through the affine).

    Args:
        image: the 3-D CT (array ``(z, y, x)``, affine index ``(x, y, z)`` -> LPS mm).
        annotations: nodules in world mm (LPS).
        seriesuid: keep only annotations of this series. By default the image's own
            SeriesInstanceUID when it came from DICOM, else every annotation is used.
        label: the value written inside the spheres.

    Returns:
        A ``kind="label"`` uint8 Image on the same geometry (0 outside the spheres).

    Raises:
        GeometryError: the image is not 3-D.
    """
    if image.ndim != 3:
        raise GeometryError(
            f"nodule masks need a 3-D CT, got a {image.ndim}-D image",
            path=image.source.path,
            hint="read the whole CT series",
        )
    if not 0 < label < 256:
        raise InputError(f"label must be in 1..255, got {label}")
    uid = seriesuid if seriesuid is not None else image.source.series_instance_uid
    anns = list(annotations)
    if uid is not None:
        kept = [a for a in anns if a.seriesuid == uid]
        if anns and not kept:
            log.warning("none of %d annotations belongs to series %s; the mask is empty", len(anns), uid)
        anns = kept
    mask = np.zeros(image.shape, dtype=np.uint8)
    for a in anns:
        if not a.diameter_mm > 0:
            log.warning("skipping nodule at %s with unknown diameter %s", a.center, a.diameter_mm)
            continue
        box = sphere_index_box(image, a.center, a.radius_mm)
        if box is None:
            log.warning("nodule at %s mm lies outside the image grid", a.center)
            continue
        world = _box_world(image, box)
        inside = np.sum((world - np.asarray(a.center)) ** 2, axis=-1) <= a.radius_mm**2
        mask[box][inside] = label
    return image.with_array(mask, kind="label")
