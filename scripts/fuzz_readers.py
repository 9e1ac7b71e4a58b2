#!/usr/bin/env python
"""Mutation fuzzer for every medseg image reader: no crash, no silent nonsense, bounded memory.

Seeds are small real files: DICOM radiographs and CT slices from ``../shared/data`` and pydicom's
test files, a 4-slice CT series (``dicom_seg_interop/pydicom_77654033/CT2``) and a 5-slice crop of
LIDC-IDRI-0001, NIfTI crops of LUNG1-002 (``.nii`` and ``.nii.gz``, CT and label), PNG/JPEG/TIFF
made from the chest X-ray pictures (8/16-bit, palette mask, 2-page TIFF) and the highdicom/dcmqi
DICOM-SEG files. Each input is one seeded mutation of a seed (input ``i`` is fully determined by
``--seed`` and ``i``, so any finding can be rebuilt with ``--replay KIND:I``):

* bytes: flips, zeroed/0xFF runs, truncation, inserted/removed/duplicated chunks, "interesting"
  32-bit integers;
* DICOM attributes the readers use set to absurd values (missing, 0, -1, NaN, inf, 1e308, 1e400,
  multi-valued, empty, strings), transfer syntax swapped (HTJ2K, JPEG, big endian), LUTs with
  64-bit entries, pixel data emptied/cut, SEG functional groups damaged, series with a file
  changed, removed or joined by a zero-filled junk file;
* NIfTI header fields (dim, datatype, pixdim, vox_offset, scl_*, q/sform codes, quaternions,
  srow) set to absurd values, then re-gzipped;
* PNG IHDR sizes (CRC fixed, e.g. a 16000x16000 "decompression bomb"), truncated multi-page TIFF.

Each input is read in a forked worker with an address-space cap (``--mem-mib`` above the parent)
and a time limit (``--time-s``). Outcome per input: ``ok`` (read, and the result has finite
voxels and plausible geometry), ``refused`` (a ``MedsegError``), or a failure: ``crash`` (any
other exception), ``nonsense`` (read "successfully" but empty / non-finite / implausible
geometry), ``memory`` (``MemoryError`` under the cap, or a peak RSS above ``--peak-mib``),
``timeout``, ``killed`` (the worker died), ``backstop`` (refused only by the readers' last-resort
guard, i.e. an unanticipated library exception; counted apart because the message is generic).

Usage::

    nice -n 10 python scripts/fuzz_readers.py --inputs 20000 --workers 2 [--seed 0] [--json out.json]
    python scripts/fuzz_readers.py --replay dicom_file:123 --out /tmp/case   # rebuild one input

Prints a summary table per kind (Markdown) and the distinct failures with a reproducer index.
Exit code 1 when any failure occurred. ``tests/io/test_fuzz_readers.py`` runs a short seeded
campaign of this script in CI.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import resource
import shutil
import signal
import struct
import sys
import tempfile
import time
import traceback
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = (REPO / ".." / "shared" / "data").resolve()
KINDS = ("dicom_file", "dicom_series", "nifti", "picture", "seg")
FAILURES = ("crash", "nonsense", "memory", "timeout", "killed", "backstop")

# ---------------------------------------------------------------------------------------------
# corpus
# ---------------------------------------------------------------------------------------------


def build_corpus(folder: Path) -> dict[str, list[Path]]:
    """Write the seed files into ``folder``; ``{kind: [seed file or series folder]}``."""
    import nibabel as nib
    import pydicom
    from PIL import Image as PILImage
    from pydicom.data import get_testdata_file

    folder.mkdir(parents=True, exist_ok=True)
    corpus: dict[str, list[Path]] = {k: [] for k in KINDS}

    # DICOM single files
    for src in [
        DATA / "dicom_seg_interop" / "pydicom_77654033" / "CR1" / "6154.dcm",
        DATA / "dicom_seg_interop" / "highdicom" / "ct_image.dcm",
        DATA / "dicom_seg_interop" / "highdicom" / "dx_image.dcm",
        DATA / "cxr_dicom" / "siim_cr_chest_pa.dcm",
        DATA / "cxr_dicom" / "CR-MONO1-10-chest.dcm",
    ]:
        if src.is_file():
            corpus["dicom_file"].append(src)
    for name in ("CT_small.dcm", "MR_small.dcm", "MR_small_RLE.dcm", "vlut_04.dcm", "mlut_18.dcm"):
        try:
            p = get_testdata_file(name)
        except Exception:  # noqa: BLE001 - optional pydicom-data files
            p = None
        if p:
            corpus["dicom_file"].append(Path(p))

    # DICOM series: the tiny real CT2 series, and a crop of 5 LIDC slices
    ct2 = DATA / "dicom_seg_interop" / "pydicom_77654033" / "CT2"
    if ct2.is_dir():
        corpus["dicom_series"].append(ct2)
    lidc = sorted((DATA / "ct_lidc_nodules" / "LIDC-IDRI-0001" / "dicom").glob("*.dcm"))[:5]
    if lidc:
        out = folder / "lidc_crop"
        out.mkdir(exist_ok=True)
        for src in lidc:
            ds = pydicom.dcmread(src)
            arr = ds.pixel_array[200:224, 200:232].copy()
            ds.Rows, ds.Columns = arr.shape
            ds.PixelData = arr.tobytes()
            ds.save_as(out / src.name)
        corpus["dicom_series"].append(out)

    # NIfTI crops of a real CT and its lung label
    for stem in ("ct", "lung_label"):
        src = DATA / "ct_lung_nsclc_radiomics" / "LUNG1-002" / f"{stem}.nii.gz"
        if not src.is_file():
            continue
        img = nib.load(str(src))
        sub = img.slicer[200:232, 220:244, 40:46]
        data = np.asarray(sub.dataobj)
        out_img = nib.Nifti1Image(data, sub.affine, sub.header)
        for suffix in (".nii.gz", ".nii"):
            path = folder / f"{stem}{suffix}"
            nib.save(out_img, str(path))
            corpus["nifti"].append(path)
    if corpus["nifti"]:
        two_d = nib.Nifti1Image(np.arange(20 * 16, dtype=np.int16).reshape(20, 16), np.diag([0.7, 0.7, 1, 1]))
        nib.save(two_d, str(folder / "plane.nii"))
        corpus["nifti"].append(folder / "plane.nii")

    # pictures made from the real chest X-ray pictures
    images = sorted((DATA / "cxr_lung_covid19_gb" / "images").glob("*.png"))
    jpgs = sorted((DATA / "cxr_lung_covid19_gb" / "images").glob("*.jpg"))
    masks = sorted((DATA / "cxr_lung_covid19_gb" / "masks").glob("*.png"))
    if images:
        with PILImage.open(images[0]) as pic:
            grey = pic.convert("L").resize((48, 40))
        grey.save(folder / "grey.png")
        PILImage.fromarray(np.asarray(grey, dtype=np.uint16) * 257).save(folder / "grey16.png")
        grey.save(folder / "grey.tif")
        grey.save(folder / "two_pages.tif", save_all=True, append_images=[grey.rotate(90)])
        corpus["picture"] += [folder / n for n in ("grey.png", "grey16.png", "grey.tif", "two_pages.tif")]
    if jpgs:
        with PILImage.open(jpgs[0]) as pic:
            pic.convert("RGB").resize((40, 32)).save(folder / "colour.jpg", quality=90)
        corpus["picture"].append(folder / "colour.jpg")
    if masks:
        with PILImage.open(masks[0]) as pic:
            small = pic.resize((40, 32), PILImage.NEAREST)
            small.save(folder / "mask.png")
        corpus["picture"].append(folder / "mask.png")

    # DICOM-SEG
    for name in (
        "seg_image_ct_binary.dcm",
        "seg_image_ct_binary_fractional.dcm",
        "seg_image_ct_binary_overlap.dcm",
        "seg_image_cr_binary.dcm",
        "seg_image_ct_true_fractional.dcm",
    ):
        p = DATA / "dicom_seg_interop" / "highdicom" / name
        if p.is_file():
            corpus["seg"].append(p)
    liver = DATA / "dicom_seg_interop" / "dcmqi" / "liver.dcm"
    if liver.is_file():
        corpus["seg"].append(liver)
    return corpus


# ---------------------------------------------------------------------------------------------
# mutations
# ---------------------------------------------------------------------------------------------
_INTERESTING32 = [0, 1, 0x7F, 0x80, 0xFF, 0xFFFF, 0x7FFF, 0x8000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0x10000]


def mutate_bytes(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """One random byte-level mutation of ``data``."""
    b = bytearray(data)
    n = len(b)
    if n == 0:
        return bytes(rng.randbytes(16)), "random bytes"
    op = rng.choice(["flip", "flip", "run", "truncate", "insert", "remove", "dup", "int32", "int16"])
    if op == "flip":
        k = rng.randint(1, 16)
        for _ in range(k):
            i = rng.randrange(n)
            b[i] ^= 1 << rng.randrange(8)
        return bytes(b), f"flip {k} bits"
    if op == "run":
        i = rng.randrange(n)
        length = rng.randint(1, 256)
        val = rng.choice([0, 0xFF, rng.randrange(256)])
        b[i : i + length] = bytes([val]) * len(b[i : i + length])
        return bytes(b), f"run {val:#x} x{length} at {i}"
    if op == "truncate":
        cut = rng.randrange(n)
        return bytes(b[:cut]), f"truncate at {cut}/{n}"
    if op == "insert":
        i = rng.randrange(n)
        junk = rng.randbytes(rng.randint(1, 64))
        return bytes(b[:i] + junk + b[i:]), f"insert {len(junk)} at {i}"
    if op == "remove":
        i = rng.randrange(n)
        length = rng.randint(1, 64)
        return bytes(b[:i] + b[i + length :]), f"remove {length} at {i}"
    if op == "dup":
        i = rng.randrange(n)
        length = rng.randint(1, 256)
        return bytes(b[:i] + b[i : i + length] + b[i:]), f"duplicate {length} at {i}"
    i = rng.randrange(max(1, n - 4))
    val = rng.choice(_INTERESTING32)
    if op == "int32":
        b[i : i + 4] = struct.pack(rng.choice(["<I", ">I"]), val)[: len(b[i : i + 4])]
    else:
        b[i : i + 2] = struct.pack(rng.choice(["<H", ">H"]), val & 0xFFFF)[: len(b[i : i + 2])]
    return bytes(b), f"{op} {val:#x} at {i}"


_ABSURD: list[Any] = [
    "DELETE",
    "",
    0,
    1,
    -1,
    2,
    65535,
    2**31 - 1,
    "nan",
    "inf",
    "-inf",
    "1e308",
    "1e400",
    "-1e308",
    "0.0002",
    "1e-9",
    "abc",
    "MULTI",
    "SINGLE",
]

_DICOM_ATTRS = [
    "Rows",
    "Columns",
    "BitsAllocated",
    "BitsStored",
    "HighBit",
    "PixelRepresentation",
    "SamplesPerPixel",
    "PhotometricInterpretation",
    "NumberOfFrames",
    "PixelSpacing",
    "ImagerPixelSpacing",
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "SliceThickness",
    "SpacingBetweenSlices",
    "RescaleSlope",
    "RescaleIntercept",
    "WindowCenter",
    "WindowWidth",
    "Modality",
    "SOPClassUID",
    "PixelData",
]

_TRANSFER_SYNTAXES = [
    "1.2.840.10008.1.2",  # implicit LE
    "1.2.840.10008.1.2.1",  # explicit LE
    "1.2.840.10008.1.2.2",  # explicit BE
    "1.2.840.10008.1.2.1.99",  # deflated
    "1.2.840.10008.1.2.4.50",  # JPEG baseline
    "1.2.840.10008.1.2.4.90",  # J2K lossless
    "1.2.840.10008.1.2.4.201",  # HTJ2K lossless
    "1.2.840.10008.1.2.5",  # RLE
    "1.2.3.4",  # nonsense
]


def _set_attr(ds: Any, kw: str, value: Any, rng: random.Random) -> str:
    """Set DICOM keyword ``kw`` of ``ds`` to an absurd ``value`` (best effort for the VR)."""
    from pydicom.datadict import dictionary_VR, tag_for_keyword

    if value == "DELETE":
        if kw in ds:
            del ds[kw]
        return f"{kw} deleted"
    tag = tag_for_keyword(kw)
    if tag is None:
        return "no-op"
    vr = dictionary_VR(tag)
    if kw == "PixelData":
        raw = bytes(ds.PixelData) if "PixelData" in ds else b""
        choice = rng.choice(["empty", "half", "double", "odd"])
        new = {"empty": b"", "half": raw[: len(raw) // 2], "double": raw + raw, "odd": raw[:-1]}[choice]
        if len(new) % 2:
            new += b"\x00" if choice != "odd" else b""
        ds.PixelData = new
        return f"PixelData {choice}"
    current = ds.get(kw)
    if value == "MULTI":
        base = current if current is not None else 1
        vals = list(base) if hasattr(base, "__iter__") and not isinstance(base, str) else [base]
        value = vals + vals
    elif value == "SINGLE":
        if current is None:
            return "no-op"
        vals = list(current) if hasattr(current, "__iter__") and not isinstance(current, str) else [current]
        value = vals[:1]
    n_values = 1
    if current is not None and hasattr(current, "__len__") and not isinstance(current, str):
        n_values = max(1, len(current))
    if vr in ("US", "SS", "UL", "SL"):
        if isinstance(value, list):
            v: Any = [int(float(x)) if str(x).lstrip("-").replace(".", "").isdigit() else 1 for x in value]
        elif isinstance(value, int):
            lo, hi = {
                "US": (0, 65535),
                "SS": (-32768, 32767),
                "UL": (0, 2**32 - 1),
                "SL": (-(2**31), 2**31 - 1),
            }[vr]
            v = min(max(value, lo), hi)
        else:  # a string in a binary VR: write the raw bytes of a float/garbage
            from pydicom.dataelem import RawDataElement

            raw = str(value).encode()[:4].ljust(2, b"\x00")
            ds[tag] = RawDataElement(tag, vr, len(raw), raw, 0, False, True)
            return f"{kw} raw {value!r}"
        ds[tag] = _elem(tag, vr, v)
        return f"{kw}={v!r}"
    if vr in ("DS", "IS"):
        if isinstance(value, list):
            v = value
        else:
            v = [value] * n_values if n_values > 1 and rng.random() < 0.7 else value
        ds[tag] = _elem(tag, vr, v)
        return f"{kw}={v!r}"
    ds[tag] = _elem(tag, vr, value if not isinstance(value, int) else str(value))
    return f"{kw}={value!r}"


def _elem(tag: int, vr: str, value: Any) -> Any:
    from pydicom.dataelem import DataElement

    return DataElement(tag, vr, value)


def _voi_lut_64(ds: Any, rng: random.Random) -> str:
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    item = Dataset()
    n = rng.choice([4, 256, 0])
    bits = rng.choice([64, 16, 0, 8, 32])
    item.LUTDescriptor = [n, 0, bits]
    width = rng.choice([1, 2, 8])
    item.LUTData = bytes(rng.randbytes(n * width))
    item["LUTData"].VR = "OW"
    key = rng.choice(["VOILUTSequence", "ModalityLUTSequence"])
    setattr(ds, key, Sequence([item]))
    if key == "ModalityLUTSequence":
        item.ModalityLUTType = "HU"
        for kw in ("RescaleSlope", "RescaleIntercept"):
            if kw in ds and rng.random() < 0.5:
                del ds[kw]
    return f"{key} descriptor {[n, 0, bits]} data {n * width} bytes"


def _save(ds: Any, path: Path) -> None:
    ds.save_as(path, enforce_file_format=False)


def mutate_dicom_dataset(src: Path, dst: Path, rng: random.Random, *, seg: bool = False) -> str:
    """Structure-aware mutation of the DICOM file ``src`` written to ``dst``."""
    import pydicom

    ds = pydicom.dcmread(src, force=True)
    if not getattr(ds, "file_meta", None) or "TransferSyntaxUID" not in ds.file_meta:
        from pydicom.dataset import FileMetaDataset

        meta = ds.file_meta if getattr(ds, "file_meta", None) else FileMetaDataset()
        meta.TransferSyntaxUID = "1.2.840.10008.1.2"
        ds.file_meta = meta
    notes = []
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        r = rng.random()
        if seg and r < 0.45:
            notes.append(_mutate_seg(ds, rng))
        elif r < 0.08:
            ts = rng.choice(_TRANSFER_SYNTAXES)
            ds.file_meta.TransferSyntaxUID = ts
            notes.append(f"TransferSyntaxUID={ts}")
        elif r < 0.15:
            notes.append(_voi_lut_64(ds, rng))
        else:
            kw = rng.choice(_DICOM_ATTRS)
            notes.append(_set_attr(ds, kw, rng.choice(_ABSURD), rng))
    _save(ds, dst)
    return "; ".join(notes)


def _mutate_seg(ds: Any, rng: random.Random) -> str:
    from pydicom.sequence import Sequence

    op = rng.choice(
        [
            "del_dim_index",
            "empty_segments",
            "columns0",
            "rows0",
            "spacing_tiny",
            "thickness",
            "position_huge",
            "del_per_frame",
            "frames_off",
            "segment_number",
            "del_for",
            "del_shared",
            "type",
        ]
    )
    shared = ds.get("SharedFunctionalGroupsSequence")
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if op == "del_dim_index" and "DimensionIndexSequence" in ds:
        del ds.DimensionIndexSequence
    elif op == "empty_segments":
        ds.SegmentSequence = Sequence([])
    elif op == "columns0":
        ds.Columns = 0
    elif op == "rows0":
        ds.Rows = 0
    elif op in ("spacing_tiny", "thickness") and shared and "PixelMeasuresSequence" in shared[0]:
        pm = shared[0].PixelMeasuresSequence[0]
        val = rng.choice(["0.0002", "0", "-1", "1e308", "nan", "1e-9"])
        if op == "spacing_tiny":
            pm.SpacingBetweenSlices = val
        else:
            pm.SliceThickness = val
        return f"SEG {op}={val}"
    elif op == "position_huge" and per_frame:
        k = rng.randrange(len(per_frame))
        item = per_frame[k].get("PlanePositionSequence")
        if item:
            val = rng.choice(["1e12", "nan", "1e308", "-5000"])
            item[0].ImagePositionPatient = [
                item[0].ImagePositionPatient[0],
                item[0].ImagePositionPatient[1],
                val,
            ]
            return f"SEG frame {k} z={val}"
    elif op == "del_per_frame" and per_frame:
        del per_frame[rng.randrange(len(per_frame))]
    elif op == "frames_off":
        ds.NumberOfFrames = int(ds.get("NumberOfFrames", 1)) + rng.choice([-1, 1, 1000])
    elif op == "segment_number" and ds.get("SegmentSequence"):
        ds.SegmentSequence[0].SegmentNumber = rng.choice([0, 300, 65535])
    elif op == "del_for" and "FrameOfReferenceUID" in ds:
        del ds.FrameOfReferenceUID
    elif op == "del_shared" and "SharedFunctionalGroupsSequence" in ds:
        del ds.SharedFunctionalGroupsSequence
    elif op == "type":
        ds.SegmentationType = rng.choice(["LABELMAP", "FRACTIONAL", "BINARY", "NONSENSE"])
    return f"SEG {op}"


def mutate_dicom_file(src: Path, out: Path, rng: random.Random, *, seg: bool = False) -> tuple[Path, str]:
    dst = out / ("seg.dcm" if seg else "image.dcm")
    if rng.random() < 0.5:
        try:
            return dst, mutate_dicom_dataset(src, dst, rng, seg=seg)
        except Exception as e:  # noqa: BLE001 - the mutation could not be written; fall back to bytes
            note = f"(dataset mutation failed: {type(e).__name__}) "
    else:
        note = ""
    data, what = mutate_bytes(src.read_bytes(), rng)
    if rng.random() < 0.3:
        data, more = mutate_bytes(data, rng)
        what += "; " + more
    dst.write_bytes(data)
    return dst, note + what


def mutate_series(src: Path, out: Path, rng: random.Random) -> tuple[Path, str]:
    import pydicom

    folder = out / "series"
    shutil.copytree(src, folder)
    files = sorted(folder.iterdir())
    r = rng.random()
    if r < 0.1:
        size = rng.choice([1, 2]) << 20
        (folder / "junk.bin").write_bytes(b"\x00" * size)
        return folder, f"zero-filled junk file of {size >> 20} MiB"
    if r < 0.2:
        kw = rng.choice(
            ["ImageOrientationPatient", "ImagePositionPatient", "PixelSpacing", "Rows", "RescaleSlope"]
        )
        value = rng.choice(["DELETE", "nan", "1e308", "0", "SINGLE", "MULTI"])
        for f in files:
            ds = pydicom.dcmread(f)
            _set_attr(ds, kw, value, random.Random(0))
            _save(ds, f)
        return folder, f"every file: {kw} -> {value}"
    if r < 0.25:
        victim = rng.choice(files)
        victim.unlink()
        return folder, f"removed {victim.name}"
    victim = rng.choice(files)
    _, what = mutate_dicom_file(victim, out, rng)
    os.replace(out / "image.dcm", victim)
    return folder, f"{victim.name}: {what}"


# NIfTI-1 header fields: (name, offset, struct code, count)
_NIFTI_FIELDS = [
    ("dim", 40, "h", 8),
    ("datatype", 70, "h", 1),
    ("bitpix", 72, "h", 1),
    ("pixdim", 76, "f", 8),
    ("vox_offset", 108, "f", 1),
    ("scl_slope", 112, "f", 1),
    ("scl_inter", 116, "f", 1),
    ("qform_code", 252, "h", 1),
    ("sform_code", 254, "h", 1),
    ("quatern", 256, "f", 3),
    ("qoffset", 268, "f", 3),
    ("srow", 280, "f", 12),
]
_NIFTI_INTS = [0, -1, 1, 2, 3, 4, 5, 7, 8, 16, 32767, -32768, 1000, 9]
_NIFTI_FLOATS = [0.0, -1.0, 1.5, 1e-9, 1e30, float("nan"), float("inf"), -float("inf"), 1e4 + 1, 3.4e38, 2.0]


def mutate_nifti(src: Path, out: Path, rng: random.Random) -> tuple[Path, str]:
    gz = src.name.endswith(".gz")
    raw = gzip.decompress(src.read_bytes()) if gz else src.read_bytes()
    dst = out / src.name
    r = rng.random()
    if r < 0.6:
        b = bytearray(raw)
        notes = []
        for _ in range(rng.choice([1, 1, 2, 3])):
            name, off, code, count = rng.choice(_NIFTI_FIELDS)
            k = rng.randrange(count)
            if name == "dim" and rng.random() < 0.3:  # declare a huge volume
                for j, v in enumerate([3, 50000, 40000, 1000]):
                    struct.pack_into("<h", b, off + 2 * j, min(v, 32767))
                notes.append("dim=huge")
                continue
            val: Any = rng.choice(_NIFTI_INTS) if code == "h" else rng.choice(_NIFTI_FLOATS)
            struct.pack_into("<" + code, b, off + k * struct.calcsize(code), val)
            notes.append(f"{name}[{k}]={val}")
        raw = bytes(b)
        what = ", ".join(notes)
    elif r < 0.8:
        raw, what = mutate_bytes(raw, rng)
    else:
        if gz:
            data, what = mutate_bytes(src.read_bytes(), rng)
            dst.write_bytes(data)
            return dst, "gzip stream: " + what
        raw, what = mutate_bytes(raw, rng)
    dst.write_bytes(gzip.compress(raw, compresslevel=1) if gz else raw)
    return dst, what


def _png_with_size(data: bytes, width: int, height: int) -> bytes:
    b = bytearray(data)
    struct.pack_into(">II", b, 16, width, height)
    crc = zlib.crc32(bytes(b[12:29])) & 0xFFFFFFFF
    struct.pack_into(">I", b, 29, crc)
    return bytes(b)


def mutate_picture(src: Path, out: Path, rng: random.Random) -> tuple[Path, str]:
    data = src.read_bytes()
    dst = out / src.name
    if src.suffix == ".png" and rng.random() < 0.2:
        w, h = rng.choice([(16000, 16000), (0, 10), (1, 1), (70000, 70000), (2**31 - 1, 1), (40, 100000)])
        dst.write_bytes(_png_with_size(data, w, h))
        return dst, f"PNG IHDR {w}x{h} (CRC fixed)"
    if src.name == "two_pages.tif" and rng.random() < 0.3:
        cut = rng.randrange(len(data) // 2, len(data))
        dst.write_bytes(data[:cut])
        return dst, f"2-page TIFF truncated at {cut}/{len(data)}"
    data, what = mutate_bytes(data, rng)
    dst.write_bytes(data)
    return dst, what


def make_input(kind: str, seed_path: Path, out: Path, rng: random.Random) -> tuple[Path, str]:
    if kind == "dicom_file":
        return mutate_dicom_file(seed_path, out, rng)
    if kind == "dicom_series":
        return mutate_series(seed_path, out, rng)
    if kind == "nifti":
        return mutate_nifti(seed_path, out, rng)
    if kind == "picture":
        return mutate_picture(seed_path, out, rng)
    return mutate_dicom_file(seed_path, out, rng, seg=True)


def case_rng(seed: int, kind: str, index: int) -> random.Random:
    return random.Random(f"{seed}:{kind}:{index}")


def choose_seed(corpus: dict[str, list[Path]], kind: str, rng: random.Random) -> Path:
    return rng.choice(corpus[kind])


# ---------------------------------------------------------------------------------------------
# reading and judging one input
# ---------------------------------------------------------------------------------------------


def _plausible(array: np.ndarray, affine: np.ndarray) -> str | None:
    """Why a read result is nonsense, or None (independent of the readers' own checks)."""
    if array.size == 0 or 0 in array.shape:
        return f"empty image {array.shape}"
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        return "non-finite voxels"
    a = np.asarray(affine, dtype=np.float64)
    if not np.isfinite(a).all():
        return "non-finite affine"
    n = a.shape[0] - 1
    spacing = np.linalg.norm(a[:n, :n], axis=0)
    if spacing.min() < 1e-3 or spacing.max() > 1e4:
        return f"spacing {spacing.tolist()}"
    if np.abs(a[:n, n]).max() >= 1e7:
        return f"origin {a[:n, n].tolist()}"
    if array.size > 2**31:
        return f"{array.size} voxels"
    return None


def read_one(kind: str, path: Path) -> dict[str, Any]:
    """Read ``path`` with the reader of ``kind``; the outcome as a dict (never raises)."""
    from medseg.errors import MedsegError
    from medseg.io import read_dicom_seg, read_image

    t0 = time.perf_counter()
    try:
        if kind == "seg":
            image = read_dicom_seg(path).labels
        else:
            image = read_image(path)
        why = _plausible(image.array, image.affine)
        outcome = {"outcome": "nonsense", "detail": why} if why else {"outcome": "ok", "detail": ""}
    except MedsegError as e:
        msg = str(e)
        if "not enough memory" in msg:
            outcome = {"outcome": "memory", "detail": msg[:300]}
        elif "(unexpected " in msg:
            cause = e.__cause__
            outcome = {"outcome": "backstop", "detail": _where(cause) if cause else msg[:300]}
        else:
            outcome = {"outcome": "refused", "detail": type(e).__name__, "message": msg[:300]}
            if "\n" in msg:
                outcome = {"outcome": "crash", "detail": "multi-line MedsegError: " + msg[:200]}
    except MemoryError as e:
        outcome = {"outcome": "memory", "detail": _where(e)}
    except KeyboardInterrupt:
        raise
    except BaseException as e:  # noqa: BLE001 - this is what the fuzzer is looking for (Rust panics too)
        outcome = {"outcome": "crash", "detail": _where(e)}
    outcome["ms"] = round((time.perf_counter() - t0) * 1000, 1)
    return outcome


def _where(e: BaseException) -> str:
    """``Type: message @ file:line`` of the innermost medseg frame (the distinct root cause)."""
    frames = traceback.extract_tb(e.__traceback__)
    mine = [f for f in frames if "medseg" in f.filename and "fuzz_readers" not in f.filename]
    f = (mine or frames or [None])[-1]
    loc = f"{Path(f.filename).name}:{f.lineno}" if f is not None else "?"
    return f"{type(e).__name__}: {str(e)[:120]} @ {loc}"


# ---------------------------------------------------------------------------------------------
# forked workers
# ---------------------------------------------------------------------------------------------


def _rss_kib() -> int:
    with open("/proc/self/status") as fp:
        for line in fp:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _vm_bytes() -> int:
    with open("/proc/self/status") as fp:
        for line in fp:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def _child(
    kind: str,
    index: int,
    seed: int,
    corpus: dict[str, list[Path]],
    work: Path,
    mem: int,
    time_s: int,
    wfd: int,
) -> None:
    """Body of a forked worker: build input ``index``, read it, write the outcome to ``wfd``."""
    try:
        resource.setrlimit(resource.RLIMIT_AS, (_vm_bytes() + mem, resource.RLIM_INFINITY))
        signal.alarm(time_s)
        rng = case_rng(seed, kind, index)
        src = choose_seed(corpus, kind, rng)
        try:
            path, what = make_input(kind, src, work, rng)
        except Exception as e:  # noqa: BLE001
            result = {"outcome": "skipped", "detail": f"mutator: {type(e).__name__}: {e}"[:200]}
        else:
            result = read_one(kind, path)
            result["input"] = f"{src.name}: {what}"[:300]
        os.write(wfd, json.dumps(result).encode())
    except BaseException:  # noqa: BLE001 - a worker must never return into the parent's loop
        pass
    finally:
        os._exit(0)


def _warm_up(corpus: dict[str, list[Path]], kinds: tuple[str, ...]) -> None:
    """Read every seed once in the parent: lazy imports and caches (pydicom pixel handlers,
    highdicom's SEG tables) are then paid once instead of in every forked worker."""
    import logging
    import warnings

    # the inputs are broken on purpose: keep the output readable (library warnings, Rust panics)
    logging.disable(logging.WARNING)
    warnings.simplefilter("ignore")
    os.environ["RUST_BACKTRACE"] = "0"
    for kind in kinds:
        for seed_path in corpus[kind]:
            read_one(kind, seed_path)


def run_campaign(
    corpus: dict[str, list[Path]],
    *,
    inputs: int,
    seed: int,
    workers: int,
    mem_mib: int,
    time_s: int,
    peak_mib: int,
    kinds: tuple[str, ...],
    progress: Callable[[int, int], None] | None = None,
    max_seconds: float | None = None,
) -> list[dict[str, Any]]:
    """Fuzz ``inputs`` inputs spread round-robin over ``kinds``; one result dict per input.

    ``max_seconds``: start no new input after that long (the inputs done are still all reported).
    """
    start = time.perf_counter()
    _warm_up(corpus, kinds)
    work_root = Path(tempfile.mkdtemp(prefix="medseg-fuzz-"))
    jobs = [(kinds[i % len(kinds)], i // len(kinds)) for i in range(inputs)]
    results: list[dict[str, Any]] = []
    running: dict[int, tuple[str, int, int, Path, float, int]] = {}
    try:
        while jobs or running:
            if max_seconds is not None and time.perf_counter() - start > max_seconds:
                jobs.clear()
            while jobs and len(running) < workers:
                kind, index = jobs.pop(0)
                work = work_root / f"{kind}-{index}"
                work.mkdir()
                rfd, wfd = os.pipe()
                base = _rss_kib()
                pid = os.fork()
                if pid == 0:
                    os.close(rfd)
                    _child(kind, index, seed, corpus, work, mem_mib << 20, time_s, wfd)
                os.close(wfd)
                running[pid] = (kind, index, rfd, work, time.perf_counter(), base)
            if not running:
                break
            pid, status, usage = os.wait4(-1, 0)
            if pid not in running:
                continue
            kind, index, rfd, work, t0, base = running.pop(pid)
            chunks = []
            while True:
                chunk = os.read(rfd, 1 << 16)
                if not chunk:
                    break
                chunks.append(chunk)
            os.close(rfd)
            shutil.rmtree(work, ignore_errors=True)
            if chunks:
                result = json.loads(b"".join(chunks))
            elif os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGALRM:
                result = {"outcome": "timeout", "detail": f"over {time_s} s"}
            else:
                sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
                result = {
                    "outcome": "killed",
                    "detail": f"signal {sig}" if sig else f"exit {os.waitstatus_to_exitcode(status)}",
                }
            peak = max(0, usage.ru_maxrss - base) / 1024
            result.update(
                kind=kind,
                index=index,
                peak_mib=round(peak, 1),
                wall_ms=round((time.perf_counter() - t0) * 1000, 1),
            )
            if peak > peak_mib and result["outcome"] in ("ok", "refused"):
                result["outcome"], result["detail"] = "memory", f"peak {peak:.0f} MiB over the parent"
            results.append(result)
            if progress:
                progress(len(results), inputs)
    finally:
        shutil.rmtree(work_root, ignore_errors=True)
    return results


def summarise(results: list[dict[str, Any]]) -> str:
    """Markdown table per kind plus the distinct failures (with one reproducer index each)."""
    by_kind: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in results:
        by_kind[r["kind"]].append(r)
    cols = ["ok", "refused", *FAILURES, "skipped"]
    lines = [
        "| kind | inputs | " + " | ".join(cols) + " | peak MiB (max) | ms (median / max) |",
        "|---" * (len(cols) + 4) + "|",
    ]
    total: Counter[str] = Counter()
    for kind in KINDS:
        rs = by_kind.get(kind)
        if not rs:
            continue
        c = Counter(r["outcome"] for r in rs)
        total.update(c)
        ms = sorted(r.get("ms", r["wall_ms"]) for r in rs)
        lines.append(
            f"| {kind} | {len(rs)} | "
            + " | ".join(str(c.get(k, 0)) for k in cols)
            + f" | {max(r['peak_mib'] for r in rs):.0f} | {ms[len(ms) // 2]:.0f} / {ms[-1]:.0f} |"
        )
    lines.append(f"| **all** | {len(results)} | " + " | ".join(str(total.get(k, 0)) for k in cols) + " | | |")
    failures: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in results:
        if r["outcome"] in FAILURES:
            failures[(r["outcome"], r.get("detail", ""))].append(r)
    if failures:
        lines += ["", "Distinct failures (outcome, cause, count, reproducer):", ""]
        for (outcome, detail), rs in sorted(failures.items(), key=lambda kv: -len(kv[1])):
            r = rs[0]
            lines.append(
                f"- {outcome}: {detail} x{len(rs)} (--replay {r['kind']}:{r['index']}: {r.get('input', '')})"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inputs", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) // 2))
    ap.add_argument("--mem-mib", type=int, default=6144, help="address-space cap per worker above the parent")
    ap.add_argument(
        "--peak-mib", type=int, default=1024, help="peak RSS (above the parent) counted as a failure"
    )
    ap.add_argument("--time-s", type=int, default=20, help="time limit per input")
    ap.add_argument("--max-seconds", type=float, help="start no new input after this many seconds")
    ap.add_argument("--kinds", default=",".join(KINDS))
    ap.add_argument("--corpus", type=Path, help="folder for the seed files (default: a temporary one)")
    ap.add_argument("--json", type=Path, help="write every result here")
    ap.add_argument("--replay", help="KIND:INDEX: rebuild that input into --out and read it in-process")
    ap.add_argument("--out", type=Path, default=Path("fuzz_case"))
    args = ap.parse_args(argv)
    kinds = tuple(k for k in args.kinds.split(",") if k)
    unknown = set(kinds) - set(KINDS)
    if unknown:
        ap.error(f"unknown kinds {sorted(unknown)}; choose from {KINDS}")
    corpus_dir = args.corpus or Path(tempfile.mkdtemp(prefix="medseg-fuzz-corpus-"))
    try:
        corpus = build_corpus(corpus_dir)
        missing = [k for k in kinds if not corpus[k]]
        if missing:
            print(f"no seed files for {missing}: is ../shared/data there?", file=sys.stderr)
            return 2
        if args.replay:
            kind, index = args.replay.split(":")
            args.out.mkdir(parents=True, exist_ok=True)
            rng = case_rng(args.seed, kind, int(index))
            src = choose_seed(corpus, kind, rng)
            path, what = make_input(kind, src, args.out, rng)
            print(f"{path} <- {src.name}: {what}")
            print(json.dumps(read_one(kind, path)))
            return 0
        t0 = time.perf_counter()
        step = max(1, args.inputs // 20)

        def progress(done: int, total: int) -> None:
            if done % step == 0:
                print(f"{done}/{total} inputs, {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)

        results = run_campaign(
            corpus,
            inputs=args.inputs,
            seed=args.seed,
            workers=args.workers,
            mem_mib=args.mem_mib,
            time_s=args.time_s,
            peak_mib=args.peak_mib,
            kinds=kinds,
            progress=progress,
            max_seconds=args.max_seconds,
        )
        elapsed = time.perf_counter() - t0
    finally:
        if args.corpus is None:
            shutil.rmtree(corpus_dir, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps({"elapsed_s": elapsed, "seed": args.seed, "results": results}) + "\n")
    print(summarise(results))
    print(
        f"\n{len(results)} inputs in {elapsed:.0f} s (seed {args.seed}, {args.workers} workers, "
        f"{args.mem_mib} MiB cap, {args.time_s} s limit)"
    )
    return 1 if any(r["outcome"] in FAILURES for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
