"""DICOM reading: CT/MR series (single-frame files or one enhanced multi-frame file) and radiographs.

Everything here works in DICOM patient coordinates (**LPS**, mm) and returns :class:`~medseg.image.Image`
in SimpleITK array order (``(z, y, x)`` for volumes, ``(y, x)`` for radiographs).

Series (CT, MR, ...):

* Files are found recursively; files that are not DICOM (and DICOMDIR) are skipped quietly.
* Slices are grouped by SeriesInstanceUID and sorted by ImagePositionPatient projected on the slice
  normal ``n = row_direction x column_direction`` (from ImageOrientationPatient), **not** by
  InstanceNumber. The geometry is checked: one orientation, one pixel spacing, no in-plane drift
  (gantry tilt), no duplicated positions, uniform slice spacing (tolerance 1 % of the spacing or
  0.01 mm, whichever is larger); a gap that is a whole multiple of the spacing is reported as missing
  slices with their positions in mm.
* The affine maps index ``(col, row, slice)`` to LPS: columns ``row_dir * PixelSpacing[1]``,
  ``col_dir * PixelSpacing[0]``, ``n * slice_spacing``; origin = ImagePositionPatient of the first
  slice (the one lowest along ``n``). ``slice_spacing`` is (last - first) / (count - 1) along ``n``.
* Pixel values are rescaled with RescaleSlope/RescaleIntercept (HU for CT). The result is **int16**
  when every slope and intercept is a whole number and every rescaled value fits in int16 (the usual
  CT case; values are exact), otherwise **float32**.

Radiographs (CR, DX, MG, secondary capture, ... single frame, greyscale):

* Modality LUT (rescale or LUT) then VOI LUT (LUT or window) are applied with pydicom's
  ``apply_modality_lut`` / ``apply_voi_lut``; the result is float32 in the VOI output range.
* MONOCHROME1 is inverted within that output range (``lo + hi - value``) so higher = brighter.
* The affine is ``diag(col_spacing, row_spacing, 1)`` in the image plane (3x3), from PixelSpacing,
  else ImagerPixelSpacing (detector plane, not corrected for magnification), else
  NominalScannedPixelSpacing; which one is recorded in ``source.spacing_tag``; with none, 1 mm is
  assumed and ``spacing_tag`` is ``None``. No patient orientation is assumed beyond that.

Validation (issue #13): every header attribute a reader uses is checked before it is used and
before pixel memory is allocated (:func:`_check_header`, :func:`check_seg_dataset` for SEGs): sizes
present, single-valued, whole and in range, the pixel payload within 2**31 voxels and within the
bytes the file holds, spacing/position/orientation/rescale/window/LUT values finite and plausible
(limits in :mod:`medseg.io._common`), CT/MR/PET slices with both ImagePositionPatient and
ImageOrientationPatient. Files are parsed from a memory map (a corrupt 4 GB element length cannot
allocate 4 GB), and a file without ``DICM`` that does not start with a DICOM element is not handed
to pydicom (a zero-filled file would take ~1 s per MiB). Anything else is a one-line
:class:`DicomInputError` naming the file and the attribute.
"""

from __future__ import annotations

import logging
import mmap
import os
import struct
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from medseg.errors import DicomInputError, GeometryError, InputError
from medseg.image import Image, ImageKind, ImageSource
from medseg.io._common import (
    MAX_ORIGIN_MM,
    MAX_VOXELS,
    SPACING_RANGE_MM,
    as_label_array,
    check_image,
    existing_path,
    reader_guard,
)
from medseg.io.decode import decode_pixels

__all__ = ["SeriesInfo", "list_series", "read_dicom", "is_dicom_file", "check_seg_dataset", "read_dataset"]

log = logging.getLogger(__name__)

_PIXEL_TAGS = {(0x7FE0, 0x0010), (0x7FE0, 0x0008), (0x7FE0, 0x0009)}
#: Segmentation Storage (BINARY/FRACTIONAL) and Label Map Segmentation Storage (LABELMAP): one
#: concept everywhere (read_image refuses both, folder scans skip both, SEG readers take both).
SEG_SOP_CLASSES = ("1.2.840.10008.5.1.4.1.1.66.4", "1.2.840.10008.5.1.4.1.1.66.7")
_DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"
_NATIVE_LE = {ImplicitVRLittleEndian, ExplicitVRLittleEndian}
_SPACING_TAGS = ("PixelSpacing", "ImagerPixelSpacing", "NominalScannedPixelSpacing")
_PIXEL_ELEMENTS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_READ_THREADS = min(8, (os.cpu_count() or 2) * 2)


# ---------------------------------------------------------------------------------------------
# headers
# ---------------------------------------------------------------------------------------------
@dataclass
class _Header:
    """One parsed DICOM file: header without pixel data, plus where its pixel data starts."""

    path: Path
    ds: Dataset
    pixel_offset: int | None  # file offset of the pixel data element tag; None: no pixel data
    transfer_syntax: UID
    broken: str | None = None  # why the file looks truncated, if it does

    @property
    def series_uid(self) -> str:
        try:  # a corrupt element may fail to decode (lazily, on access): treat it as absent here
            return str(self.ds.get("SeriesInstanceUID", "") or "")
        except Exception:  # noqa: BLE001 - any decoding error; _check_header names it later
            return ""

    @property
    def sop_class(self) -> str:
        try:
            return str(self.ds.get("SOPClassUID", "") or "")
        except Exception:  # noqa: BLE001 - as above
            return ""

    @property
    def frames(self) -> int:
        try:
            return int(self.ds.get("NumberOfFrames", 1) or 1)
        except Exception:  # noqa: BLE001 - as above; _check_header validates NumberOfFrames
            return 1

    @property
    def category(self) -> str:
        """``"nonimage"``, ``"seg"``, ``"enhanced"`` (multi-frame with functional groups),
        ``"slice"`` (has ImagePositionPatient/ImageOrientationPatient) or ``"planar"``."""
        if self.pixel_offset is None:
            return "nonimage"
        if self.sop_class in SEG_SOP_CLASSES:
            return "seg"
        if "PerFrameFunctionalGroupsSequence" in self.ds:
            return "enhanced"
        if "ImagePositionPatient" in self.ds and "ImageOrientationPatient" in self.ds:
            return "slice"
        return "planar"


def _looks_like_raw_dicom(head: bytes) -> bool:
    """True when a file without the ``DICM`` prefix starts like a bare DICOM dataset.

    Old ACR-NEMA style files start directly with an element of group 0x0008 (or 0x0002 / 0x0000),
    little or big endian; anything else is not worth handing to ``pydicom.dcmread(force=True)``.
    """
    if len(head) < 8:
        return False
    group_le, elem_le = struct.unpack("<HH", head[:4])
    group_be = struct.unpack(">H", head[:2])[0]
    if group_le == 0 and elem_le == 0:
        # (0000,0000) is the 4-byte command group length; a zero-filled file also starts with it
        # and pydicom would crawl through it at ~1 s per MiB, so demand its length be 4.
        implicit_len = struct.unpack("<I", head[4:8])[0]
        explicit_len = struct.unpack("<H", head[6:8])[0] if head[4:6] == b"UL" else None
        return implicit_len == 4 or explicit_len == 4
    return (group_le in (0x0000, 0x0002, 0x0008) and elem_le < 0x0100) or group_be in (0x0002, 0x0008)


def is_dicom_file(path: str | PathLike[str]) -> bool:
    """True when ``path`` has the DICOM ``DICM`` prefix or starts like a bare (no meta) dataset."""
    try:
        with open(path, "rb") as fp:
            head = fp.read(132)
    except OSError:
        return False
    return head[128:132] == b"DICM" or _looks_like_raw_dicom(head)


def _transfer_syntax(ds: Dataset) -> UID:
    meta = getattr(ds, "file_meta", None)
    ts = meta.get("TransferSyntaxUID") if meta is not None else None
    if ts:
        return UID(str(ts))
    implicit, little = getattr(ds, "original_encoding", (True, True))
    if implicit is None:
        implicit, little = True, True
    if implicit:
        return ImplicitVRLittleEndian
    return ExplicitVRLittleEndian if little else ExplicitVRBigEndian


def _read_header(path: Path, *, strict: bool, specific_tags: list[str] | None = None) -> _Header | None:
    """Parse the header of ``path`` (pixel data not read).

    Returns ``None`` for files that are not DICOM when ``strict`` is False; raises
    :class:`DicomInputError` for files that claim to be DICOM but cannot be parsed.
    """
    try:
        fp = open(path, "rb")
    except OSError as e:
        raise InputError(f"cannot open the file ({e.strerror})", path=path, hint="check permissions") from e
    with fp:
        head = fp.read(132)
        has_prefix = len(head) == 132 and head[128:132] == b"DICM"
        if not has_prefix and not _looks_like_raw_dicom(head):
            if not strict:
                return None  # folder scans skip other files quietly
            raise DicomInputError(
                "not a DICOM file (no DICM prefix, and it does not start with a DICOM element)",
                path=path,
                hint="pass a DICOM file or folder; check that the file is complete",
            )
        fp.seek(0)
        try:
            src = _mapped(fp)
            ds = pydicom.dcmread(
                src, stop_before_pixels=True, force=not has_prefix, specific_tags=specific_tags
            )
            offset: int | None = src.tell()
            tag = src.read(4)
            _detach(ds, path, src)
        except Exception as e:
            if not has_prefix and not strict:
                return None
            what = "the file is truncated or corrupt" if has_prefix else "not a DICOM file, or a corrupt one"
            raise DicomInputError(
                f"the DICOM header cannot be parsed, {what} ({type(e).__name__}: {e})",
                path=path,
                hint="copy the file again from its source (PACS export, archive)",
            ) from e
    if not has_prefix and not any(k in ds for k in ("SOPClassUID", "Modality", "Rows")):
        if strict:
            raise DicomInputError("not a DICOM file (no SOP Class, Modality or Rows)", path=path)
        return None
    ts = _transfer_syntax(ds)
    try:
        deflated = ts.is_deflated
    except ValueError as e:  # pydicom: "UID is not a transfer syntax"
        raise DicomInputError(
            f"TransferSyntaxUID {str(ts)[:64]!r} is not a transfer syntax", path=path, hint=_CORRUPT_HINT
        ) from e
    if deflated:
        return _deflated_header(path, ds, ts)
    broken = None
    if len(tag) < 4:
        offset = None
        if specific_tags is None:
            broken = _truncation(ds)
    else:
        fmt = ">HH" if ts == ExplicitVRBigEndian else "<HH"
        if struct.unpack(fmt, tag) not in _PIXEL_TAGS:
            offset = None
    return _Header(path=path, ds=ds, pixel_offset=offset, transfer_syntax=ts, broken=broken)


def _deflated_header(path: Path, ds: Dataset, ts: UID) -> _Header:
    """Header of a Deflated Explicit VR Little Endian file: the dataset after the file meta is
    zlib-compressed, so there is no raw pixel data offset; pydicom inflates the whole file to
    tell whether it holds pixel data (``pixel_offset`` 0 = present, decoded by pydicom)."""
    try:
        full = pydicom.dcmread(path)
    except Exception as e:  # zlib and pydicom raise several types for a corrupt stream
        raise DicomInputError(
            f"the deflated DICOM dataset cannot be inflated ({type(e).__name__})",
            path=path,
            hint="copy the file again from its source (PACS export, archive)",
        ) from e
    offset = 0 if any(k in full for k in _PIXEL_ELEMENTS) else None
    return _Header(path=path, ds=ds, pixel_offset=offset, transfer_syntax=ts)


def _mapped(fp: Any) -> Any:
    """A read-only memory map of the open file ``fp`` for pydicom to parse (``fp`` itself when empty).

    ``mmap.read(n)`` returns at most the bytes left, where a file object first allocates ``n``
    bytes: a corrupt element length of 4 GB in a 1 KB file would otherwise allocate 4 GB.
    """
    if os.fstat(fp.fileno()).st_size == 0:
        return fp
    return mmap.mmap(fp.fileno(), 0, access=mmap.ACCESS_READ)


def _detach(ds: Dataset, path: Path, src: Any) -> None:
    """Make ``ds`` (parsed from the memory map ``src``) look as if read from ``path``, and unmap.

    pydicom keeps a parsed buffer in ``ds.buffer``; medseg never defers reading values, so the
    map is closed at once instead of living as long as the header (one map per slice).
    """
    if not isinstance(src, mmap.mmap):
        return
    if getattr(ds, "buffer", None) is not None:
        ds.buffer = None
        ds.filename = str(path)
        ds.fileobj_type = open
    src.close()


def read_dataset(path: str | PathLike[str], *, force: bool = False) -> Dataset:
    """The whole dataset of the DICOM file ``path`` (pixel data included), memory bounded by its size.

    Parsed from a memory map (see :func:`_mapped`); every pydicom failure becomes a
    :class:`DicomInputError` naming the file.
    """
    p = Path(path)
    try:
        with open(p, "rb") as fp:
            src = _mapped(fp)
            ds = pydicom.dcmread(src, force=force)
            _detach(ds, p, src)
            return ds
    except OSError as e:
        if e.errno is not None:
            raise InputError(f"cannot open the file ({e.strerror})", path=p, hint="check permissions") from e
        raise DicomInputError(
            f"cannot read the file as DICOM, it is not DICOM or corrupt ({type(e).__name__}: "
            f"{' '.join(str(e).split())[:160]})",
            path=p,
            hint="copy the file again from its source (PACS export, archive)",
        ) from e
    except Exception as e:  # noqa: BLE001 - pydicom raises many types on corrupt files
        raise DicomInputError(
            f"cannot read the file as DICOM, it is not DICOM or corrupt ({type(e).__name__}: "
            f"{' '.join(str(e).split())[:160]})",
            path=p,
            hint="copy the file again from its source (PACS export, archive)",
        ) from e


def _truncation(ds: Dataset) -> str | None:
    """Why a header that ran to the end of its file looks cut short, or None.

    pydicom stops quietly at the end of a file, so a truncated file parses as a shorter dataset:
    the last element is shorter than its declared length, or an image object has no pixel data.
    """
    keys = list(ds.keys())
    if keys:
        last = ds.get_item(keys[-1])
        length = getattr(last, "length", None)
        value = getattr(last, "value", None)
        if isinstance(value, bytes) and length is not None and length != 0xFFFFFFFF and len(value) < length:
            return f"the file ends inside element {last.tag} ({len(value)} of {length} bytes)"
    sop = str(ds.get("SOPClassUID", "") or "")
    name = UID(sop).name if sop else ""
    if "Image Storage" in name or "Rows" in ds:
        return f"a {name or 'image'} object whose file ends before its pixel data"
    return None


def _find_files(folder: Path) -> list[Path]:
    """All regular files under ``folder`` (recursive, sorted), DICOMDIR and hidden files excluded."""
    out: list[Path] = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith(".") or name.upper() == "DICOMDIR":
                continue
            out.append(Path(root) / name)
    return out


def _scan(paths: Iterable[Path], *, specific_tags: list[str] | None = None) -> list[_Header]:
    headers = []
    for p in paths:
        h = _read_header(p, strict=False, specific_tags=specific_tags)
        if h is None:
            log.debug("skipping %s: not DICOM", p)
            continue
        try:
            media_class = str(getattr(h.ds, "file_meta", {}).get("MediaStorageSOPClassUID", ""))
        except Exception as e:  # noqa: BLE001 - a corrupt element decodes lazily, on access
            raise DicomInputError(
                f"the file meta cannot be decoded ({type(e).__name__}: {str(e)[:120]})", path=p, hint=_CORRUPT_HINT
            ) from e
        if h.sop_class == _DICOMDIR_SOP_CLASS or media_class == _DICOMDIR_SOP_CLASS:
            continue
        headers.append(h)
    return headers


def _collect(path: str | PathLike[str] | Sequence[str | PathLike[str]]) -> tuple[Path | None, list[Path]]:
    """(display path, candidate files) for a folder, a file, or a list of files."""
    if isinstance(path, (str, PathLike)):
        p = existing_path(path)
        if p.is_dir():
            files = _find_files(p)
            if not files:
                raise InputError(
                    "the folder is empty", path=p, hint="point to the folder that holds the DICOM files"
                )
            return p, files
        return p, [p]
    files = [existing_path(f) for f in path]
    if not files:
        raise InputError("an empty list of DICOM files was given", hint="pass a folder or at least one file")
    for f in files:
        if f.is_dir():
            raise InputError(
                "a list of DICOM files may not contain folders", path=f, hint="pass the folder itself"
            )
    parent = Path(os.path.commonpath([str(f.resolve().parent) for f in files]))
    return parent, files


# ---------------------------------------------------------------------------------------------
# attribute checks: every attribute the readers use is checked here before it is used
# ---------------------------------------------------------------------------------------------
_CORRUPT_HINT = "the header is corrupt; export the file again from its source (PACS, archive)"
#: SOP classes whose images are slices of a volume: they must say where they are
_CROSS_SECTIONAL = {
    "1.2.840.10008.5.1.4.1.1.2": "CT",
    "1.2.840.10008.5.1.4.1.1.4": "MR",
    "1.2.840.10008.5.1.4.1.1.128": "PET",
    "1.2.840.10008.5.1.4.1.1.20": "NM",
}


def _value(ds: Dataset, keyword: str, where: Path) -> Any:
    """``ds.get(keyword)``; a value pydicom cannot decode (corrupt VR or length, raised lazily on
    access) becomes a :class:`DicomInputError` naming the attribute."""
    try:
        return ds.get(keyword)
    except Exception as e:  # noqa: BLE001 - pydicom raises many types while decoding a value
        raise DicomInputError(
            f"{keyword} cannot be decoded ({type(e).__name__}: {str(e)[:120]})", path=where, hint=_CORRUPT_HINT
        ) from e


def _one_number(value: Any, keyword: str, where: Path) -> float:
    """The single finite number in ``value`` (a DICOM value of VM 1)."""
    if isinstance(value, (list, tuple)) or (hasattr(value, "__len__") and not isinstance(value, (str, bytes))):
        items = list(value)
        if len(items) != 1:
            raise DicomInputError(
                f"{keyword} must hold one value, it holds {len(items)}: {items[:4]!r}", path=where, hint=_CORRUPT_HINT
            )
        value = items[0]
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError) as e:
        raise DicomInputError(f"{keyword} is not a number: {value!r}", path=where, hint=_CORRUPT_HINT) from e
    if not np.isfinite(number):
        raise DicomInputError(f"{keyword} is {value!r}, not a finite number", path=where, hint=_CORRUPT_HINT)
    return number


def _int_attr(ds: Dataset, keyword: str, where: Path, lo: int, hi: int, default: int | None = None) -> int:
    """A whole number attribute in ``[lo, hi]``; missing/empty gives ``default`` (required if None)."""
    value = _value(ds, keyword, where)
    if value is None or (isinstance(value, (str, bytes, list)) and len(value) == 0):
        if default is None:
            raise DicomInputError(f"{keyword} is missing or empty", path=where, hint=_CORRUPT_HINT)
        return default
    number = _one_number(value, keyword, where)
    if number != int(number) or not lo <= number <= hi:
        raise DicomInputError(f"{keyword} is {value!r}, expected a whole number in {lo}..{hi}", path=where, hint=_CORRUPT_HINT)
    return int(number)


def _float_attr(ds: Dataset, keyword: str, where: Path, default: float) -> float:
    """A single finite number; missing/empty gives ``default``."""
    value = _value(ds, keyword, where)
    if value is None or (isinstance(value, (str, bytes, list)) and len(value) == 0):
        return default
    return _one_number(value, keyword, where)


def _spacing_attr(ds: Dataset, keyword: str, where: Path) -> np.ndarray | None:
    """A pixel spacing attribute (row, column spacing in mm) checked for 2 values in range, or None."""
    value = _value(ds, keyword, where)
    if value is None or (isinstance(value, (str, bytes, list)) and len(value) == 0):
        return None
    items = list(value) if hasattr(value, "__len__") and not isinstance(value, (str, bytes)) else [value]
    if len(items) != 2:
        raise DicomInputError(
            f"{keyword} must hold 2 values (row, column spacing in mm), it holds {len(items)}: {items[:4]!r}",
            path=where,
            hint=_CORRUPT_HINT,
        )
    arr = np.array([_one_number(v, keyword, where) for v in items])
    if np.all(arr == 0.0):  # "0\\0" is written by some modalities for "not calibrated": treat as absent
        log.info("%s: %s is 0 (not calibrated); treated as missing", where, keyword)
        return None
    lo, hi = SPACING_RANGE_MM
    if not np.all((arr >= lo) & (arr <= hi)):
        raise DicomInputError(
            f"{keyword} is {items!r} mm, outside {lo:g}..{hi:g} mm", path=where, hint=_CORRUPT_HINT
        )
    return arr


def _check_header(h: _Header) -> None:
    """Check every header attribute an image reader uses, before any pixel memory is allocated.

    Raises :class:`DicomInputError` naming the file and the attribute: size attributes missing,
    zero, multi-valued, non-numeric or out of range; a pixel payload larger than
    :data:`~medseg.io._common.MAX_VOXELS` or than the bytes the file holds (uncompressed);
    spacing/position/orientation/rescale values that are not finite or implausible; a CT/MR/PET
    slice without ImagePositionPatient/ImageOrientationPatient (it would read as a 2-D picture).
    """
    ds, where = h.ds, h.path
    rows = _int_attr(ds, "Rows", where, 1, 65535)
    cols = _int_attr(ds, "Columns", where, 1, 65535)
    bits = _int_attr(ds, "BitsAllocated", where, 1, 64)
    _int_attr(ds, "BitsStored", where, 1, bits, default=bits)
    _int_attr(ds, "PixelRepresentation", where, 0, 1, default=0)
    spp = _int_attr(ds, "SamplesPerPixel", where, 1, 4, default=1)
    frames = _int_attr(ds, "NumberOfFrames", where, 1, MAX_VOXELS, default=1)
    voxels = rows * cols * frames
    if voxels > MAX_VOXELS:
        raise DicomInputError(
            f"Rows x Columns x NumberOfFrames = {rows} x {cols} x {frames} is more than medseg reads ({MAX_VOXELS:,} voxels)",
            path=where,
            hint=_CORRUPT_HINT,
        )
    if h.pixel_offset is not None and (h.transfer_syntax in _NATIVE_LE or h.transfer_syntax == ExplicitVRBigEndian):
        need = (voxels * spp * bits + 7) // 8
        have = os.path.getsize(where) - h.pixel_offset
        if need > have:
            raise DicomInputError(
                f"Rows x Columns x NumberOfFrames x BitsAllocated ({rows} x {cols} x {frames} x {bits}) need "
                f"{need:,} bytes of pixel data, the file holds {max(have, 0):,} after the header",
                path=where,
                hint="the file is truncated or its header is corrupt; copy it again from its source",
            )
    for keyword in ("Modality", "PhotometricInterpretation", "SOPClassUID", "SeriesInstanceUID"):
        _value(ds, keyword, where)
    for keyword in _SPACING_TAGS:
        _spacing_attr(ds, keyword, where)
    ipp = _value(ds, "ImagePositionPatient", where)
    iop = _value(ds, "ImageOrientationPatient", where)
    if ipp is not None:
        pos = _floats(ipp, 3, "ImagePositionPatient", where)
        if np.abs(pos).max() >= MAX_ORIGIN_MM:
            raise DicomInputError(
                f"ImagePositionPatient {pos.tolist()} mm is beyond {MAX_ORIGIN_MM:g} mm", path=where, hint=_CORRUPT_HINT
            )
    if iop is not None:
        _floats(iop, 6, "ImageOrientationPatient", where)
    if "PerFrameFunctionalGroupsSequence" not in ds:
        sop = h.sop_class
        missing = [kw for kw, v in (("ImagePositionPatient", ipp), ("ImageOrientationPatient", iop)) if v is None]
        if missing and (len(missing) == 1 or sop in _CROSS_SECTIONAL):
            what = _CROSS_SECTIONAL.get(sop, str(ds.get("Modality", "") or "image"))
            raise DicomInputError(
                f"a {what} slice without {' and '.join(missing)}: its place in the volume is unknown, "
                "and reading it as a 2-D picture would be wrong",
                path=where,
                hint=_CORRUPT_HINT,
            )
    for keyword in ("SpacingBetweenSlices", "SliceThickness"):
        _float_attr(ds, keyword, where, 1.0)
    slope = _float_attr(ds, "RescaleSlope", where, 1.0)
    _float_attr(ds, "RescaleIntercept", where, 0.0)
    if slope == 0:
        raise DicomInputError("RescaleSlope is 0 (every pixel would be the same value)", path=where, hint=_CORRUPT_HINT)
    for keyword in ("WindowCenter", "WindowWidth"):
        value = _value(ds, keyword, where)
        if value is not None and value != "":
            items = list(value) if hasattr(value, "__len__") and not isinstance(value, (str, bytes)) else [value]
            for v in items:
                _one_number(v, keyword, where)
    for keyword in ("ModalityLUTSequence", "VOILUTSequence"):
        seq = _value(ds, keyword, where)
        for item in seq or []:
            desc = _value(item, "LUTDescriptor", where)
            if desc is None:
                continue
            items = list(desc) if hasattr(desc, "__len__") and not isinstance(desc, (str, bytes)) else [desc]
            if len(items) != 3:
                raise DicomInputError(f"{keyword} LUTDescriptor must hold 3 values, got {items!r}", path=where, hint=_CORRUPT_HINT)
            entry_bits = _one_number(items[2], f"{keyword} LUTDescriptor", where)
            if not 8 <= entry_bits <= 16:
                raise DicomInputError(
                    f"{keyword} LUTDescriptor declares {entry_bits:g}-bit entries; DICOM allows 8..16",
                    path=where,
                    hint=_CORRUPT_HINT,
                )


def check_seg_dataset(ds: Dataset, where: Path) -> None:
    """Check the attributes of a DICOM-SEG that its reader (highdicom) uses, before it allocates.

    Raises :class:`DicomInputError` naming the file and attribute for: Rows/Columns/NumberOfFrames
    missing, zero or absurd; pixel data shorter than the frames need (uncompressed); no
    SegmentSequence items; no DimensionIndexSequence; an unknown SegmentationType; per-frame
    items that do not match NumberOfFrames; spacing, thickness or positions not finite or out of
    range; a volume whose slice count (span of the frame positions / SpacingBetweenSlices)
    times Rows x Columns x segments exceeds :data:`~medseg.io._common.MAX_VOXELS`.
    """
    rows = _int_attr(ds, "Rows", where, 1, 65535)
    cols = _int_attr(ds, "Columns", where, 1, 65535)
    frames = _int_attr(ds, "NumberOfFrames", where, 1, MAX_VOXELS)
    bits = _int_attr(ds, "BitsAllocated", where, 1, 16)
    _int_attr(ds, "BitsStored", where, 1, bits)
    _int_attr(ds, "HighBit", where, 0, bits - 1)
    _int_attr(ds, "SamplesPerPixel", where, 1, 1)
    _int_attr(ds, "PixelRepresentation", where, 0, 1)
    if rows * cols * frames > MAX_VOXELS:
        raise DicomInputError(
            f"Rows x Columns x NumberOfFrames = {rows} x {cols} x {frames} is more than medseg reads",
            path=where,
            hint=_CORRUPT_HINT,
        )
    seg_type = str(_value(ds, "SegmentationType", where) or "")
    allowed_bits = {"BINARY": (1,), "FRACTIONAL": (8,), "LABELMAP": (8, 16)}
    if seg_type not in allowed_bits:
        raise DicomInputError(
            f"SegmentationType {seg_type!r} is not BINARY, FRACTIONAL or LABELMAP", path=where, hint=_CORRUPT_HINT
        )
    if bits not in allowed_bits[seg_type]:
        raise DicomInputError(
            f"BitsAllocated {bits} does not fit SegmentationType {seg_type} (needs {allowed_bits[seg_type]})",
            path=where,
            hint=_CORRUPT_HINT,
        )
    labelmap_class = str(_value(ds, "SOPClassUID", where) or "") == SEG_SOP_CLASSES[1]
    if labelmap_class != (seg_type == "LABELMAP"):
        raise DicomInputError(
            f"SegmentationType {seg_type} does not match the SOP class {_value(ds, 'SOPClassUID', where)} "
            "(LABELMAP goes with Label Map Segmentation Storage, and only it)",
            path=where,
            hint=_CORRUPT_HINT,
        )
    photometric = str(_value(ds, "PhotometricInterpretation", where) or "")
    if photometric not in (("MONOCHROME2", "PALETTE COLOR") if seg_type == "LABELMAP" else ("MONOCHROME2",)):
        raise DicomInputError(
            f"PhotometricInterpretation {photometric!r} is not allowed in a {seg_type} SEG", path=where, hint=_CORRUPT_HINT
        )
    try:  # pydicom decodes values (and sequence items) lazily: decode every element now, once
        ds.walk(lambda _ds, _elem: None)
    except Exception as e:  # noqa: BLE001 - pydicom raises many types for a corrupt value
        raise DicomInputError(
            f"an element cannot be decoded ({type(e).__name__}: {' '.join(str(e).split())[:120]})",
            path=where,
            hint=_CORRUPT_HINT,
        ) from e
    if seg_type == "FRACTIONAL":
        _int_attr(ds, "MaximumFractionalValue", where, 1, 255)
    segments = _value(ds, "SegmentSequence", where)
    if not segments:
        raise DicomInputError("the SEG has no SegmentSequence items (no segments)", path=where, hint=_CORRUPT_HINT)
    for item in segments:  # a LABELMAP may describe its background as segment 0 (highdicom does)
        _int_attr(item, "SegmentNumber", where, 0 if seg_type == "LABELMAP" else 1, 65535)
    if not _value(ds, "DimensionIndexSequence", where):
        raise DicomInputError("the SEG has no DimensionIndexSequence", path=where, hint=_CORRUPT_HINT)
    per_frame = _value(ds, "PerFrameFunctionalGroupsSequence", where) or []
    if len(per_frame) != frames:
        raise DicomInputError(
            f"PerFrameFunctionalGroupsSequence has {len(per_frame)} items for NumberOfFrames {frames}",
            path=where,
            hint=_CORRUPT_HINT,
        )
    meta = getattr(ds, "file_meta", None)
    ts = UID(str(meta.get("TransferSyntaxUID", ""))) if meta is not None else None
    pixels = _value(ds, "PixelData", where)
    if not pixels:
        raise DicomInputError("the SEG has no PixelData", path=where, hint="the file is truncated; copy it again")
    if ts is not None and ts.is_transfer_syntax and not ts.is_compressed:
        need = (rows * cols * frames * bits + 7) // 8
        if len(pixels) < need:
            raise DicomInputError(
                f"PixelData holds {len(pixels):,} bytes where {frames} frames of {rows} x {cols} x {bits} bit need {need:,}",
                path=where,
                hint="the file is truncated; copy it again",
            )
        if seg_type == "LABELMAP":  # every stored value must name a segment (or be 0)
            numbers = {int(item.SegmentNumber) for item in segments}
            values = np.frombuffer(pixels, dtype="<u1" if bits == 8 else "<u2", count=rows * cols * frames)
            stored = {int(v) for v in np.flatnonzero(np.bincount(values))} - {0}
            if not stored <= numbers:
                raise DicomInputError(
                    f"the label map holds values {sorted(stored - numbers)[:8]} that are no SegmentNumber "
                    f"({sorted(numbers)[:8]})",
                    path=where,
                    hint=_CORRUPT_HINT,
                )
    shared = (_value(ds, "SharedFunctionalGroupsSequence", where) or [None])[0]
    spacing = None
    iop = None
    for holder in [shared, *per_frame[:1]]:
        if holder is None:
            continue
        measures = holder.get("PixelMeasuresSequence")
        if measures:
            _spacing_attr(measures[0], "PixelSpacing", where)
            lo, hi = SPACING_RANGE_MM
            for keyword in ("SliceThickness", "SpacingBetweenSlices"):
                value = _value(measures[0], keyword, where)
                if value not in (None, ""):
                    number = _one_number(value, keyword, where)
                    if not lo <= abs(number) <= hi:
                        raise DicomInputError(
                            f"{keyword} is {value!r} mm, outside {lo:g}..{hi:g} mm", path=where, hint=_CORRUPT_HINT
                        )
                    if keyword == "SpacingBetweenSlices":
                        spacing = abs(number)
        orientation = holder.get("PlaneOrientationSequence")
        if orientation and orientation[0].get("ImageOrientationPatient") is not None:
            iop = _floats(orientation[0].ImageOrientationPatient, 6, "ImageOrientationPatient", where)
    positions = []
    for k, item in enumerate(per_frame):
        plane = item.get("PlanePositionSequence")
        if plane and plane[0].get("ImagePositionPatient") is not None:
            pos = _floats(plane[0].ImagePositionPatient, 3, f"ImagePositionPatient of frame {k + 1}", where)
            if np.abs(pos).max() >= MAX_ORIGIN_MM:
                raise DicomInputError(
                    f"ImagePositionPatient of frame {k + 1} is {pos.tolist()} mm, beyond {MAX_ORIGIN_MM:g} mm",
                    path=where,
                    hint=_CORRUPT_HINT,
                )
            positions.append(pos)
    if iop is not None and len(positions) > 1:
        normal = np.cross(iop[:3], iop[3:])
        dist = np.unique(np.round(np.array(positions) @ normal, 5))
        if dist.size > 1 and float(np.diff(dist).min()) < SPACING_RANGE_MM[0]:
            raise DicomInputError(
                f"two frame positions are {float(np.diff(dist).min()):.2g} mm apart along the slice normal, "
                f"less than {SPACING_RANGE_MM[0]:g} mm",
                path=where,
                hint="the ImagePositionPatient of the frames is corrupt",
            )
        step = spacing or (float(np.diff(dist).min()) if dist.size > 1 else 1.0)
        slices = (float(dist[-1] - dist[0]) / max(step, 1e-6)) + 1 if dist.size > 1 else 1
        voxels = slices * rows * cols * len(segments)
        if voxels > MAX_VOXELS:
            raise DicomInputError(
                f"the frames span {float(dist[-1] - dist[0]):.4g} mm at {step:.4g} mm spacing: a volume of "
                f"{slices:,.0f} slices x {rows} x {cols} x {len(segments)} segments, more than medseg reads",
                path=where,
                hint="SpacingBetweenSlices or the frame positions are corrupt",
            )


# ---------------------------------------------------------------------------------------------
# series listing
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SeriesInfo:
    """One DICOM series found in a folder.

    Attributes:
        uid: SeriesInstanceUID.
        modality: Modality (``"CT"``, ``"CR"``, ``"RTSTRUCT"``, ...).
        description: SeriesDescription (may be empty).
        number_of_files: number of files of the series.
        first_file: the first of its files (sorted by path).
        series_number: SeriesNumber or ``None``.
        sop_class: name of the SOP class of its first file (e.g. ``"CT Image Storage"``).
        is_image: whether :func:`read_dicom` can read it as an image (some file has pixel data and
            is not a SEG; non-image files of the series are skipped when reading).
    """

    uid: str
    modality: str
    description: str
    number_of_files: int
    first_file: Path
    series_number: int | None = None
    sop_class: str = ""
    is_image: bool = True

    def describe(self) -> str:
        desc = f" '{self.description}'" if self.description else ""
        return f"{self.uid} ({self.modality}{desc}, {self.number_of_files} file{'s' if self.number_of_files != 1 else ''})"


_LIST_TAGS = [
    "SOPClassUID",
    "SeriesInstanceUID",
    "Modality",
    "SeriesDescription",
    "SeriesNumber",
    "Rows",
]


def _series_infos(headers: list[_Header]) -> list[SeriesInfo]:
    groups: dict[str, list[_Header]] = {}
    for h in headers:
        groups.setdefault(h.series_uid, []).append(h)
    infos = []
    for uid, hs in groups.items():
        ds = hs[0].ds
        number = ds.get("SeriesNumber")
        try:
            series_number = int(number) if number not in (None, "") else None
        except (TypeError, ValueError):
            series_number = None
        sop = UID(hs[0].sop_class) if hs[0].sop_class else None
        infos.append(
            SeriesInfo(
                uid=uid,
                modality=str(ds.get("Modality", "") or "OT"),
                description=str(ds.get("SeriesDescription", "") or ""),
                number_of_files=len(hs),
                first_file=hs[0].path,
                series_number=series_number,
                sop_class=(sop.name if sop is not None else ""),
                is_image=any(h.category not in ("nonimage", "seg") for h in hs),
            )
        )
    infos.sort(key=lambda s: (s.series_number if s.series_number is not None else 1 << 30, s.uid))
    return infos


@reader_guard(DicomInputError, "DICOM data")
def list_series(folder: str | PathLike[str] | Sequence[str | PathLike[str]]) -> list[SeriesInfo]:
    """List the DICOM series in a folder (recursive), a single file, or a list of files.

    Only the few header elements needed are kept (``specific_tags``), so this is fast on large
    folders. Non-DICOM files are skipped. Sorted by SeriesNumber, then UID.
    """
    root, files = _collect(folder)
    headers = _scan(files, specific_tags=_LIST_TAGS)
    if not headers:
        raise DicomInputError(
            "no DICOM files found", path=root, hint="point to the folder that holds the DICOM files"
        )
    return _series_infos(headers)


# ---------------------------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------------------------
@reader_guard(DicomInputError, "DICOM data")
def read_dicom(
    path: str | PathLike[str] | Sequence[str | PathLike[str]],
    *,
    series_uid: str | None = None,
    kind: ImageKind = "intensity",
) -> Image:
    """Read a DICOM image: a series folder, a list of files, or one file (see module docstring).

    Args:
        path: a folder (searched recursively), a list of files, or a single file.
        series_uid: the SeriesInstanceUID to read when the folder holds several series.
        kind: ``"intensity"`` (HU for CT) or ``"label"`` (integer label image; values must be
            whole numbers).

    Returns:
        a 3-D :class:`Image` ``(z, y, x)`` with a 4x4 LPS affine for series and multi-frame
        volumes, or a 2-D ``(y, x)`` radiograph with a 3x3 in-plane affine.

    Raises:
        DicomInputError: not DICOM, not an image (SR, RTSTRUCT, SEG...), colour, several series
            without ``series_uid``, truncated pixel data.
        GeometryError: missing or duplicated slices, mixed orientations, non-uniform spacing.
    """
    root, files = _collect(path)
    single = len(files) == 1 and isinstance(path, (str, PathLike)) and not Path(path).is_dir()
    if single:
        first = _read_header(files[0], strict=True)
        if first is None:  # strict reading raises instead; kept for type narrowing
            raise DicomInputError("not a DICOM file", path=files[0])
        headers = [first]
    else:
        headers = _scan(files)
        if not headers:
            raise DicomInputError(
                f"no DICOM files among the {len(files)} file(s) found",
                path=root,
                hint="point to a folder of DICOM files",
            )
    if series_uid is not None:
        chosen = [h for h in headers if h.series_uid == series_uid]
        if not chosen:
            known = "; ".join(s.describe() for s in _series_infos(headers))
            raise DicomInputError(
                f"no series with SeriesInstanceUID {series_uid}; found: {known}",
                path=root,
                hint="copy a UID from `medseg info PATH`",
            )
        headers = chosen
    for h in headers:
        if h.broken:
            raise DicomInputError(
                f"the file is truncated or corrupt: {h.broken}",
                path=h.path,
                hint="copy the file again from its source (PACS export, archive), or remove it",
            )
    images = [h for h in headers if h.category not in ("nonimage", "seg")]
    if not images:
        h = headers[0]
        sop = UID(h.sop_class).name if h.sop_class else "object without SOP Class"
        what = "a DICOM Segmentation (SEG)" if h.category == "seg" else f"a {sop}"
        where = (
            f"{len(headers)} DICOM file(s), none an image; the first is" if len(headers) > 1 else "this is"
        )
        raise DicomInputError(
            f"{where} {what} (Modality {h.ds.get('Modality', '?')}), not an image with pixel data",
            path=h.path if len(headers) == 1 else root,
            hint="pass the image file or series folder (CT, CR/DX); SEG and RTSTRUCT objects are read by their own readers",
        )
    skipped = len(headers) - len(images)
    if skipped:
        log.info("%s: skipped %d non-image DICOM file(s) (SR, RTSTRUCT, SEG, ...)", root, skipped)
    groups: dict[str, list[_Header]] = {}
    for h in images:
        groups.setdefault(h.series_uid, []).append(h)
    if len(groups) > 1:
        listing = "; ".join(s.describe() for s in _series_infos(images))
        raise DicomInputError(
            f"{len(groups)} image series found: {listing}",
            path=root,
            hint="pass series_uid=... (CLI: --series-uid UID) to pick one",
        )
    (series,) = groups.values()
    for h in series:
        _check_header(h)
    cats = {h.category for h in series}
    if "enhanced" in cats:
        if len(series) > 1:
            raise DicomInputError(
                f"the series mixes {len(series)} files including enhanced multi-frame images",
                path=root,
                hint="pass the multi-frame file itself",
            )
        image = _read_enhanced(series[0], root, kind)
    elif "planar" in cats:
        if len(series) > 1:
            raise DicomInputError(
                f"the series holds {len(series)} 2-D images without slice positions (radiographs?)",
                path=root,
                hint="pass one file to read one radiograph",
            )
        image = _read_radiograph(series[0], kind)
    else:
        head = series[0].ds
        voxels = len(series) * int(head.Rows) * int(head.Columns)
        if voxels > MAX_VOXELS:
            raise DicomInputError(
                f"{len(series)} slices of {head.Rows} x {head.Columns} are more than medseg reads "
                f"({MAX_VOXELS:,} voxels)",
                path=root,
                hint="pass a smaller series, or check the Rows/Columns of its files",
            )
        image = _read_series(series, root, kind)
    check_image(
        image.array,
        image.affine,
        image.source.path or root,
        "the DICOM geometry (PixelSpacing, ImagePositionPatient, ImageOrientationPatient)",
    )
    return image


# ---------------------------------------------------------------------------------------------
# geometry
# ---------------------------------------------------------------------------------------------
def _floats(value: Any, n: int, what: str, where: Path | str) -> np.ndarray:
    try:
        arr = np.array([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise DicomInputError(f"{what} is not numeric: {value!r}", path=where) from e
    if arr.shape != (n,) or not np.all(np.isfinite(arr)):
        raise DicomInputError(f"{what} must hold {n} finite numbers, got {value!r}", path=where)
    return arr


def _stack_geometry(
    iops: np.ndarray,
    ipps: np.ndarray,
    spacings: np.ndarray,
    names: Sequence[str],
    where: Path | str | None,
    fallback_spacing: float,
    unit: str = "slice",
) -> tuple[np.ndarray, np.ndarray]:
    """Sort a stack of 2-D planes and build its affine, checking the geometry.

    Args:
        iops: ``(n, 6)`` ImageOrientationPatient per plane.
        ipps: ``(n, 3)`` ImagePositionPatient per plane (LPS mm).
        spacings: ``(n, 2)`` PixelSpacing per plane (row spacing, column spacing).
        names: a name per plane for messages (file name or frame number).
        where: file or folder named in errors.
        fallback_spacing: slice spacing used when there is a single plane.

    Returns:
        ``(order, affine)``: the plane indices sorted along the slice normal, and the 4x4 affine
        mapping ``(col, row, slice)`` to LPS mm.
    """
    n = len(ipps)
    if np.abs(iops - iops[0]).max() > 1e-3:
        k = int(np.argmax(np.abs(iops - iops[0]).max(axis=1)))
        raise GeometryError(
            f"the {unit}s have different orientations: {names[0]} has ImageOrientationPatient "
            f"{np.round(iops[0], 4).tolist()}, {names[k]} has {np.round(iops[k], 4).tolist()}",
            path=where,
            hint="the series mixes stacks (e.g. a localizer); pass only the files of one stack",
        )
    r, c = iops[0, :3], iops[0, 3:]
    if np.linalg.norm(r) < 1e-6 or np.linalg.norm(c) < 1e-6:
        raise GeometryError(f"ImageOrientationPatient {iops[0].tolist()} has a zero vector", path=where)
    r = r / np.linalg.norm(r)
    c = c / np.linalg.norm(c)
    if abs(float(r @ c)) > 1e-3:
        raise GeometryError(
            f"ImageOrientationPatient {iops[0].tolist()} is not orthogonal",
            path=where,
            hint="the header is corrupt",
        )
    c = c - (r @ c) * r
    c = c / np.linalg.norm(c)
    normal = np.cross(r, c)
    if np.abs(spacings - spacings[0]).max() > 1e-4 * max(1.0, float(spacings[0].max())):
        raise GeometryError(
            f"the {unit}s have different PixelSpacing values", path=where, hint="pass one series"
        )
    row_spacing, col_spacing = float(spacings[0][0]), float(spacings[0][1])

    dist = ipps @ normal
    order = np.argsort(dist, kind="stable")
    d = dist[order]
    if n > 1:
        diffs = np.diff(d)
        dup_tol = max(0.01, 0.01 * float(np.median(diffs)))
        dups = np.flatnonzero(diffs < dup_tol)
        if dups.size:
            pairs = ", ".join(
                f"{names[order[i]]} and {names[order[i + 1]]} at {d[i]:.2f} mm" for i in dups[:5]
            )
            raise GeometryError(
                f"{dups.size} duplicated {unit} position(s) along the slice normal: {pairs}",
                path=where,
                hint="remove the duplicated files (or pass one acquisition / stack only)",
            )
        offsets = ipps[order] - ipps[order][0]
        inplane = offsets - np.outer(offsets @ normal, normal)
        drift = float(np.linalg.norm(inplane, axis=1).max())
        if drift > max(0.01, 0.01 * min(row_spacing, col_spacing)):
            raise GeometryError(
                f"the {unit} positions drift {drift:.3f} mm sideways (gantry tilt or sheared stack)",
                path=where,
                hint="resample the series to an orthogonal grid first (e.g. in 3D Slicer)",
            )
        base = float(diffs.min())
        tol = max(0.01, 0.01 * base)
        nominal = float(diffs[np.abs(diffs - base) <= tol].mean())
        steps = np.rint(diffs / nominal)
        fits = np.abs(diffs - steps * nominal) <= tol * np.maximum(steps, 1)
        if fits.all() and (steps > 1).any():
            gaps = np.flatnonzero(steps > 1)
            missing = [d[i] + j * nominal for i in gaps for j in range(1, int(steps[i]))]
            where_gaps = "; ".join(
                f"between {names[order[i]]} ({d[i]:.2f} mm) and {names[order[i + 1]]} ({d[i + 1]:.2f} mm)"
                for i in gaps[:5]
            )
            raise GeometryError(
                f"{len(missing)} {unit}(s) missing at "
                + ", ".join(f"{m:.2f}" for m in missing[:10])
                + (", ..." if len(missing) > 10 else "")
                + f" mm along the slice normal ({where_gaps}); the other {unit}s are {nominal:.4g} mm apart",
                path=where,
                hint="export the complete series again (a file is missing)",
            )
        if not fits.all():
            k = int(np.argmax(np.abs(diffs - nominal)))
            raise GeometryError(
                f"non-uniform {unit} spacing: {diffs.min():.4g} to {diffs.max():.4g} mm "
                f"(e.g. {diffs[k]:.4g} mm between {names[order[k]]} and {names[order[k + 1]]})",
                path=where,
                hint="resample to uniform spacing first, or pass the uniformly spaced part only",
            )
        slice_spacing = float((d[-1] - d[0]) / (n - 1))
    else:
        slice_spacing = fallback_spacing
    affine = np.eye(4)
    affine[:3, 0] = r * col_spacing
    affine[:3, 1] = c * row_spacing
    affine[:3, 2] = normal * slice_spacing
    affine[:3, 3] = ipps[order[0]]
    return order, affine


def _pixel_spacing(ds: Dataset, where: Path) -> np.ndarray:
    arr = _spacing_attr(ds, "PixelSpacing", where)
    if arr is None:
        log.warning("%s: no PixelSpacing, assuming 1 mm", where)
        return np.ones(2)
    return arr


def _single_slice_spacing(ds: Dataset, where: Path) -> float:
    for kw in ("SpacingBetweenSlices", "SliceThickness"):
        v = ds.get(kw)
        try:
            if v not in (None, "") and float(v) > 0:
                return float(v)
        except (TypeError, ValueError):
            continue
    log.info("%s: single slice without SliceThickness, assuming 1 mm slice spacing", where)
    return 1.0


# ---------------------------------------------------------------------------------------------
# pixel data
# ---------------------------------------------------------------------------------------------
def _stored_dtype(ds: Dataset, where: Path) -> np.dtype:
    bits = int(ds.get("BitsAllocated", 16) or 16)
    signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
    table = {8: (np.uint8, np.int8), 16: (np.uint16, np.int16), 32: (np.uint32, np.int32)}
    if bits not in table:
        raise DicomInputError(
            f"unsupported BitsAllocated {bits}", path=where, hint="convert the series to 16-bit"
        )
    return np.dtype(table[bits][1 if signed else 0])


def _check_grey(ds: Dataset, where: Path, what: str) -> None:
    spp = int(ds.get("SamplesPerPixel", 1) or 1)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if spp != 1 or photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise DicomInputError(
            f"colour {what} ({photometric}, {spp} samples per pixel) is not supported; medseg reads greyscale images",
            path=where,
            hint="export the image as greyscale (MONOCHROME2)",
        )


def _truncated(where: Path, detail: str) -> DicomInputError:
    detail = " ".join(detail.split())[:300]  # decoder messages span lines; errors are one line
    return DicomInputError(
        f"the pixel data is truncated or corrupt ({detail})",
        path=where,
        hint="copy the file again from its source (PACS export, archive)",
    )


#: PyPI packages that provide pydicom's decoder plugins, to name in codec messages.
_PLUGIN_PACKAGES = {
    "gdcm": "python-gdcm",
    "pylibjpeg": "pylibjpeg with pylibjpeg-libjpeg, pylibjpeg-openjpeg and pylibjpeg-rle",
    "pillow": "pillow",
    "pyjpegls": "pyjpegls",
}


def _decode_error(where: Path, ts: UID, err: BaseException) -> DicomInputError:
    """The error for pixel data pydicom could not decode: names the codec and, for compressed
    data, the decoders tried and the PyPI package of each decoder not installed."""
    from pydicom.pixels import get_decoder

    if not ts.is_compressed or ts.is_deflated:
        return _truncated(where, f"{type(err).__name__}: {err}")
    log.debug("%s: %s decoding failed: %s: %s", where, ts.name, type(err).__name__, err)
    try:
        decoder = get_decoder(ts)
        tried = list(decoder.available_plugins)
        missing = [str(m).split(" ")[0] for m in decoder.missing_dependencies]
    except NotImplementedError:  # a transfer syntax pydicom has no decoder for
        tried, missing = [], []
    packages = [_PLUGIN_PACKAGES.get(m, m) for m in missing]
    hint = (
        "install " + " or ".join(packages) + f" (pip), another decoder of {ts.name} that pydicom uses; "
        "if it fails too, the pixel data is corrupt"
        if packages
        else "convert the file to an uncompressed transfer syntax (e.g. dcmdjpeg / gdcmconv --raw)"
    )
    return DicomInputError(
        f"the {ts.name} pixel data cannot be decoded by the installed decoder(s) "
        f"({', '.join(tried) or 'none'}): a codec variant they do not support, or corrupt data",
        path=where,
        hint=hint,
    )


def _read_native_into(h: _Header, out: np.ndarray) -> bool:
    """Read uncompressed little-endian pixel data of one frame straight into ``out`` (2-D, C order).

    Hand-written fast path: pydicom would first copy the whole element into a ``bytes`` object and
    then into an array; this reads the bytes once into their final place. Returns False when the
    element is encapsulated or odd, so the caller falls back to pydicom.
    """
    assert h.pixel_offset is not None
    implicit = h.transfer_syntax == ImplicitVRLittleEndian
    with open(h.path, "rb", buffering=0) as fp:
        fp.seek(h.pixel_offset)
        head = fp.read(8 if implicit else 12)
        if len(head) < (8 if implicit else 12):
            raise _truncated(h.path, "the file ends inside the pixel data element header")
        if struct.unpack("<HH", head[:4]) != (0x7FE0, 0x0010):
            return False
        (length,) = struct.unpack("<I", head[4:8] if implicit else head[8:12])
        if length == 0xFFFFFFFF:
            return False
        need = out.nbytes
        if length < need:
            raise _truncated(
                h.path, f"{length} bytes of pixel data where Rows x Columns x BitsAllocated need {need}"
            )
        view = out.data.cast("B")
        got = 0
        while got < need:
            n = fp.readinto(view[got:])
            if not n:
                raise _truncated(h.path, f"the file ends after {got} of {need} bytes of pixel data")
            got += n
    bits_alloc = int(h.ds.BitsAllocated)
    bits_stored = int(h.ds.get("BitsStored", bits_alloc) or bits_alloc)
    if bits_stored < bits_alloc:  # same correction pydicom applies: ignore the unused high bits
        shift = bits_alloc - bits_stored
        np.left_shift(out, shift, out=out)
        np.right_shift(out, shift, out=out)
    return True


def _decode_with_pydicom(h: _Header, index: int | None = None) -> np.ndarray:
    """Decode pixel data with pydicom (compressed / big endian / multi-frame files)."""
    try:
        ds = read_dataset(h.path, force=True)
        if not getattr(ds, "file_meta", None) or "TransferSyntaxUID" not in ds.file_meta:
            ds.file_meta = ds.file_meta if getattr(ds, "file_meta", None) else FileMetaDataset()
            ds.file_meta.TransferSyntaxUID = h.transfer_syntax
        return decode_pixels(ds, index)  # the fastest installed decoder (medseg.io.decode)
    except (DicomInputError, KeyboardInterrupt, SystemExit):
        raise
    except BaseException as e:  # noqa: BLE001 - decoders raise many types; Rust ones a PanicException
        raise _decode_error(h.path, h.transfer_syntax, e) from e


def _rescale(raw: np.ndarray, slopes: np.ndarray, intercepts: np.ndarray) -> np.ndarray:
    """Apply per-slice RescaleSlope/Intercept to ``raw`` ``(n, y, x)`` (may reuse its memory).

    int16 when all slopes/intercepts are whole numbers and the result fits; else float32.
    """
    uniform = bool(np.all(slopes == slopes[0]) and np.all(intercepts == intercepts[0]))
    integral = bool(np.all(slopes == np.round(slopes)) and np.all(intercepts == np.round(intercepts)))
    if integral:
        lo_raw = raw.min(axis=(1, 2)).astype(np.float64)
        hi_raw = raw.max(axis=(1, 2)).astype(np.float64)
        a, b = lo_raw * slopes + intercepts, hi_raw * slopes + intercepts
        lo, hi = float(np.minimum(a, b).min()), float(np.maximum(a, b).max())
        if -32768 <= lo and hi <= 32767:
            if uniform:
                s, b0 = int(slopes[0]), int(intercepts[0])
                if raw.dtype == np.int16 and s == 1:
                    if b0:
                        np.add(raw, np.int16(b0), out=raw)
                    return raw
                out = np.empty(raw.shape, np.int16)
                if s == 1:
                    np.add(raw, np.int32(b0), out=out, casting="unsafe", dtype=np.int32)
                else:
                    out[...] = raw.astype(np.int32) * s + b0
                return out
            out = np.empty(raw.shape, np.int16)
            for k in range(raw.shape[0]):
                out[k] = raw[k].astype(np.int32) * int(slopes[k]) + int(intercepts[k])
            return out
    out = np.empty(raw.shape, np.float32)
    if uniform:
        np.multiply(raw, np.float32(slopes[0]), out=out, dtype=np.float32)
        np.add(out, np.float32(intercepts[0]), out=out)
        return out
    for k in range(raw.shape[0]):
        np.multiply(raw[k], np.float32(slopes[k]), out=out[k], dtype=np.float32)
        np.add(out[k], np.float32(intercepts[k]), out=out[k])
    return out


def _rescale_of(ds: Dataset, where: Path) -> tuple[float, float]:
    return _float_attr(ds, "RescaleSlope", where, 1.0), _float_attr(ds, "RescaleIntercept", where, 0.0)


def _drop_pixels(ds: Dataset) -> Dataset:
    for kw in _PIXEL_ELEMENTS:
        if kw in ds:
            del ds[kw]
    return ds


def _finish(array: np.ndarray, kind: ImageKind, where: Path | None) -> np.ndarray:
    return as_label_array(array, where) if kind == "label" else array


def _read_series(series: list[_Header], root: Path | None, kind: ImageKind) -> Image:
    """Single-frame slices of one series -> 3-D image (see module docstring)."""
    first = series[0]
    where = root if root is not None else first.path
    rows, cols = int(first.ds.Rows), int(first.ds.Columns)
    for h in series:
        _check_grey(h.ds, h.path, "image")
        if h.frames > 1:
            raise DicomInputError(
                f"a multi-frame {h.ds.get('Modality', '')} image ({h.frames} frames) without per-frame "
                "functional groups (e.g. RT Dose, cine); medseg reads single-frame series, enhanced "
                "multi-frame volumes and single-frame radiographs",
                path=h.path,
                hint="convert it to single-frame slices or an enhanced multi-frame object",
            )
        if (int(h.ds.Rows), int(h.ds.Columns)) != (rows, cols):
            raise GeometryError(
                f"slice size {h.ds.Rows}x{h.ds.Columns} differs from {rows}x{cols} of {first.path.name}",
                path=h.path,
                hint="pass one series",
            )
    iops = np.stack(
        [_floats(h.ds.ImageOrientationPatient, 6, "ImageOrientationPatient", h.path) for h in series]
    )
    ipps = np.stack([_floats(h.ds.ImagePositionPatient, 3, "ImagePositionPatient", h.path) for h in series])
    spacings = np.stack([_pixel_spacing(h.ds, h.path) for h in series])
    names = [h.path.name for h in series]
    order, affine = _stack_geometry(
        iops, ipps, spacings, names, where, fallback_spacing=_single_slice_spacing(first.ds, first.path)
    )
    ordered = [series[i] for i in order]

    dtypes = {_stored_dtype(h.ds, h.path) for h in ordered}
    same_dtype = len(dtypes) == 1
    raw = np.empty((len(ordered), rows, cols), dtype=dtypes.pop() if same_dtype else np.dtype(np.int32))

    def load(k: int) -> None:
        h = ordered[k]
        if same_dtype and h.transfer_syntax in _NATIVE_LE and _read_native_into(h, raw[k]):
            return
        arr = _decode_with_pydicom(h)
        if arr.shape != (rows, cols):
            raise _truncated(h.path, f"decoded shape {arr.shape}, expected {(rows, cols)}")
        raw[k] = arr

    if len(ordered) >= 8:
        with ThreadPoolExecutor(max_workers=_READ_THREADS) as pool:
            list(pool.map(load, range(len(ordered))))
    else:
        for k in range(len(ordered)):
            load(k)

    rescale = np.array([_rescale_of(h.ds, h.path) for h in ordered], dtype=np.float64)
    array = (
        raw
        if kind == "label" and np.all(rescale == (1.0, 0.0))
        else _rescale(raw, rescale[:, 0], rescale[:, 1])
    )
    datasets = tuple(h.ds for h in ordered)
    source = ImageSource(
        path=root, format="dicom", datasets=datasets, files=tuple(h.path for h in ordered), spacing_tag=None
    )
    modality = str(first.ds.get("Modality", "") or "OT")
    return Image(_finish(array, kind, where), affine, kind, modality, source)


def _functional(ds: Dataset, frame: Dataset | None, group: str, attr: str) -> Any:
    """Value of ``attr`` in functional group ``group``: per-frame first, then shared."""
    for holder in (frame, (ds.get("SharedFunctionalGroupsSequence") or [None])[0]):
        if holder is None:
            continue
        seq = holder.get(group)
        if seq and attr in seq[0]:
            return seq[0].get(attr)
    return None


def _read_enhanced(h: _Header, root: Path | None, kind: ImageKind) -> Image:
    """One enhanced (or legacy-converted enhanced) multi-frame file -> 3-D image."""
    where = h.path
    _check_grey(h.ds, where, "image")
    ds = h.ds
    frames = list(ds.PerFrameFunctionalGroupsSequence)
    if len(frames) != h.frames:
        raise DicomInputError(
            f"PerFrameFunctionalGroupsSequence has {len(frames)} items for {h.frames} frames", path=where
        )
    iops, ipps, spacings, rescale = [], [], [], []
    for i, fg in enumerate(frames):
        label = f"frame {i + 1}"
        iop = _functional(ds, fg, "PlaneOrientationSequence", "ImageOrientationPatient")
        ipp = _functional(ds, fg, "PlanePositionSequence", "ImagePositionPatient")
        ps = _functional(ds, fg, "PixelMeasuresSequence", "PixelSpacing")
        if iop is None or ipp is None:
            raise DicomInputError(
                f"{label} has no plane position/orientation in its functional groups",
                path=where,
                hint="this multi-frame object is not a cross-sectional volume",
            )
        iops.append(_floats(iop, 6, f"ImageOrientationPatient of {label}", where))
        ipps.append(_floats(ipp, 3, f"ImagePositionPatient of {label}", where))
        spacings.append(_floats(ps, 2, f"PixelSpacing of {label}", where) if ps is not None else np.ones(2))
        slope = _functional(ds, fg, "PixelValueTransformationSequence", "RescaleSlope")
        intercept = _functional(ds, fg, "PixelValueTransformationSequence", "RescaleIntercept")
        rescale.append(
            (
                _one_number(slope, f"RescaleSlope of {label}", where) if slope not in (None, "") else 1.0,
                _one_number(intercept, f"RescaleIntercept of {label}", where)
                if intercept not in (None, "")
                else 0.0,
            )
        )
    thickness = _functional(ds, frames[0], "PixelMeasuresSequence", "SliceThickness")
    thickness = _one_number(thickness, "SliceThickness", where) if thickness not in (None, "") else 0.0
    fallback = thickness if thickness > 0 else 1.0
    order, affine = _stack_geometry(
        np.stack(iops),
        np.stack(ipps),
        np.stack(spacings),
        [f"frame {i + 1}" for i in range(len(frames))],
        where,
        fallback_spacing=fallback,
        unit="frame",
    )
    pixels = _decode_with_pydicom(h)
    if pixels.ndim == 2:
        pixels = pixels[None]
    if pixels.shape[0] != len(frames):
        raise _truncated(where, f"decoded {pixels.shape[0]} frames, header says {len(frames)}")
    raw = pixels[order]
    resc = np.array(rescale, dtype=np.float64)[order]
    array = raw if kind == "label" and np.all(resc == (1.0, 0.0)) else _rescale(raw, resc[:, 0], resc[:, 1])
    source = ImageSource(path=h.path, format="dicom", datasets=(ds,), files=(h.path,), spacing_tag=None)
    return Image(_finish(array, kind, where), affine, kind, str(ds.get("Modality", "") or "OT"), source)


# ---------------------------------------------------------------------------------------------
# radiographs
# ---------------------------------------------------------------------------------------------
def _bits_range(ds: Dataset) -> tuple[float, float]:
    bits = int(ds.get("BitsStored", ds.get("BitsAllocated", 16)) or 16)
    if int(ds.get("PixelRepresentation", 0) or 0) == 1:
        return -(2.0 ** (bits - 1)), 2.0 ** (bits - 1) - 1
    return 0.0, 2.0**bits - 1


def _display_range(ds: Dataset, voi: str | None) -> tuple[float, float]:
    """Output range of the modality + VOI transforms (the same rules pydicom's LUT functions use).

    Used to invert MONOCHROME1 within the range a viewer would display, independent of the data.
    """
    if voi == "lut":
        bits = int(ds.VOILUTSequence[0].LUTDescriptor[2])
        return 0.0, 2.0**bits - 1
    if ds.get("ModalityLUTSequence"):
        bits = int(ds.ModalityLUTSequence[0].LUTDescriptor[2])
        return 0.0, 2.0**bits - 1
    lo, hi = _bits_range(ds)
    slope, intercept = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
    if slope is not None and intercept is not None:
        a, b = lo * float(slope) + float(intercept), hi * float(slope) + float(intercept)
        lo, hi = min(a, b), max(a, b)
    return lo, hi


def _voi_kind(ds: Dataset) -> str | None:
    seq = ds.get("VOILUTSequence")
    if seq and seq[0].get("LUTDescriptor") is not None and seq[0].get("LUTData") is not None:
        return "lut"
    if ds.get("WindowCenter") is not None and ds.get("WindowWidth") is not None:
        return "window"
    return None


def _read_radiograph(h: _Header, kind: ImageKind) -> Image:
    """One single-frame greyscale 2-D DICOM (CR, DX, MG, SC...) -> 2-D image (module docstring)."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    where = h.path
    _check_grey(h.ds, where, "image")
    if h.frames > 1:
        raise DicomInputError(
            f"a multi-frame {h.ds.get('Modality', '')} image ({h.frames} frames) that is not a cross-sectional "
            "volume (no per-frame positions) and not a single radiograph",
            path=where,
            hint="pass a single-frame radiograph or a CT/MR series",
        )
    ds = read_dataset(where, force=True)
    if not getattr(ds, "file_meta", None) or "TransferSyntaxUID" not in ds.file_meta:
        # bare datasets (no File Meta, e.g. old ACR-NEMA CR files): pydicom needs the syntax to decode
        ds.file_meta = ds.file_meta if getattr(ds, "file_meta", None) else FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = h.transfer_syntax
    try:
        stored = np.asarray(ds.pixel_array)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as e:  # noqa: BLE001 - decoders raise many types; Rust ones a PanicException
        raise _decode_error(where, h.transfer_syntax, e) from e
    if stored.ndim != 2:
        raise DicomInputError(f"expected a 2-D greyscale image, decoded shape {stored.shape}", path=where)
    if kind == "label":
        array = as_label_array(stored, where)
    else:
        voi = _voi_kind(ds)
        lo, hi = _display_range(ds, voi)
        try:
            values = apply_voi_lut(apply_modality_lut(stored, ds), ds)
        except Exception as e:  # noqa: BLE001 - pydicom raises many types on a corrupt LUT
            raise DicomInputError(
                f"the Modality/VOI LUT cannot be applied ({e})", path=where, hint="check the LUT attributes"
            ) from e
        array = np.asarray(values, dtype=np.float32)
        if str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
            array = np.float32(lo + hi) - array  # MONOCHROME1: minimum = white; make higher = brighter
    spacing_tag = None
    spacing = np.ones(2)
    for tag in _SPACING_TAGS:
        vals = _spacing_attr(ds, tag, where)
        if vals is not None:
            spacing, spacing_tag = vals, tag
            break
    if spacing_tag is None:
        log.info("%s: no pixel spacing attribute, assuming 1 mm", where)
    affine = np.diag([spacing[1], spacing[0], 1.0])  # (col, row) -> image-plane mm
    header = _drop_pixels(ds)
    source = ImageSource(
        path=where, format="dicom", datasets=(header,), files=(where,), spacing_tag=spacing_tag
    )
    return Image(array, affine, kind, str(ds.get("Modality", "") or "OT"), source)
