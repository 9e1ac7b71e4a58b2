"""CVAT for images 1.1 XML: write pre-labels, read corrected annotations.

Hand-written with :mod:`xml.etree.ElementTree` because the format is a small XML schema and the
only Python reader/writer (datumaro, used by the tests to check our files) is a heavy dependency
for two element types. Written per image: ``<polygon label points="x0,y0;x1,y1;...">`` (CVAT's
pixel-corner coordinates, as COCO) or ``<mask label rle left top width height>`` (CVAT's mask RLE:
run lengths over the bounding box in row-major order, starting with a background run, as CVAT
exports and datumaro reads it). Read: polygons, masks and boxes are accepted (boxes filled);
polylines, points, tags, cuboids and skeletons are not areas and are counted in ``meta['skipped']``.
An exported task ``.zip`` (``annotations.xml`` inside) is read as it is.
"""

from __future__ import annotations

import io
import logging
import zipfile
from collections import Counter
from collections.abc import Sequence
from os import PathLike
from pathlib import Path
from xml.etree import ElementTree as ET

import numpy as np

from medseg.colours import label_colour
from medseg.errors import ExportError, InputError
from medseg.io.annotations._model import AnnotatedImage, Region, ShapeMode
from medseg.io.annotations._shapes import mask_has_holes, mask_to_polygons, polygons_to_mask
from medseg.utils import atomic_write_bytes

__all__ = ["write_cvat", "read_cvat", "cvat_rle_encode", "cvat_rle_decode"]

log = logging.getLogger(__name__)

_NOT_AREAS = ("polyline", "points", "tag", "cuboid", "skeleton", "ellipse")


def cvat_rle_encode(mask: np.ndarray) -> tuple[list[int], tuple[int, int, int, int]]:
    """CVAT mask RLE of a ``(y, x)`` mask: (runs, (left, top, width, height) of its bounding box)."""
    m = np.asarray(mask, dtype=bool)
    ys, xs = np.nonzero(m)
    if not len(xs):
        return [], (0, 0, 0, 0)
    left, top, right, bottom = int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())
    flat = m[top: bottom + 1, left: right + 1].reshape(-1)
    change = np.flatnonzero(np.diff(flat.astype(np.int8))) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    runs = np.diff(bounds).tolist()
    if flat[0]:
        runs = [0, *runs]
    return [int(r) for r in runs], (left, top, right - left + 1, bottom - top + 1)


def cvat_rle_decode(runs: Sequence[int], left: int, top: int, width: int, height: int,
                    image_height: int, image_width: int) -> np.ndarray:
    """The ``(image_height, image_width)`` bool mask of a CVAT mask RLE."""
    if sum(runs) != width * height:
        raise ValueError(f"RLE covers {sum(runs)} pixels, the box {width}x{height}")
    values = np.zeros(len(runs), dtype=bool)
    values[1::2] = True
    box = np.repeat(values, np.asarray(runs, dtype=np.int64)).reshape(height, width)
    out = np.zeros((image_height, image_width), dtype=bool)
    out[top: top + height, left: left + width] = box[: max(0, image_height - top), : max(0, image_width - left)]
    return out


def _fmt(v: float) -> str:
    return f"{v:.2f}".rstrip("0").rstrip(".")


def cvat_xml(images: Sequence[AnnotatedImage], labels: Sequence[str], *, shape: ShapeMode = "polygon") -> bytes:
    """The CVAT for images 1.1 document for ``images`` (in order) with ``labels`` (in order)."""
    root = ET.Element("annotations")
    ET.SubElement(root, "version").text = "1.1"
    task = ET.SubElement(ET.SubElement(root, "meta"), "task")
    ET.SubElement(task, "name").text = "medseg pre-labels"
    ET.SubElement(task, "size").text = str(len(images))
    ET.SubElement(task, "mode").text = "annotation"
    xml_labels = ET.SubElement(task, "labels")
    for i, name in enumerate(labels, start=1):
        lab = ET.SubElement(xml_labels, "label")
        ET.SubElement(lab, "name").text = name
        ET.SubElement(lab, "color").text = "#{:02x}{:02x}{:02x}".format(*label_colour(i))
        ET.SubElement(lab, "type").text = "any"
        ET.SubElement(lab, "attributes")
    for idx, img in enumerate(images):
        el = ET.SubElement(root, "image", id=str(idx), name=img.name, width=str(int(img.width)),
                           height=str(int(img.height)))
        for region in img.regions:
            if region.label not in labels:
                raise ExportError(f"region label {region.label!r} is not one of {list(labels)}", path=img.name)
            mask = np.asarray(region.mask, dtype=bool)
            if not mask.any():
                continue
            common = {"label": region.label, "source": "auto" if region.score is not None else "manual",
                      "occluded": "0", "z_order": "0"}
            if shape == "polygon":
                if mask_has_holes(mask):
                    log.info("%s: %s has holes; CVAT polygons fill them (use shape='mask')", img.name, region.label)
                for poly in mask_to_polygons(mask):
                    pts = ";".join(f"{_fmt(x)},{_fmt(y)}" for x, y in poly)
                    ET.SubElement(el, "polygon", {**common, "points": pts})
            else:
                runs, (left, top, w, h) = cvat_rle_encode(mask)
                ET.SubElement(el, "mask", {**common, "rle": ", ".join(map(str, runs)), "left": str(left),
                                           "top": str(top), "width": str(w), "height": str(h)})
    ET.indent(root)
    return b'<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="utf-8") + b"\n"


def write_cvat(
    images: Sequence[AnnotatedImage], labels: Sequence[str], path: str | PathLike[str], *, shape: ShapeMode = "polygon"
) -> Path:
    """Write ``annotations.xml`` in CVAT for images 1.1 (atomically); returns ``path``."""
    out = Path(path)
    atomic_write_bytes(out, cvat_xml(images, labels, shape=shape))
    return out


def _load_xml(p: Path) -> ET.Element:
    if not p.is_file():
        raise InputError("CVAT file not found", path=p, hint="pass annotations.xml or the exported .zip")
    try:
        if zipfile.is_zipfile(p):
            with zipfile.ZipFile(p) as zf:
                names = [n for n in zf.namelist() if n.rsplit("/", 1)[-1] == "annotations.xml"]
                if not names:
                    raise InputError("the zip has no annotations.xml", path=p,
                                     hint="export the task as 'CVAT for images 1.1'")
                data = zf.read(names[0])
            return ET.parse(io.BytesIO(data)).getroot()
        return ET.parse(p).getroot()
    except ET.ParseError as e:
        raise InputError(f"not an XML file ({e})", path=p) from e


def read_cvat(path: str | PathLike[str]) -> list[AnnotatedImage]:
    """Read a CVAT for images 1.1 export (``annotations.xml`` or the task ``.zip``)."""
    p = Path(path)
    root = _load_xml(p)
    if root.tag != "annotations":
        raise InputError(f"root element is <{root.tag}>, not <annotations>", path=p,
                         hint="export the task as 'CVAT for images 1.1' (not 'CVAT for video')")
    if root.find("track") is not None:
        raise InputError("this is a 'CVAT for video' export (tracks)", path=p, hint="export 'CVAT for images 1.1'")
    out = []
    for el in root.iter("image"):
        name = el.get("name", "")
        try:
            w, h = int(el.get("width", "")), int(el.get("height", ""))
        except ValueError as e:
            raise InputError(f"image {name!r} has no width/height", path=p) from e
        regions, skipped = [], Counter[str]()
        for shp in el:
            label = shp.get("label", "")
            where = f"{p} (image {name!r}, {shp.tag} {label!r})"
            try:
                if shp.tag == "polygon":
                    pts = [tuple(float(c) for c in xy.split(",")) for xy in shp.get("points", "").split(";") if xy]
                    mask = polygons_to_mask([np.asarray(pts)], h, w)
                elif shp.tag == "mask":
                    runs = [int(float(r)) for r in shp.get("rle", "").split(",") if r.strip()]
                    mask = cvat_rle_decode(runs, int(float(shp.get("left", 0))), int(float(shp.get("top", 0))),
                                           int(float(shp.get("width", 0))), int(float(shp.get("height", 0))), h, w)
                elif shp.tag == "box":
                    x0, y0, x1, y1 = (float(shp.get(k, 0)) for k in ("xtl", "ytl", "xbr", "ybr"))
                    mask = polygons_to_mask([np.asarray([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])], h, w)
                else:
                    if shp.tag in _NOT_AREAS:
                        skipped[shp.tag] += 1
                    continue
            except (ValueError, TypeError) as e:
                raise InputError(f"malformed shape ({e})", path=where) from e
            regions.append(Region(label, mask))
        out.append(AnnotatedImage(name, w, h, tuple(regions), meta={"id": el.get("id"), "skipped": dict(skipped)}))
    return out
