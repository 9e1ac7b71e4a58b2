"""COCO instance-segmentation JSON: write pre-labels, read corrected annotations.

Written by hand as a plain ``dict`` -> JSON (the format is a small JSON schema and pycocotools has
no writer); polygons and RLE are made with :mod:`medseg.io.annotations._shapes` (pycocotools RLE),
read back with pycocotools' own :class:`pycocotools.coco.COCO` (``annToMask`` rasterises polygons,
compressed and uncompressed RLE alike).

Layout written: ``images`` (``id`` from 1 in the given order, ``file_name``, ``width``,
``height``), ``categories`` (``id`` from 1 in label order, ``name``, ``supercategory``
``"anatomy"``), ``annotations`` (one per region: ``segmentation`` as polygons
``[[x0, y0, x1, y1, ...], ...]`` or compressed RLE, ``area``, ``bbox`` ``[x, y, w, h]``,
``iscrowd`` 0, and ``score`` for pre-labels, as in COCO result files).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
from collections.abc import Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from medseg.errors import ExportError, InputError
from medseg.io.annotations._model import AnnotatedImage, Region, ShapeMode, require
from medseg.io.annotations._shapes import mask_has_holes, mask_to_coco_rle, mask_to_polygons
from medseg.utils import atomic_write_text

__all__ = ["write_coco", "read_coco", "coco_dict"]

log = logging.getLogger(__name__)


def _bbox(mask: np.ndarray) -> list[float]:
    ys, xs = np.nonzero(mask)
    if not len(xs):
        return [0.0, 0.0, 0.0, 0.0]
    return [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]


def coco_dict(images: Sequence[AnnotatedImage], labels: Sequence[str], *, shape: ShapeMode = "polygon") -> dict[str, Any]:
    """The COCO document for ``images`` (in order) with categories ``labels`` (in order)."""
    cat_id = {name: i for i, name in enumerate(labels, start=1)}
    out_images: list[dict[str, Any]] = []
    anns: list[dict[str, Any]] = []
    for img_id, img in enumerate(images, start=1):
        out_images.append({"id": img_id, "file_name": img.name, "width": int(img.width), "height": int(img.height)})
        for region in img.regions:
            if region.label not in cat_id:
                raise ExportError(f"region label {region.label!r} is not one of the categories {list(labels)}",
                                  path=img.name, hint="pass every structure name in labels")
            mask = np.asarray(region.mask, dtype=bool)
            if not mask.any():
                continue
            if shape == "polygon":
                if mask_has_holes(mask):
                    log.info("%s: %s has holes; COCO polygons fill them (use shape='mask' to keep them)",
                             img.name, region.label)
                seg: Any = [[round(float(v), 3) for v in p.reshape(-1)] for p in mask_to_polygons(mask)]
            else:
                seg = mask_to_coco_rle(mask)
            ann: dict[str, Any] = {
                "id": len(anns) + 1, "image_id": img_id, "category_id": cat_id[region.label],
                "segmentation": seg, "area": float(mask.sum()), "bbox": _bbox(mask), "iscrowd": 0,
            }
            if region.score is not None:
                ann["score"] = float(region.score)
            anns.append(ann)
    return {
        "info": {"description": "medseg pre-labels", "version": "1.0"},
        "licenses": [],
        "images": out_images,
        "annotations": anns,
        "categories": [{"id": i, "name": n, "supercategory": "anatomy"} for n, i in cat_id.items()],
    }


def write_coco(
    images: Sequence[AnnotatedImage], labels: Sequence[str], path: str | PathLike[str], *, shape: ShapeMode = "polygon"
) -> Path:
    """Write a COCO instances JSON (atomically); returns ``path``."""
    out = Path(path)
    atomic_write_text(out, json.dumps(coco_dict(images, labels, shape=shape)) + "\n")
    return out


def read_coco(path: str | PathLike[str]) -> list[AnnotatedImage]:
    """Read a COCO instances JSON (CVAT, Label Studio, datumaro, pycocotools or medseg export).

    Every annotation is rasterised by pycocotools (polygons or RLE); regions keep the category
    name as label, several annotations of one category on one image stay separate regions.
    Images appear in file order; images without annotations are kept (no regions).
    """
    COCO = require("pycocotools.coco").COCO  # noqa: N806 (the class)
    p = Path(path)
    if not p.is_file():
        raise InputError("COCO file not found", path=p, hint="pass the instances JSON the tool exported")
    try:
        data = json.loads(p.read_text(encoding="utf-8-sig"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"not a JSON file ({e})", path=p) from e
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) or "annotations" not in data:
        raise InputError("not a COCO instances file (no 'images'/'annotations')", path=p,
                         hint="export 'COCO 1.0' / 'COCO instances' from the tool")
    data.setdefault("categories", [])
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        try:
            coco.createIndex()
        except (KeyError, TypeError) as e:
            raise InputError(f"malformed COCO file ({e!r})", path=p) from e
    names = {c["id"]: str(c.get("name", c["id"])) for c in data["categories"]}
    out = []
    for img in data["images"]:
        try:
            h, w = int(img["height"]), int(img["width"])
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(f"image entry {img.get('id')} has no width/height", path=p) from e
        regions = []
        for ann in coco.imgToAnns.get(img["id"], []):
            if not ann.get("segmentation"):
                continue
            try:
                mask = coco.annToMask(ann).astype(bool)
            except Exception as e:  # pycocotools raises bare errors on malformed segmentations
                raise InputError(f"annotation {ann.get('id')} has a malformed segmentation ({e!r})", path=p) from e
            if mask.shape != (h, w):
                raise InputError(f"annotation {ann.get('id')} is {mask.shape}, its image is {(h, w)}", path=p)
            regions.append(Region(names.get(ann["category_id"], str(ann["category_id"])), mask, ann.get("score")))
        out.append(AnnotatedImage(str(img.get("file_name", img["id"])), w, h, tuple(regions),
                                  meta={"id": img["id"]}))
    return out
