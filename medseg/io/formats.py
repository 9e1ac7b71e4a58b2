"""The one table of file formats: suffix -> format, what it holds, and whether medseg reads/writes it.

Every module that needs to know "is this an image file?", "which suffix does a label map get?",
"what is this file's stem?" asks this table instead of keeping its own suffix list (in the spirit
of MONAI's ``register_writer`` / TorchIO's ``reader=``). A new format is one :func:`register_format`
call plus its reader/writer in :mod:`medseg.io`.

Formats and what they hold:

========== ============================== ========= ======================== ====== ======
name       suffixes                       holds     written for              read   write
========== ============================== ========= ======================== ====== ======
dicom      .dcm .dicom .ima (or none)     image     -                        yes    no
dicom-seg  .dcm                           labels    DICOM sources            yes    yes
rtstruct   .dcm                           contours  -                        yes    no
nifti      .nii.gz .nii                   both      volumes                  yes    yes
itk        .mha .mhd .nrrd .nhdr          both      volumes                  yes    yes
picture    .png .jpg .jpeg .tif .tiff     both      radiographs / 2-D        yes    png
========== ============================== ========= ======================== ====== ======

DICOM objects share ``.dcm``: which DICOM object a file is follows from its SOP Class (content),
see :func:`medseg.io.labelmap.is_dicom_seg`.
"""

from __future__ import annotations

from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Literal

__all__ = [
    "FileFormat",
    "FORMATS",
    "register_format",
    "suffix_of",
    "stem_of",
    "format_of_suffix",
    "image_suffixes",
    "writable_suffixes",
    "label_map_suffix",
    "is_image_file_name",
]

Holds = Literal["image", "labels", "both", "contours"]


@dataclass(frozen=True)
class FileFormat:
    """One file format.

    Attributes:
        name: short name used in messages and ``detect_format`` (``"nifti"``, ``"picture"``, ...).
        suffixes: lower-case suffixes, longest first where they overlap (``.nii.gz`` before ``.nii``).
        holds: ``"image"``, ``"labels"``, ``"both"`` or ``"contours"``.
        readable: medseg reads it.
        writable_suffixes: the suffixes medseg writes (a subset of ``suffixes``).
        description: one line for help texts.
    """

    name: str
    suffixes: tuple[str, ...]
    holds: Holds
    readable: bool
    writable_suffixes: tuple[str, ...]
    description: str


FORMATS: dict[str, FileFormat] = {}


def register_format(fmt: FileFormat) -> FileFormat:
    """Add (or replace) a format in the table; returns it."""
    FORMATS[fmt.name] = fmt
    return fmt


register_format(FileFormat("dicom", (".dcm", ".dicom", ".ima"), "image", True, (),
                           "DICOM image: a radiograph file, a CT series folder, enhanced multi-frame"))
register_format(FileFormat("dicom-seg", (".dcm",), "labels", True, (".dcm",),
                           "DICOM Segmentation (BINARY or LABELMAP), referring to its DICOM source"))
register_format(FileFormat("rtstruct", (".dcm",), "contours", True, (),
                           "DICOM RT Structure Set contours, rasterised onto their CT"))
register_format(FileFormat("nifti", (".nii.gz", ".nii"), "both", True, (".nii.gz", ".nii"), "NIfTI-1/2"))
register_format(FileFormat("itk", (".mha", ".mhd", ".nrrd", ".nhdr"), "both", True, (".mha", ".mhd", ".nrrd"),
                           "MetaImage / NRRD (SimpleITK)"))
register_format(FileFormat("picture", (".png", ".jpg", ".jpeg", ".tif", ".tiff"), "both", True, (".png",),
                           "PNG / JPEG / TIFF pictures (2-D; label maps as PNG)"))


def _all_suffixes() -> list[str]:
    return sorted({s for f in FORMATS.values() for s in f.suffixes}, key=len, reverse=True)


def suffix_of(path: str | PathLike[str]) -> str:
    """The lower-case format suffix of a file name (``"x.NII.GZ"`` -> ``".nii.gz"``; ``""`` if none)."""
    name = Path(path).name.lower()
    for s in _all_suffixes():
        if name.endswith(s) and len(name) > len(s):
            return s
    return Path(name).suffix


def stem_of(path: str | PathLike[str]) -> str:
    """The file name without its format suffix (``"ct.nii.gz"`` -> ``"ct"``)."""
    name = Path(path).name
    s = suffix_of(name)
    return name[: -len(s)] if s and name.lower().endswith(s) else name


def format_of_suffix(suffix: str) -> FileFormat | None:
    """The non-DICOM format a suffix means (DICOM objects are told apart by content, not suffix)."""
    for f in FORMATS.values():
        if not f.name.startswith(("dicom", "rtstruct")) and suffix.lower() in f.suffixes:
            return f
    return None


def image_suffixes() -> tuple[str, ...]:
    """Suffixes of non-DICOM files that hold images (found by folder scans as cases)."""
    return tuple(s for f in FORMATS.values() if not f.name.startswith(("dicom", "rtstruct"))
                 and f.holds in ("image", "both") for s in f.suffixes)


def is_image_file_name(path: str | PathLike[str]) -> bool:
    """True when the name has a non-DICOM image suffix (DICOM files are recognised by content)."""
    return suffix_of(path) in image_suffixes()


def writable_suffixes(*, labels: bool = False) -> tuple[str, ...]:
    """Suffixes :func:`medseg.io.write_image` writes; with ``labels``, also ``.dcm`` (DICOM-SEG)."""
    out = [s for f in FORMATS.values() if f.name != "dicom-seg" for s in f.writable_suffixes]
    if labels:
        out += list(FORMATS["dicom-seg"].writable_suffixes)
    return tuple(out)


def label_map_suffix(ndim: int) -> str:
    """The suffix a label map of ``ndim`` dimensions is written with: ``.png`` for 2-D (like public
    CXR mask sets), ``.nii.gz`` for volumes."""
    return ".png" if ndim == 2 else ".nii.gz"
