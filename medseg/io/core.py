"""``read_image`` / ``write_image``: one entry point for every file format medseg reads or writes.

The format is chosen by content first (the DICOM ``DICM`` prefix wins over any suffix), then by
suffix checked against the file's magic bytes; files without a known suffix are sniffed (PNG, JPEG,
TIFF, gzip-NIfTI, NIfTI, bare DICOM datasets without file meta).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path

from medseg.errors import DicomInputError, ExportError, InputError
from medseg.image import Image, ImageKind
from medseg.io._common import existing_path
from medseg.io.dicom import SeriesInfo, _looks_like_raw_dicom, list_series, read_dicom
from medseg.io.formats import FORMATS, suffix_of, writable_suffixes
from medseg.io.itk import ITK_SUFFIXES, read_itk, write_itk
from medseg.io.nifti import read_nifti, write_nifti
from medseg.io.picture import PICTURE_SUFFIXES, read_picture, write_png
from medseg.utils import atomic_path

__all__ = [
    "detect_format",
    "read_image",
    "write_image",
    "convert_image",
    "image_info",
    "ImageInfo",
    "WRITE_SUFFIXES",
]

log = logging.getLogger(__name__)

PathArg = str | PathLike[str]
WRITE_SUFFIXES = writable_suffixes()
_KINDS = ("intensity", "label")


def _suffix(path: Path) -> str:
    return suffix_of(path)


def _magic_format(head: bytes) -> str | None:
    if head[128:132] == b"DICM":
        return "dicom"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "picture"
    if head.startswith(b"\xff\xd8\xff"):
        return "picture"
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return "picture"
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if len(head) >= 348 and head[344:348] in (b"n+1\x00", b"ni1\x00"):
        return "nifti"
    if len(head) >= 8 and head[4:8] == b"n+2\x00":  # NIfTI-2 magic sits at byte 4
        return "nifti"
    return None


def detect_format(path: PathArg) -> str:
    """``"dicom"``, ``"nifti"``, ``"itk"`` or ``"picture"`` for a file or folder (folders: DICOM).

    Raises:
        InputError: the path does not exist or the format is not recognised.
    """
    p = existing_path(path)
    if p.is_dir():
        return "dicom"
    try:
        with open(p, "rb") as fp:
            head = fp.read(352)
    except OSError as e:
        raise InputError(f"cannot open the file ({e.strerror})", path=p) from e
    if not head:
        raise InputError("the file is empty (0 bytes)", path=p, hint="copy the file again")
    magic = _magic_format(head)
    if magic == "dicom":
        return "dicom"
    suffix = _suffix(p)
    if suffix in FORMATS["nifti"].suffixes:
        return "nifti"
    if suffix in ITK_SUFFIXES:
        return "itk"
    if suffix in PICTURE_SUFFIXES:
        return "picture"
    if magic == "picture":
        return "picture"
    if magic in ("gzip", "nifti"):
        return "nifti"
    if suffix in (".dcm", ".dicom", ".ima", "") or _looks_like_raw_dicom(head):
        return "dicom"
    raise InputError(
        f"unknown image format (suffix {suffix!r})",
        path=p,
        hint="medseg reads DICOM, NIfTI (.nii/.nii.gz), MetaImage (.mha/.mhd), NRRD, PNG, JPEG and TIFF",
    )


def read_image(
    path: PathArg | Sequence[PathArg],
    *,
    series_uid: str | None = None,
    kind: ImageKind = "intensity",
    modality: str | None = None,
) -> Image:
    """Read any supported image: DICOM (file, folder or list of files), NIfTI, MHA/MHD/NRRD, PNG/JPEG/TIFF.

    Args:
        path: a file, a DICOM folder (searched recursively) or a list of DICOM files.
        series_uid: SeriesInstanceUID to pick from a folder holding several DICOM series.
        kind: ``"intensity"`` or ``"label"`` (integer label image; non-integer values raise).
        modality: modality recorded for non-DICOM files, which carry none (default ``"OT"``;
            e.g. ``"CT"`` for a CT NIfTI). Ignored for DICOM, whose header says it.

    Returns:
        :class:`Image` in LPS: ``(z, y, x)`` + 4x4 affine for volumes, ``(y, x)`` + 3x3 for
        radiographs and pictures. Details per format in :mod:`medseg.io.dicom`,
        :mod:`medseg.io.nifti`, :mod:`medseg.io.itk`, :mod:`medseg.io.picture`.

    Raises:
        InputError / DicomInputError / GeometryError naming the file and the fix.
    """
    if kind not in _KINDS:
        raise InputError(f"kind must be one of {_KINDS}, got {kind!r}")
    if not isinstance(path, (str, PathLike)):
        return read_dicom(list(path), series_uid=series_uid, kind=kind)
    fmt = detect_format(path)
    if series_uid is not None and fmt != "dicom":
        raise InputError("series_uid only applies to DICOM input", path=path, hint="drop --series-uid")
    if fmt == "dicom":
        return read_dicom(path, series_uid=series_uid, kind=kind)
    if fmt == "nifti":
        return read_nifti(path, kind=kind, modality=modality or "OT")
    if fmt == "itk":
        return read_itk(path, kind=kind, modality=modality)
    return read_picture(path, kind=kind, modality=modality or "OT")


def _protected(image: Image) -> tuple[Path, ...]:
    paths = list(image.source.files)
    if image.source.path is not None:
        paths.append(image.source.path)
    return tuple(Path(p) for p in paths)


def write_image(image: Image, path: PathArg, *, compress: bool | None = None) -> Path:
    """Write ``image`` atomically; the format follows the suffix.

    * ``.nii``/``.nii.gz``: nibabel, LPS -> RAS (:func:`medseg.io.nifti.ras_lps_flip`), qform = sform.
    * ``.mha``/``.mhd``/``.nrrd``: SimpleITK (LPS as is); ``compress`` defaults to True for labels.
    * ``.png``: 2-D only; labels uint8/uint16, intensities scaled to 8 bit
      (see :mod:`medseg.io.picture`).

    Never writes over a file the image was read from (``ExportError``).

    Returns:
        the path written.
    """
    target = Path(path)
    protect = _protected(image)
    resolved = target.resolve()
    if any(p.resolve() == resolved for p in protect):
        raise ExportError(
            "refusing to overwrite an input file", path=target, hint="choose another output path"
        )
    suffix = _suffix(target)
    if suffix not in WRITE_SUFFIXES:
        raise ExportError(
            f"cannot write {suffix or 'files without a suffix'}",
            path=target,
            hint="use one of " + ", ".join(WRITE_SUFFIXES) + " (DICOM-SEG: medseg.io.write_dicom_seg)",
        )
    if target.is_dir():
        raise ExportError("the output path is a folder", path=target, hint="give a file name")
    if suffix == ".png" and image.ndim != 2:  # say it about the user's file, before any temporary file exists
        raise ExportError(f"a PNG holds one 2-D picture, this image is {image.ndim}-D {image.shape}", path=target,
                          hint="write a volume as .nii.gz, .nii, .mha or .nrrd")
    if compress is None:
        compress = image.kind == "label"
    with atomic_path(target, protect=protect) as tmp:
        if suffix in (".nii", ".nii.gz"):
            write_nifti(image, tmp)
        elif suffix == ".png":
            write_png(image, tmp)
        else:
            write_itk(image, tmp, final=target, compress=compress)
    return target


def convert_image(
    src: PathArg | Sequence[PathArg],
    dst: PathArg,
    *,
    series_uid: str | None = None,
    kind: ImageKind = "intensity",
) -> Image:
    """Read ``src`` with :func:`read_image` and write it to ``dst`` with :func:`write_image`."""
    image = read_image(src, series_uid=series_uid, kind=kind)
    write_image(image, dst)
    return image


@dataclass(frozen=True)
class ImageInfo:
    """What ``medseg info`` shows about a path.

    ``image`` is ``None`` when the path is a DICOM folder with several image series and no
    ``series_uid`` was given (then only ``series`` is filled).
    """

    path: Path
    format: str
    image: Image | None
    series: list[SeriesInfo] = field(default_factory=list)

    def rows(self) -> list[tuple[str, str]]:
        """(field, value) pairs for display."""
        out: list[tuple[str, str]] = [("path", str(self.path)), ("format", self.format)]
        img = self.image
        if img is not None:
            arr = img.array
            axes = "z, y, x" if img.ndim == 3 else "y, x"
            rng = f"{float(arr.min()):.6g} .. {float(arr.max()):.6g}" if arr.size else "empty"
            out += [
                ("modality", img.modality),
                ("kind", img.kind),
                ("shape", f"{img.shape} ({axes})"),
                (
                    "spacing",
                    "("
                    + ", ".join(f"{s:.4g}" for s in img.spacing)
                    + ") mm (x, y"
                    + (", z)" if img.ndim == 3 else ")"),
                ),
                (
                    "origin",
                    "("
                    + ", ".join(f"{s:.4g}" for s in img.origin)
                    + ") mm"
                    + (" LPS" if img.ndim == 3 else ""),
                ),
                (
                    "orientation",
                    img.orientation if img.ndim == 3 else "2-D image plane (x = columns, y = rows)",
                ),
                ("dtype", str(arr.dtype)),
                ("intensity range", rng),
                ("spacing source", _spacing_source(img)),
            ]
            if img.source.is_dicom and img.ndim == 2:
                photometric = str(img.source.datasets[0].get("PhotometricInterpretation", "?"))
                note = " (inverted on reading: higher = brighter)" if photometric == "MONOCHROME1" else ""
                out.append(("photometric", photometric + note))
            if img.source.series_instance_uid:
                out.append(("series uid", img.source.series_instance_uid))
        for s in self.series:
            out.append(("series", s.describe() + ("" if s.is_image else " [not an image]")))
        return out


def _spacing_source(img: Image) -> str:
    src = img.source
    if src.format == "dicom":
        if img.ndim == 2:
            return src.spacing_tag or "none (1 mm assumed)"
        return "PixelSpacing + ImagePositionPatient"
    if src.format in ("png", "jpeg", "tiff"):
        return "none (picture, 1 mm assumed)"
    return f"{src.format} header"


def image_info(path: PathArg, *, series_uid: str | None = None) -> ImageInfo:
    """Describe ``path`` (see :class:`ImageInfo`); a DICOM folder also lists its series."""
    p = existing_path(path)
    fmt = detect_format(p)
    series: list[SeriesInfo] = []
    if fmt == "dicom" and p.is_dir():
        series = list_series(p)
        images = [s for s in series if s.is_image]
        if series_uid is None and len(images) != 1:
            if not images:
                raise DicomInputError(
                    "the folder holds no DICOM image series (only "
                    + ", ".join(s.modality for s in series)
                    + ")",
                    path=p,
                    hint="point to the image series folder",
                )
            return ImageInfo(p, fmt, None, series)
    image = read_image(p, series_uid=series_uid)
    return ImageInfo(p, image.source.format, image, series)
