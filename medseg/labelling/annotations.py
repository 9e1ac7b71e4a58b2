"""Human in the loop with annotation tools: pre-labels out, corrected annotations back in.

* :func:`export_prelabels` writes the import file of COCO, CVAT (for images 1.1) or Label Studio
  for a list of pre-labelled 2-D cases, in the given (worklist) order, one region per structure
  with the model's score; the structure names are the label map's names (any spelling comes back).
* :func:`import_annotations` turns the tool's export into label maps on the images' own grids
  (PNG for picture images, MetaImage for DICOM/other 2-D images, so the spacing stays), a manifest
  ``image,label,split,patient_id`` that ``medseg train`` reads (:mod:`medseg.data.manifest`), and a
  report of what could not be used (unknown structure names, images not found, tasks nobody
  annotated, pixels two structures claim).

Structure names go through :class:`medseg.structures.LabelMap` (``"Lung_R"``, ``"RT LUNG"`` and
``"right lung"`` are all the right-lung value).
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path

import numpy as np

from medseg.data.manifest import ManifestEntry, write_manifest
from medseg.errors import ConfigError, GeometryError, InputError
from medseg.image import Image
from medseg.io import read_image, write_image
from medseg.io.annotations import (
    LOCAL_FILES_PREFIX,
    AnnotatedImage,
    Region,
    ShapeMode,
    check_format,
    image_path_from_url,
    read_annotations,
    write_annotations,
)
from medseg.structures import LabelMap
from medseg.utils import atomic_write_text

__all__ = ["PrelabelCase", "export_prelabels", "AnnotationImport", "import_annotations"]

log = logging.getLogger(__name__)

_PICTURES = ("png", "jpeg", "tiff")


@dataclass(frozen=True)
class PrelabelCase:
    """One pre-labelled 2-D case for an annotation tool.

    Attributes:
        image: the image file the annotator opens (PNG/JPEG/TIFF, or a radiograph the tool shows).
        label: the pre-label, a 2-D ``(y, x)`` label :class:`Image` on the image's pixel grid.
        score: the model's confidence in [0, 1] (e.g. ``1 - uncertainty``), or None.
    """

    image: Path
    label: Image
    score: float | None = None


def _relative(path: Path, root: Path) -> str:
    full = path.resolve()
    if not full.is_relative_to(root):
        raise InputError(f"image is not inside the image folder {root}", path=path,
                         hint="pass images_root= a folder holding every image")
    return full.relative_to(root).as_posix()


def export_prelabels(
    cases: Sequence[PrelabelCase],
    out: str | PathLike[str],
    fmt: str,
    *,
    labels: LabelMap | Mapping[int, str] | None = None,
    images_root: str | PathLike[str] | None = None,
    shape: ShapeMode = "polygon",
    url_prefix: str = LOCAL_FILES_PREFIX,
) -> Path:
    """Write the annotation tool's import file for ``cases``, in their order.

    Args:
        cases: pre-labelled 2-D cases, in worklist order (kept: COCO image ids, CVAT image ids and
            Label Studio task order follow it).
        out: the file to write: ``*.json`` (COCO, Label Studio tasks; Label Studio also gets
            ``<stem>.config.xml``, its labelling config) or ``annotations.xml`` (CVAT).
        fmt: ``"coco"``, ``"cvat"`` or ``"labelstudio"``.
        labels: value -> structure (default: 1 right lung, 2 left lung); every value becomes a
            category / label, empty structures are left out of a case.
        images_root: image paths are written relative to it (default: the images' common folder);
            for Label Studio local files it is ``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT``.
        shape: ``"polygon"`` (editable outlines; holes filled) or ``"mask"`` (COCO RLE, CVAT mask,
            Label Studio brush: pixel exact).
        url_prefix: Label Studio only: prefix of ``data.image`` (default local-file serving).

    Returns:
        the file written.
    """
    fmt = check_format(fmt)
    lm = LabelMap.coerce(labels)
    names = lm.display_names()
    if not cases:
        raise InputError("no cases to export", path=out, hint="pre-label at least one image")
    root = Path(images_root).resolve() if images_root else _common_root([Path(c.image) for c in cases])
    images = []
    for c in cases:
        if c.label.ndim != 2:
            raise InputError(f"{fmt} takes 2-D images; this pre-label is {c.label.ndim}-D {c.label.shape}",
                             path=c.image, hint="send CT to annotators as DICOM-SEG (3D Slicer, OHIF)")
        arr = np.asarray(c.label.array)
        regions = tuple(Region(names[v], arr == v, c.score) for v in lm if (arr == v).any())
        extra = sorted(set(np.unique(arr).tolist()) - set(lm) - {0})
        if extra:
            log.warning("%s: label values %s are not in the label map and are not exported", c.image, extra)
        h, w = arr.shape
        images.append(AnnotatedImage(_relative(Path(c.image), root), w, h, regions, score=c.score))
    path = write_annotations(images, list(names.values()), out, fmt, shape=shape, url_prefix=url_prefix)
    log.info("wrote %d case(s) for %s: %s", len(images), fmt, path)
    return path


def _common_root(paths: Sequence[Path]) -> Path:
    return Path(os.path.commonpath([str(p.resolve().parent) for p in paths]))


@dataclass
class AnnotationImport:
    """What :func:`import_annotations` wrote and what it could not use.

    Attributes:
        manifest: the manifest CSV (``image,label,split,patient_id``) ``medseg train`` takes.
        entries: its rows (absolute paths), in the export's order.
        unknown_names: structure name -> number of regions left out because no label value means it.
        missing_images: image references in the export with no file in the image folder.
        unannotated: images/tasks nobody annotated (Label Studio: no live annotation), left out.
        overlaps: image -> pixels two structures claimed (the later region wins).
        skipped_shapes: shape kind -> count of non-area shapes ignored (CVAT polylines, points ...).
    """

    manifest: Path
    entries: list[ManifestEntry]
    unknown_names: dict[str, int] = field(default_factory=dict)
    missing_images: list[str] = field(default_factory=list)
    unannotated: list[str] = field(default_factory=list)
    overlaps: dict[str, int] = field(default_factory=dict)
    skipped_shapes: dict[str, int] = field(default_factory=dict)

    def report(self) -> dict[str, object]:
        """JSON-friendly summary (also written as ``import_report.json``)."""
        return {"manifest": str(self.manifest), "n_labels": len(self.entries),
                "unknown_names": self.unknown_names, "missing_images": self.missing_images,
                "unannotated": self.unannotated, "overlaps": self.overlaps, "skipped_shapes": self.skipped_shapes}


class _Finder:
    """Finds an export's image reference in the image folder: by relative path, else by unique name."""

    def __init__(self, root: Path):
        self.root = root
        self._by_name: dict[str, list[Path]] | None = None

    def __call__(self, ref: str) -> Path | None:
        direct = Path(os.path.normpath(self.root / ref))  # stays inside the folder (symlinks allowed)
        if ref and direct.is_relative_to(os.path.normpath(self.root)) and direct.is_file():
            return direct
        if self._by_name is None:
            self._by_name = {}
            for p in sorted(self.root.rglob("*")):
                if p.is_file():
                    self._by_name.setdefault(p.name, []).append(p)
        hits = self._by_name.get(Path(ref).name, [])
        if len(hits) > 1:
            raise InputError(f"image name {Path(ref).name!r} matches several files: {[str(h) for h in hits[:3]]}",
                             path=self.root, hint="keep image names unique or the export's relative paths")
        return hits[0] if hits else None


def _label_path(out_dir: Path, ref: str, image: Image) -> Path:
    rel = Path(ref)
    stem = rel.name.split(".")[0] if not rel.name.lower().endswith(".nii.gz") else rel.name[:-7]
    suffix = ".png" if image.source.format in _PICTURES else ".mha"
    parent = Path(*[p for p in rel.parent.parts if p not in ("..", "/")]) if rel.parent.parts else Path()
    return out_dir / "labels" / parent / f"{stem}_label{suffix}"


def import_annotations(
    export: str | PathLike[str],
    fmt: str,
    images_dir: str | PathLike[str],
    out_dir: str | PathLike[str],
    *,
    labels: LabelMap | Mapping[int, str] | None = None,
) -> AnnotationImport:
    """Turn a tool's export into label maps on the images' grids plus a training manifest.

    Args:
        export: the tool's export (COCO JSON, CVAT ``annotations.xml`` or task ``.zip``, Label
            Studio JSON export).
        fmt: ``"coco"``, ``"cvat"`` or ``"labelstudio"``.
        images_dir: the folder holding the annotated images (matched by the export's relative
            path, else by file name).
        out_dir: gets ``labels/<name>_label.png|.mha``, ``manifest.csv`` and ``import_report.json``.
        labels: value -> structure (default: 1 right lung, 2 left lung).

    Raises:
        InputError: unreadable export, image folder missing, nothing usable in the export.
        GeometryError: the tool's image size differs from the image file's.
    """
    fmt = check_format(fmt)
    lm = LabelMap.coerce(labels)
    root = Path(images_dir)
    if not root.is_dir():
        raise InputError("image folder not found", path=root, hint="pass the folder the tool's images came from")
    out = Path(out_dir)
    if out.resolve() == root.resolve():
        raise ConfigError("the output folder is the image folder", path=out, hint="choose another --out")
    items = read_annotations(export, fmt)
    find = _Finder(root)
    res = AnnotationImport(manifest=out / "manifest.csv", entries=[])
    unknown: Counter[str] = Counter()
    skipped: Counter[str] = Counter()
    dtype = np.uint8 if max(lm, default=1) <= 255 else np.uint16
    for item in items:
        ref = image_path_from_url(item.name) if fmt == "labelstudio" else item.name
        skipped.update(item.meta.get("skipped", {}))
        if fmt == "labelstudio" and not item.meta.get("annotated", True):
            res.unannotated.append(ref)
            continue
        path = find(ref)
        if path is None:
            res.missing_images.append(ref)
            continue
        image = read_image(path)
        if image.ndim != 2:
            raise InputError(f"annotation tools label 2-D images; this one is {image.shape}", path=path)
        if item.regions and (item.height, item.width) != image.shape:
            raise GeometryError(
                f"the export's image is {item.width}x{item.height}, the file is {image.shape[1]}x{image.shape[0]}",
                path=path, hint="import against the images that were annotated (same size)")
        arr = np.zeros(image.shape, dtype=dtype)
        taken = np.zeros(image.shape, dtype=bool)
        n_overlap = 0
        for region in item.regions:
            value = _value_of(lm, region.label)
            if value is None:
                unknown[region.label] += 1
                continue
            n_overlap += int((taken & region.mask & (arr != value)).sum())
            arr[region.mask] = value
            taken |= region.mask
        if n_overlap:
            res.overlaps[ref] = n_overlap
        target = _label_path(out, ref, image)
        write_image(Image(arr, image.affine, "label", image.modality), target)
        res.entries.append(ManifestEntry(image=path.resolve(), label=target.resolve()))
    res.unknown_names = dict(unknown)
    res.skipped_shapes = dict(skipped)
    if unknown:
        log.warning("structure names with no label value (left out): %s; known: %s",
                    dict(unknown), list(lm.display_names().values()))
    if not res.entries:
        raise InputError(f"nothing usable in the export ({len(items)} image(s): "
                         f"{len(res.missing_images)} not found, {len(res.unannotated)} not annotated)",
                         path=export, hint=f"check --images (searched {root})")
    write_manifest(res.entries, res.manifest)
    atomic_write_text(out / "import_report.json", json.dumps(res.report(), indent=1) + "\n")
    return res


def _value_of(lm: LabelMap, name: str) -> int | None:
    try:
        return lm.value_of(name)
    except ConfigError:  # e.g. a name that gives both sides
        return None
