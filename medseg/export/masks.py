"""Label maps as research-format files (NIfTI ``.nii``/``.nii.gz``, MetaImage ``.mha``/``.mhd``, NRRD)."""

from __future__ import annotations

import logging
from os import PathLike
from pathlib import Path

from medseg.errors import ExportError
from medseg.image import Image

__all__ = ["write_mask", "MASK_SUFFIXES"]

log = logging.getLogger(__name__)

MASK_SUFFIXES = (".nii", ".nii.gz", ".mha", ".mhd", ".nrrd")


def write_mask(labels: Image, path: str | PathLike[str]) -> Path:
    """Write a label map with its geometry (LPS affine, as SimpleITK writes it) atomically.

    Args:
        labels: integer label :class:`Image`, ``(z, y, x)`` or ``(y, x)``.
        path: output file; the suffix picks the format (one of :data:`MASK_SUFFIXES`).

    Returns:
        ``path``.

    Raises:
        ExportError: not a label image, or an unsupported suffix.
    """
    from medseg.io import write_image

    path = Path(path)
    if labels.kind != "label":
        raise ExportError(
            f"write_mask writes label maps, got a {labels.kind} image",
            path=path,
            hint="use medseg.io.write_image for intensity images",
        )
    name = path.name.lower()
    if not name.endswith(MASK_SUFFIXES):
        raise ExportError(
            f"unsupported mask format {''.join(path.suffixes) or '(no suffix)'}",
            path=path,
            hint=f"use one of {', '.join(MASK_SUFFIXES)}",
        )
    write_image(labels, path)
    log.info("%s: wrote label map %s", path, labels.shape)
    return path
