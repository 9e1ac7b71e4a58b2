"""Annotation-tool formats: COCO instances JSON, CVAT for images 1.1 XML, Label Studio JSON.

Every format reads into and writes from :class:`AnnotatedImage` (image reference, size, regions
with a ``(y, x)`` bool mask and a label name per structure); mapping names to label values is the
caller's job (:class:`medseg.structures.LabelMap`, see :mod:`medseg.labelling.annotations`).
2-D images only: CT goes to annotators as DICOM-SEG (3D Slicer, OHIF).

    write_annotations(images, labels, path, fmt, *, shape="polygon", url_prefix=...) -> Path
    read_annotations(path, fmt) -> list[AnnotatedImage]
"""

from __future__ import annotations

from collections.abc import Sequence
from os import PathLike
from pathlib import Path
from typing import Literal, get_args

from medseg.errors import ConfigError
from medseg.io.annotations._model import AnnotatedImage, Region, ShapeMode
from medseg.io.annotations._shapes import mask_to_polygons, polygons_to_mask
from medseg.io.annotations.coco import read_coco, write_coco
from medseg.io.annotations.cvat import read_cvat, write_cvat
from medseg.io.annotations.labelstudio import (
    LOCAL_FILES_PREFIX,
    image_path_from_url,
    labelstudio_config,
    read_labelstudio,
    write_labelstudio,
)

__all__ = [
    "AnnotatedImage",
    "Region",
    "ShapeMode",
    "AnnotationFormat",
    "FORMATS",
    "check_format",
    "write_annotations",
    "read_annotations",
    "read_coco",
    "write_coco",
    "read_cvat",
    "write_cvat",
    "read_labelstudio",
    "write_labelstudio",
    "labelstudio_config",
    "image_path_from_url",
    "mask_to_polygons",
    "polygons_to_mask",
    "LOCAL_FILES_PREFIX",
]

AnnotationFormat = Literal["coco", "cvat", "labelstudio"]
FORMATS: tuple[str, ...] = get_args(AnnotationFormat)


def check_format(fmt: str) -> AnnotationFormat:
    """``fmt`` lower-cased if it is a known format, else :class:`ConfigError`."""
    f = str(fmt).lower().replace("-", "").replace("_", "")
    if f not in FORMATS:
        raise ConfigError(f"unknown annotation format {fmt!r}", path="format", hint=f"use one of {list(FORMATS)}")
    return f  # type: ignore[return-value]


def write_annotations(
    images: Sequence[AnnotatedImage],
    labels: Sequence[str],
    path: str | PathLike[str],
    fmt: str,
    *,
    shape: ShapeMode = "polygon",
    url_prefix: str = LOCAL_FILES_PREFIX,
) -> Path:
    """Write ``images`` in ``fmt`` (``url_prefix`` is used by Label Studio only)."""
    f = check_format(fmt)
    if shape not in ("polygon", "mask"):
        raise ConfigError(f"unknown shape {shape!r}", path="shape", hint="use 'polygon' or 'mask'")
    if f == "coco":
        return write_coco(images, labels, path, shape=shape)
    if f == "cvat":
        return write_cvat(images, labels, path, shape=shape)
    return write_labelstudio(images, labels, path, shape=shape, url_prefix=url_prefix)


def read_annotations(path: str | PathLike[str], fmt: str) -> list[AnnotatedImage]:
    """Read a tool's export in ``fmt``."""
    f = check_format(fmt)
    if f == "coco":
        return read_coco(path)
    if f == "cvat":
        return read_cvat(path)
    return read_labelstudio(path)
