"""Label maps in any supported file: read (PNG/NIfTI/NRRD/DICOM image or DICOM-SEG) and write (by suffix)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from os import PathLike
from pathlib import Path

from medseg.errors import InputError
from medseg.image import Image

__all__ = ["read_label_map", "write_label_map", "check_label_map_path", "is_dicom_seg", "SEGMENTATION_STORAGE"]

logger = logging.getLogger(__name__)

#: SOP Class UID of DICOM Segmentation Storage.
SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"


def is_dicom_seg(path: str | PathLike[str]) -> bool:
    """True when ``path`` is a DICOM-SEG file: Segmentation Storage (BINARY/FRACTIONAL) or Label Map
    Segmentation Storage (LABELMAP) SOP Class (header only)."""
    p = Path(path)
    if not p.is_file():
        return False
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(p, stop_before_pixels=True, specific_tags=["SOPClassUID"])
    except (InvalidDicomError, OSError, ValueError):
        return False
    from medseg.io.dicom import SEG_SOP_CLASSES

    return str(getattr(ds, "SOPClassUID", "")) in SEG_SOP_CLASSES


def read_label_map(
    path: str | PathLike[str],
    *,
    label_names: Mapping[int, str] | None = None,
    source: Image | None = None,
) -> tuple[Image, dict[int, str]]:
    """Read one annotation as a label :class:`Image` plus the names it carries.

    DICOM files whose SOP Class is Segmentation Storage go to
    :func:`medseg.export.read_dicom_seg` (segment number -> segment label); anything else
    (PNG, NIfTI, NRRD, MHA, DICOM image) goes to :func:`medseg.io.read_image` with
    ``kind="label"`` and carries no names (``{}``).

    ``label_names`` (``{value: name}``) maps DICOM-SEG segments to label values by segment label
    (case-insensitive) instead of by segment number; it is ignored for other files.
    ``source`` (the image the SEG was drawn on) puts a DICOM-SEG on that image's grid instead of
    the SEG's own frame range; it is ignored for other files.
    """
    p = Path(path)
    if not p.exists():
        raise InputError("mask file not found", path=p, hint="check the path")
    if p.is_file() and is_dicom_seg(p):
        from medseg.io import read_dicom_seg

        image, names = read_dicom_seg(p, source, label_names=label_names)
        logger.debug("read DICOM-SEG %s with segments %s", p, names)
        return image, {int(k): str(v) for k, v in names.items()}
    from medseg.io import read_image

    return read_image(p, kind="label"), {}


def check_label_map_path(path: str | PathLike[str], *, source: Image | None = None) -> Path:
    """Validate an output path for :func:`write_label_map` *before* any work is done.

    Raises:
        ExportError: the suffix is no label-map format, the path is a folder, or a DICOM-SEG is
            asked for without a DICOM source.
    """
    from medseg.errors import ExportError
    from medseg.io.formats import FORMATS, suffix_of, writable_suffixes

    p = Path(path)
    suffixes = writable_suffixes(labels=True)
    if suffix_of(p) not in suffixes:
        raise ExportError(f"cannot write a label map as {suffix_of(p) or 'a file without a suffix'}", path=p,
                          hint=f"use one of {', '.join(suffixes)} (.dcm = DICOM-SEG)")
    if p.is_dir():
        raise ExportError("the output path is a folder", path=p, hint="give a file name")
    if source is not None and source.ndim == 3 and suffix_of(p) in FORMATS["picture"].suffixes:
        raise ExportError("a PNG holds 2-D label maps only; this one is 3-D", path=p,
                          hint="write .nii.gz (or .mha / .nrrd / .dcm)")
    if suffix_of(p) == ".dcm" and source is not None and not source.source.is_dicom:
        raise ExportError("a DICOM-SEG needs a DICOM image as its source", path=p,
                          hint="pass the DICOM series/file, or write .nii.gz / .png")
    return p


def write_label_map(
    labels: Image,
    path: str | PathLike[str],
    *,
    source: Image | None = None,
    label_names: Mapping[int, str] | None = None,
    **seg_options: object,
) -> Path:
    """Write a label map in the format its suffix names (the one label-map writer).

    ``.dcm`` -> DICOM-SEG referring to ``source`` (:func:`medseg.io.write_dicom_seg`, options passed
    on); ``.nii.gz``/``.nii``/``.mha``/``.mhd``/``.nrrd``/``.png`` -> :func:`medseg.io.write_image`.

    Args:
        labels: integer label :class:`Image` ``(z, y, x)`` or ``(y, x)``.
        path: output file.
        source: the image the labels were made on (required for DICOM-SEG).
        label_names: ``{value: name}`` (DICOM-SEG segment names/codes via :mod:`medseg.structures`).
    """
    from medseg.errors import ExportError

    p = check_label_map_path(path, source=source)
    if labels.kind != "label":
        raise ExportError(f"a label map must be a label image, got a {labels.kind} image", path=p,
                          hint="read it with kind='label' or use medseg.io.write_image")
    if p.name.lower().endswith(".dcm"):
        if source is None or label_names is None:
            raise ExportError("a DICOM-SEG needs the DICOM image it was made on and the label names", path=p,
                              hint="pass source= and label_names=, or write .nii.gz / .png")
        from medseg.io.seg import write_dicom_seg

        return write_dicom_seg(labels, source, p, label_names=label_names, **seg_options)  # type: ignore[arg-type]
    from medseg.io.core import write_image

    return write_image(labels, p)
