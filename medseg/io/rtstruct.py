"""DICOM RT Structure Sets (RTSTRUCT) as a label source: rasterise ROI contours onto a CT grid.

An RTSTRUCT stores each ROI as planar polygons (``CLOSED_PLANAR`` contours) in patient
coordinates (LPS millimetres). :func:`read_rtstruct` maps every contour point to the index space
of a reference CT :class:`~medseg.image.Image` with ``reference.world_to_index``, picks the slice
the contour lies on, and fills the polygon on that slice. Several contours of one ROI on one slice
are combined with XOR (even-odd rule, the RT convention: an inner contour cuts a hole, disjoint
contours add islands).

Hand-written because ``rt-utils`` (not a dependency) needs the DICOM CT series on disk to build
its grid; medseg often only has a NIfTI CT plus a slice table (``slices.csv``), and an
:class:`Image` already carries the exact geometry. Polygons are filled with :func:`fill_polygon`
(pixel centres inside or on the outline, the ``skimage.draw.polygon`` rule) by a vectorised
scan-line fill.

Clinical exports sometimes repeat a contour on a slice (the LUNG1-002 planning export has up to
25 copies of one ``Lung L`` outline). A naive XOR erases such a slice when the number of copies
is even, so contours whose filled pixels match an already kept contour of the ROI on that slice
(intersection over union >= :data:`DUPLICATE_IOU`) are ignored, with a warning.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from medseg.errors import DicomInputError, GeometryError, InputError
from medseg.image import Image, ImageSource
from medseg.structures import parse_structure

if TYPE_CHECKING:  # pragma: no cover
    from pydicom import Dataset

__all__ = [
    "RoiInfo",
    "list_rois",
    "read_rtstruct",
    "canonical_roi_name",
    "read_slice_uids",
    "fill_polygon",
]

log = logging.getLogger(__name__)

RTSTRUCT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.481.3"

@dataclass(frozen=True)
class RoiInfo:
    """One ROI of a structure set.

    Attributes:
        number: ROI Number (3006,0022).
        name: ROI Name as stored (3006,0026).
        canonical: :func:`canonical_roi_name` of ``name`` (e.g. ``"left lung"`` for ``"Lung L"``).
        geometric_types: contour geometric types present (``"CLOSED_PLANAR"``, ``"POINT"``, ...).
        n_contours: number of contours.
        color: ROI Display Color (R, G, B) or ``None``.
    """

    number: int
    name: str
    canonical: str
    geometric_types: tuple[str, ...]
    n_contours: int
    color: tuple[int, int, int] | None


def canonical_roi_name(name: str) -> str:
    """The medseg structure name of an ROI name (``"Lung-Left"``, ``"LUNG_L"``, ``"Lt Lung"`` ->
    ``"left lung"``); decided by :func:`medseg.structures.parse_structure`, as everywhere else."""
    return parse_structure(name).name


def _read_dataset(path: Path) -> Dataset:
    import pydicom
    from pydicom.errors import InvalidDicomError

    if not path.is_file():
        raise DicomInputError("RT Structure Set file not found", path=path, hint="check the path")
    try:
        ds = pydicom.dcmread(path)
    except InvalidDicomError as e:
        raise DicomInputError(
            f"not a DICOM file ({e})", path=path, hint="pass the RTSTRUCT .dcm exported with the CT"
        ) from e
    except Exception as e:  # truncated / corrupt files raise assorted errors in pydicom
        raise DicomInputError(f"cannot read DICOM file: {e}", path=path) from e
    sop_class = str(getattr(ds, "SOPClassUID", ""))
    modality = str(getattr(ds, "Modality", ""))
    if sop_class != RTSTRUCT_SOP_CLASS and modality != "RTSTRUCT":
        raise DicomInputError(
            f"not an RT Structure Set (Modality {modality or 'missing'}, SOP Class {sop_class or 'missing'})",
            path=path,
            hint="pass the RTSTRUCT file (Modality RTSTRUCT), not an image or SEG",
        )
    if "StructureSetROISequence" not in ds or "ROIContourSequence" not in ds:
        raise DicomInputError(
            "RT Structure Set without StructureSetROISequence/ROIContourSequence",
            path=path,
            hint="the file is incomplete; export the structure set again",
        )
    return ds


def _rois(ds: Dataset, path: Path) -> list[tuple[RoiInfo, list[Dataset]]]:
    contours_by_number: dict[int, Dataset] = {}
    for rc in ds.ROIContourSequence:
        contours_by_number[int(rc.ReferencedROINumber)] = rc
    out = []
    for item in ds.StructureSetROISequence:
        number = int(item.ROINumber)
        name = str(getattr(item, "ROIName", "") or f"ROI {number}")
        rc = contours_by_number.get(number)
        contours = list(rc.get("ContourSequence", [])) if rc is not None else []
        types = tuple(sorted({str(c.get("ContourGeometricType", "")) for c in contours}))
        color: tuple[int, int, int] | None = None
        if rc is not None and "ROIDisplayColor" in rc:
            try:
                r, g, b = (int(v) for v in rc.ROIDisplayColor)
                color = (r, g, b)
            except (TypeError, ValueError):
                color = None
        info = RoiInfo(number, name, canonical_roi_name(name), types, len(contours), color)
        out.append((info, contours))
    return out


def list_rois(path: str | PathLike[str]) -> list[RoiInfo]:
    """The ROIs of an RTSTRUCT file, in StructureSetROISequence order.

    Raises:
        DicomInputError: the file is missing, not DICOM, or not an RT Structure Set.
    """
    p = Path(path)
    return [info for info, _ in _rois(_read_dataset(p), p)]


def read_slice_uids(path: str | PathLike[str]) -> list[str]:
    """SOP Instance UIDs per slice index from a ``slices.csv`` table.

    The table needs columns ``index_k`` (slice index of the NIfTI, 0-based) and
    ``sop_instance_uid``; returns the UIDs ordered by ``index_k`` (for ``slice_uids=`` of
    :func:`read_rtstruct` when the CT is a NIfTI converted from the original series).
    """
    p = Path(path)
    try:
        with p.open(newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as e:
        raise InputError(f"cannot read slice table: {e}", path=p) from e
    if not rows or "index_k" not in rows[0] or "sop_instance_uid" not in rows[0]:
        raise InputError(
            "slice table needs columns index_k and sop_instance_uid",
            path=p,
            hint="use the slices.csv of the CT",
        )
    try:
        by_k = {int(r["index_k"]): r["sop_instance_uid"].strip() for r in rows}
    except ValueError as e:
        raise InputError(f"index_k must be integers ({e})", path=p) from e
    if sorted(by_k) != list(range(len(by_k))):
        raise InputError("index_k must run 0..n-1 without gaps or duplicates", path=p)
    return [by_k[k] for k in range(len(by_k))]


def _label_name(info: RoiInfo) -> str:
    """Known structures get their canonical name; other ROIs keep their name as stored."""
    s = parse_structure(info.name)
    return s.name if s.concept.type.meaning != "Tissue" else info.name


def fill_polygon(rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Pixels ``(rr, cc)`` of a ``shape`` = ``(ny, nx)`` grid whose centres lie inside or on a polygon.

    ``rows``/``cols`` are the vertices in continuous pixel coordinates (row = y index, col = x
    index; pixel centres at integers). Even-odd rule per polygon (a self-intersecting outline
    alternates inside/outside). Same pixels as ``skimage.draw.polygon`` except for degenerate
    outlines that pass exactly through pixel centres. Hand-written scan-line fill because
    skimage tests every pixel of the bounding box against every edge: 10 s for one patient's
    body contour, against ~0.3 s here (and scikit-image is only a test dependency).
    """
    ny, nx = shape
    y = np.asarray(rows, dtype=np.float64)
    x = np.asarray(cols, dtype=np.float64)
    y0, x0 = y, x
    y1, x1 = np.roll(y, -1), np.roll(x, -1)
    r_lo = max(int(np.ceil(y.min())), 0)
    r_hi = min(int(np.floor(y.max())), ny - 1)
    if r_hi < r_lo:
        return np.zeros(0, np.intp), np.zeros(0, np.intp)
    r = np.arange(r_lo, r_hi + 1, dtype=np.float64)[:, None]  # (R, 1)
    crosses = (y0[None, :] > r) != (y1[None, :] > r)  # (R, E)
    with np.errstate(divide="ignore", invalid="ignore"):
        xi = x0[None, :] + (r - y0[None, :]) * (x1 - x0)[None, :] / (y1 - y0)[None, :]
    xi = np.where(crosses, xi, np.inf)
    xi.sort(axis=1)
    n = crosses.sum(axis=1)
    kmax = int(n.max()) if n.size else 0
    xi = xi[:, :kmax]
    starts = np.ceil(xi[:, 0::2])
    ends = np.floor(xi[:, 1::2]) + 1
    valid = np.isfinite(ends)
    starts = np.clip(starts, 0, nx)
    ends = np.clip(ends, 0, nx)
    rows_idx = np.broadcast_to(np.arange(len(r))[:, None], starts.shape)
    sel = valid & (ends > starts)
    diff = np.zeros((len(r), nx + 1), np.int32)
    np.add.at(diff, (rows_idx[sel], starts[sel].astype(np.intp)), 1)
    np.add.at(diff, (rows_idx[sel], ends[sel].astype(np.intp)), -1)
    inside = np.cumsum(diff[:, :nx], axis=1) > 0
    # centres exactly on a horizontal edge count as inside (as in skimage)
    flat = (y0 == y1) & (y0 == np.round(y0)) & (y0 >= r_lo) & (y0 <= r_hi)
    for e in np.flatnonzero(flat):
        c0 = max(int(np.ceil(min(x0[e], x1[e]))), 0)
        c1 = min(int(np.floor(max(x0[e], x1[e]))), nx - 1)
        if c1 >= c0:
            inside[int(y0[e]) - r_lo, c0 : c1 + 1] = True
    rr, cc = np.nonzero(inside)
    return rr + r_lo, cc


#: two contours on one slice whose filled pixels overlap at least this much (intersection over
#: union) are one polygon exported twice, not an outline and a hole (a hole that close to its outline
#: would leave a ring under two pixels wide).
DUPLICATE_IOU = 0.98


def _is_duplicate(pixels: np.ndarray, kept: list[np.ndarray]) -> bool:
    """True when the sorted flat pixel set ``pixels`` nearly equals one of ``kept``."""
    n = len(pixels)
    for other in kept:
        m = len(other)
        if n == 0 or m == 0:
            if n == m:
                return True
            continue
        if min(n, m) < DUPLICATE_IOU * max(n, m):
            continue
        inter = len(np.intersect1d(pixels, other, assume_unique=True))
        if inter >= DUPLICATE_IOU * (n + m - inter):
            return True
    return False


def _contour_points(contour: Dataset) -> np.ndarray:
    """ContourData as an ``(n, 3)`` float array of LPS mm points."""
    from pydicom.dataelem import RawDataElement

    elem = contour.get_item(0x30060050)  # ContourData
    if elem is None:
        return np.zeros((0, 3))
    if isinstance(elem, RawDataElement) and elem.value is not None:
        # parse the DS string directly: pydicom's per-value DSfloat validation dominates otherwise
        try:
            return np.array(elem.value.split(b"\\"), dtype=np.float64).reshape(-1, 3)
        except ValueError:
            pass
    return np.asarray(contour.ContourData, dtype=np.float64).reshape(-1, 3)


def _select(
    rois: list[tuple[RoiInfo, list[Dataset]]],
    wanted: Sequence[str] | Mapping[str, int] | None,
    path: Path,
) -> list[tuple[int, str, RoiInfo, list[Dataset]]]:
    """(label value, label name, roi, contours) for each ROI to rasterise, in painting order."""
    closed = [(i, c) for i, c in rois if "CLOSED_PLANAR" in i.geometric_types]
    if wanted is None:
        return [(v, _label_name(info), info, c) for v, (info, c) in enumerate(closed, start=1)]
    if isinstance(wanted, Mapping):
        items = [(str(k), int(v)) for k, v in wanted.items()]
    else:
        if isinstance(wanted, str):
            raise InputError("rois must be a list of names or a {name: value} mapping, not a string")
        items = [(str(k), v) for v, k in enumerate(wanted, start=1)]
    available = ", ".join(repr(i.name) for i, _ in rois)
    out = []
    for name, value in items:
        if not 0 < value < 65536:
            raise InputError(f"label value for ROI {name!r} must be in 1..65535, got {value}")
        target = canonical_roi_name(name)
        # an exact (case-insensitive) ROI name wins over the spelling-tolerant match
        matches = [(i, c) for i, c in rois if i.name.strip().lower() == name.strip().lower()]
        if not matches:
            matches = [(i, c) for i, c in rois if i.canonical == target]
        if not matches:
            raise InputError(
                f"no ROI named {name!r} in the structure set", path=path, hint=f"choose one of {available}"
            )
        if len(matches) > 1:
            names = ", ".join(repr(i.name) for i, _ in matches)
            raise InputError(
                f"ROI name {name!r} is ambiguous: it matches {names}",
                path=path,
                hint="pass the exact ROI name of one of them",
            )
        info, contours = matches[0]
        if "CLOSED_PLANAR" not in info.geometric_types:
            raise InputError(
                f"ROI {info.name!r} has no CLOSED_PLANAR contours (types: {', '.join(info.geometric_types) or 'none'})",
                path=path,
                hint="only closed planar contours can be rasterised into a label map",
            )
        out.append((value, name, info, contours))
    values = [v for v, *_ in out]
    if len(set(values)) != len(values):
        raise InputError(f"label values must be unique, got {values}")
    return out


def _check_series(
    ds: Dataset, reference: Image, slice_uids: Sequence[str] | None, path: Path
) -> dict[str, int]:
    """Compare frame of reference / referenced images with the reference; UID -> slice index."""
    ref_for = reference.source.frame_of_reference_uid
    rt_fors = {str(item.FrameOfReferenceUID) for item in ds.get("ReferencedFrameOfReferenceSequence", [])}
    if ref_for and rt_fors and ref_for not in rt_fors:
        raise GeometryError(
            f"the structure set is drawn in frame of reference {sorted(rt_fors)}, the reference CT is in {ref_for}",
            path=path,
            hint="pass the CT series the structure set was drawn on",
        )
    if slice_uids is None:
        return {}
    if len(slice_uids) != reference.shape[0]:
        raise GeometryError(
            f"slice_uids has {len(slice_uids)} entries but the reference has {reference.shape[0]} slices",
            path=path,
            hint="give one SOP Instance UID per slice, in slice-index order",
        )
    uid_to_k = {str(u): k for k, u in enumerate(slice_uids)}
    listed: set[str] = set()
    for fr in ds.get("ReferencedFrameOfReferenceSequence", []):
        for st in fr.get("RTReferencedStudySequence", []):
            for se in st.get("RTReferencedSeriesSequence", []):
                listed.update(str(ci.ReferencedSOPInstanceUID) for ci in se.get("ContourImageSequence", []))
    if listed and not listed & set(uid_to_k):
        raise GeometryError(
            f"the structure set references {len(listed)} images, none of them a slice of the reference",
            path=path,
            hint="pass the CT series the structure set was drawn on (or slice_uids=None to match by z only)",
        )
    return uid_to_k


def read_rtstruct(
    path: str | PathLike[str],
    reference: Image,
    *,
    rois: Sequence[str] | Mapping[str, int] | None = None,
    slice_uids: Sequence[str] | None = None,
    z_tolerance_mm: float | None = None,
) -> tuple[Image, dict[int, str]]:
    """Rasterise RTSTRUCT ROI contours onto the grid of a reference CT.

    Args:
        path: the RT Structure Set file.
        reference: the CT the contours were drawn on (3-D, array ``(z, y, x)``, affine to LPS mm).
            Any orientation works: points go through ``reference.world_to_index``; each contour
            must lie on one slice (index ``k``) of the reference.
        rois: which ROIs and their label values. A list of names gets values 1, 2, ... in list
            order; a mapping gives ``{name: value}``. Names match case-insensitively through
            :func:`canonical_roi_name`, so ``"left lung"`` finds ``"Lung L"``/``"Lung-Left"``;
            an exact ROI name (any case) is preferred when several ROIs would match.
            ``None``: every ROI that has ``CLOSED_PLANAR`` contours, values 1..n in file order.
            Where ROIs overlap, the later one in this order wins (logged).
        slice_uids: optional SOP Instance UID of each reference slice (index ``k`` order), e.g.
            from :func:`read_slice_uids`. Defaults to ``reference.source.sop_instance_uids`` for a
            DICOM reference. Used to check the structure set refers to this series and, where a
            contour names its image, that the image is the slice its z falls on.
        z_tolerance_mm: how far (mm, along the slice normal) a contour may lie from the slice it
            is put on. Default: half the slice spacing, i.e. every contour inside the volume
            lands on its nearest slice. A structure set drawn on the same series matches to
            ~0.01 mm, so a small value (e.g. 0.1) catches one drawn on another series.

    Returns:
        ``(label, names)``: a ``kind="label"`` :class:`Image` on the reference grid (uint8, or
        uint16 for values > 255; 0 = background) and ``{value: name}`` (the requested name; with
        ``rois=None`` the medseg structure name for lungs/heart/trachea, else the ROI name).

    Raises:
        DicomInputError: missing file, not DICOM, not an RTSTRUCT.
        GeometryError: a contour lies off every slice (beyond the volume, or farther than
            ``z_tolerance_mm`` from the nearest slice), is not planar in the reference's slice
            direction, or the structure set belongs to another series / frame of reference.
        InputError: a requested ROI is missing, ambiguous or has no closed contours.
    """
    p = Path(path)
    if reference.ndim != 3:
        raise GeometryError(
            f"the reference must be a 3-D CT volume, got shape {reference.shape}",
            hint="read the whole CT series or NIfTI as the reference",
        )
    ds = _read_dataset(p)
    selected = _select(_rois(ds, p), rois, p)
    if slice_uids is None and reference.source.is_dicom:
        slice_uids = reference.source.sop_instance_uids
    uid_to_k = _check_series(ds, reference, slice_uids, p)

    nz, ny, nx = reference.shape
    max_value = max((v for v, *_ in selected), default=0)
    out = np.zeros(reference.shape, dtype=np.uint8 if max_value <= 255 else np.uint16)
    names: dict[int, str] = {}
    slice_mm = reference.spacing[2]
    tolerance = slice_mm / 2 if z_tolerance_mm is None else float(z_tolerance_mm)
    for value, name, info, contours in selected:
        # per-slice masks: a full-volume mask per ROI would cost a 3-D pass for a few slices
        planes: dict[int, np.ndarray] = {}
        filled: dict[int, list[np.ndarray]] = {}  # sorted flat pixel indices of kept contours per slice
        n_duplicates = 0
        for c in contours:
            if str(c.get("ContourGeometricType", "")) != "CLOSED_PLANAR":
                continue
            pts = _contour_points(c)
            if len(pts) < 3:
                log.debug("ROI %s: skipping a contour with %d points", info.name, len(pts))
                continue
            idx = reference.world_to_index(pts)  # (n, 3) continuous (x, y, k)
            k = int(round(float(idx[:, 2].mean())))
            z_mm = float(pts[:, 2].mean())
            if not 0 <= k < nz:
                raise GeometryError(
                    f"ROI {info.name!r}: contour at z = {z_mm:.2f} mm lies outside the reference volume"
                    f" (slices k = 0..{nz - 1}, {slice_mm:.2f} mm apart)",
                    path=p,
                    hint="pass the CT series the structure set was drawn on (same slices, same frame of reference)",
                )
            off_mm = float(np.abs(idx[:, 2] - k).max()) * slice_mm
            if off_mm >= tolerance:
                raise GeometryError(
                    f"ROI {info.name!r}: contour at z = {z_mm:.2f} mm is {off_mm:.2f} mm off slice {k}"
                    f" (tolerance {tolerance:.2f} mm, slice spacing {slice_mm:.2f} mm)",
                    path=p,
                    hint="pass the CT series the structure set was drawn on (same slices, same frame of reference)",
                )
            if uid_to_k:
                for ci in c.get("ContourImageSequence", []):
                    ref_k = uid_to_k.get(str(ci.ReferencedSOPInstanceUID))
                    if ref_k is not None and ref_k != k:
                        raise GeometryError(
                            f"ROI {info.name!r}: contour at z = {z_mm:.2f} mm falls on slice {k}"
                            f" but references the image of slice {ref_k}",
                            path=p,
                            hint="slice_uids must be in the reference's slice order",
                        )
            rr, cc = fill_polygon(idx[:, 1], idx[:, 0], shape=(ny, nx))
            pixels = np.sort(rr.astype(np.int64) * nx + cc)
            if _is_duplicate(pixels, filled.setdefault(k, [])):
                n_duplicates += 1
                continue
            filled[k].append(pixels)
            plane = planes.setdefault(k, np.zeros((ny, nx), dtype=bool))
            # XOR: even-odd rule, so nested contours cut holes and disjoint ones add islands.
            plane[rr, cc] ^= True
        if n_duplicates:
            log.warning(
                "ROI %s: ignored %d duplicated contours (same polygon repeated on a slice;"
                " XOR would erase the slice for an even number of copies)",
                info.name,
                n_duplicates,
            )
        overlap = 0
        for k, plane in planes.items():
            overlap += int(np.count_nonzero(out[k][plane]))
            out[k][plane] = value
        if overlap:
            # nested structures (GTV in lung, lung in "Patient") overlap by design when all ROIs are read
            log.log(
                logging.WARNING if rois is not None else logging.INFO,
                "ROI %s overwrites %d voxels of earlier ROIs",
                info.name,
                overlap,
            )
        names[value] = name
        log.debug("ROI %s -> %d: %d slices", info.name, value, len(planes))

    source = ImageSource(path=p, format="rtstruct")
    label = Image(out, reference.affine, kind="label", modality="RTSTRUCT", source=source)
    return label, names
