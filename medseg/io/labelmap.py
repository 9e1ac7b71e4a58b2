"""Read annotators' label maps from any supported file (PNG/NIfTI/NRRD/DICOM image or DICOM-SEG)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from os import PathLike
from pathlib import Path

from medseg.errors import InputError
from medseg.image import Image

__all__ = ["read_label_map", "is_dicom_seg", "SEGMENTATION_STORAGE"]

logger = logging.getLogger(__name__)

#: SOP Class UID of DICOM Segmentation Storage.
SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"


def is_dicom_seg(path: str | PathLike[str]) -> bool:
    """True when ``path`` is a DICOM file whose SOP Class is Segmentation Storage (header only)."""
    p = Path(path)
    if not p.is_file():
        return False
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(p, stop_before_pixels=True, specific_tags=["SOPClassUID"])
    except (InvalidDicomError, OSError, ValueError):
        return False
    return str(getattr(ds, "SOPClassUID", "")) == SEGMENTATION_STORAGE


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
