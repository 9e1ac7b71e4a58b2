"""Issue #13: every reproducer found by the reader fuzzer, as a regression test.

Each input is a tiny file made from a real one (``../shared/data`` or pydicom's test files) with
the one defect the fuzzer found; each must give a one-line ``MedsegError`` naming the file and the
attribute (never another exception, never a "successful" read of nonsense, never a large
allocation driven by a header).
"""

from __future__ import annotations

import gzip
import json
import math
import shutil
import struct
import time
import tracemalloc
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from PIL import Image as PILImage
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from medseg.errors import CheckpointError, DicomInputError, GeometryError, InputError, MedsegError
from medseg.io import read_dicom_seg, read_image

# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def interop(shared_data: Path) -> Path:
    return shared_data / "dicom_seg_interop"


def _cr(interop: Path) -> pydicom.Dataset:
    """The real 16x16 CR (Explicit VR Little Endian) from pydicom issue 77654033."""
    return pydicom.dcmread(interop / "pydicom_77654033" / "CR1" / "6154.dcm")


def _ct(interop: Path) -> pydicom.Dataset:
    """highdicom's real 128x128 CT slice."""
    return pydicom.dcmread(interop / "highdicom" / "ct_image.dcm")


def _save(ds: pydicom.Dataset, path: Path) -> Path:
    ds.save_as(path, enforce_file_format=False)
    return path


def _one_line_error(path: Path, error: type[MedsegError] = MedsegError, *, seg: bool = False) -> str:
    with pytest.raises(MedsegError) as info:
        read_dicom_seg(path) if seg else read_image(path)
    assert isinstance(info.value, error), f"{type(info.value).__name__}: {info.value}"
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message  # errors never lose the path
    assert "(unexpected " not in message  # refused by a specific check, not the last-resort guard
    return message


# ---------------------------------------------------------------------------------------------
# DICOM attributes used unchecked
# ---------------------------------------------------------------------------------------------
def _cr_with(interop: Path, tmp_path: Path, change) -> Path:
    ds = _cr(interop)
    change(ds)
    return _save(ds, tmp_path / "cr.dcm")


@pytest.mark.parametrize(
    ("change", "attribute"),
    [
        (lambda ds: delattr(ds, "Rows"), "Rows"),
        (lambda ds: setattr(ds, "Rows", [16, 16]), "Rows"),
        (lambda ds: setattr(ds, "Rows", 0), "Rows"),
        (lambda ds: setattr(ds, "BitsAllocated", None), "BitsAllocated"),
        (lambda ds: setattr(ds, "PixelSpacing", "0.5"), "PixelSpacing"),
        (lambda ds: ds.add_new(0x00280002, "DS", "nan"), "SamplesPerPixel"),
        (lambda ds: setattr(ds, "RescaleIntercept", ["0", "1"]), "RescaleIntercept"),
        (lambda ds: setattr(ds, "RescaleSlope", "nan"), "RescaleSlope"),
        (lambda ds: setattr(ds, "RescaleSlope", "inf"), "RescaleSlope"),
        (lambda ds: setattr(ds, "RescaleSlope", "1e400"), "RescaleSlope"),
        (lambda ds: setattr(ds, "PixelSpacing", ["1e308", "1e308"]), "PixelSpacing"),
        (lambda ds: setattr(ds, "PixelSpacing", ["0.0001", "0.5"]), "PixelSpacing"),
        (lambda ds: setattr(ds, "WindowCenter", "nan"), "WindowCenter"),
    ],
    ids=[
        "Rows deleted",
        "Rows multi-valued",
        "Rows 0",
        "BitsAllocated empty",
        "PixelSpacing single-valued",
        "SamplesPerPixel DS nan",
        "RescaleIntercept two-valued",
        "RescaleSlope nan",
        "RescaleSlope inf",
        "RescaleSlope 1e400",
        "PixelSpacing 1e308",
        "PixelSpacing below 1e-3 mm",
        "WindowCenter nan",
    ],
)
def test_dicom_attribute_checked(interop: Path, tmp_path: Path, change, attribute: str) -> None:
    path = _cr_with(interop, tmp_path, change)
    assert attribute in _one_line_error(path, DicomInputError)


def test_corrupt_vr_raised_lazily(interop: Path, tmp_path: Path) -> None:
    """An unknown VR byte pair makes pydicom raise NotImplementedError only when the value is used."""
    data = (interop / "highdicom" / "ct_image.dcm").read_bytes()
    tag = struct.pack("<HH", 0x0028, 0x0030) + b"DS"  # PixelSpacing, explicit VR
    assert tag in data
    path = tmp_path / "vr.dcm"
    path.write_bytes(data.replace(tag, struct.pack("<HH", 0x0028, 0x0030) + b"\x55\x09", 1))
    assert "PixelSpacing" in _one_line_error(path, DicomInputError)


def test_64_bit_voi_lut(interop: Path, tmp_path: Path) -> None:
    def change(ds: pydicom.Dataset) -> None:
        item = Dataset()
        item.LUTDescriptor = [4, 0, 64]
        item.LUTData = bytes(32)
        item["LUTData"].VR = "OW"
        ds.VOILUTSequence = Sequence([item])

    assert "64-bit" in _one_line_error(_cr_with(interop, tmp_path, change), DicomInputError)


def test_empty_pixel_data_with_htj2k(interop: Path, tmp_path: Path) -> None:
    def change(ds: pydicom.Dataset) -> None:
        ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.201"  # HTJ2K lossless
        ds.PixelData = b"\xfe\xff\x00\xe0\x00\x00\x00\x00"  # an empty basic offset table, no fragment
        ds["PixelData"].is_undefined_length = True

    _one_line_error(_cr_with(interop, tmp_path, change), DicomInputError)


def test_origin_beyond_1e7_mm(interop: Path, tmp_path: Path) -> None:
    ds = _ct(interop)
    ds.ImagePositionPatient = [2147483647, 0, 0]
    assert "ImagePositionPatient" in _one_line_error(_save(ds, tmp_path / "ct.dcm"), DicomInputError)


def test_ct_without_orientation_not_read_as_2d(interop: Path, tmp_path: Path) -> None:
    folder = tmp_path / "ct"
    folder.mkdir()
    ds = _ct(interop)
    del ds.ImageOrientationPatient
    _save(ds, folder / "1.dcm")
    assert "ImageOrientationPatient" in _one_line_error(folder, DicomInputError)
    assert "ImageOrientationPatient" in _one_line_error(folder / "1.dcm", DicomInputError)


def test_series_declaring_65535_squared_is_refused_before_allocating(interop: Path, tmp_path: Path) -> None:
    folder = tmp_path / "big"
    shutil.copytree(interop / "pydicom_77654033" / "CT2", folder)
    for f in folder.iterdir():
        ds = pydicom.dcmread(f)
        ds.Rows = ds.Columns = 65535
        _save(ds, f)
    tracemalloc.start()
    try:
        message = _one_line_error(folder, DicomInputError)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "Rows" in message and peak < 50 * 2**20


def test_zero_filled_junk_in_a_dicom_folder_is_skipped_fast(shared_data: Path, tmp_path: Path) -> None:
    folder = tmp_path / "series"
    shutil.copytree(shared_data / "ct_lidc_nodules" / "LIDC-IDRI-0001" / "dicom", folder)
    (folder / "junk.bin").write_bytes(bytes(8 << 20))  # 8 MiB of zeros: pydicom would take ~8 s
    t0 = time.perf_counter()
    image = read_image(folder)
    assert time.perf_counter() - t0 < 5.0
    assert image.shape == (16, 512, 512)
    single = tmp_path / "zeros.dcm"
    single.write_bytes(bytes(4 << 20))
    t0 = time.perf_counter()
    _one_line_error(single, DicomInputError)
    assert time.perf_counter() - t0 < 1.0


def test_huge_element_length_does_not_allocate(interop: Path, tmp_path: Path) -> None:
    """A corrupt 4 GB element length in a small file: pydicom would allocate it when reading."""
    data = bytearray((interop / "highdicom" / "seg_image_ct_binary.dcm").read_bytes())
    tag = struct.pack("<HH", 0x0008, 0x0016)  # SOPClassUID, implicit VR
    i = data.index(tag, 132 + 200)
    struct.pack_into("<I", data, i + 4, 0xFFFFFFF0)
    path = tmp_path / "seg.dcm"
    path.write_bytes(bytes(data))
    tracemalloc.start()
    try:
        _one_line_error(path, DicomInputError, seg=True)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50 * 2**20


# ---------------------------------------------------------------------------------------------
# DICOM-SEG
# ---------------------------------------------------------------------------------------------
def _seg_with(interop: Path, tmp_path: Path, change, name: str = "seg_image_ct_binary.dcm") -> Path:
    ds = pydicom.dcmread(interop / "highdicom" / name)
    change(ds)
    return _save(ds, tmp_path / "seg.dcm")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda ds: delattr(ds, "DimensionIndexSequence"), "DimensionIndexSequence"),
        (lambda ds: setattr(ds, "SegmentSequence", Sequence([])), "SegmentSequence"),
        (lambda ds: setattr(ds, "Columns", 0), "Columns"),
        (
            lambda ds: setattr(
                ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0],
                "SpacingBetweenSlices",
                "0.0002",
            ),
            "SpacingBetweenSlices",
        ),
        (lambda ds: setattr(ds, "SegmentationType", "NONSENSE"), "SegmentationType"),
        (lambda ds: delattr(ds, "PixelRepresentation"), "PixelRepresentation"),
        (lambda ds: delattr(ds, "PhotometricInterpretation"), "PhotometricInterpretation"),
        (lambda ds: setattr(ds, "SegmentationType", "FRACTIONAL"), "BitsAllocated"),
    ],
    ids=[
        "no DimensionIndexSequence",
        "empty SegmentSequence",
        "Columns 0",
        "spacing 0.0002",
        "bad type",
        "no PixelRepresentation",
        "no PhotometricInterpretation",
        "type does not fit the bits",
    ],
)
def test_seg_checked_before_highdicom(interop: Path, tmp_path: Path, change, expected: str) -> None:
    assert expected in _one_line_error(_seg_with(interop, tmp_path, change), DicomInputError, seg=True)


def test_seg_slices_too_close_for_memory(interop: Path, tmp_path: Path) -> None:
    """Spacing in range but the frames 100 mm apart at 0.002 mm: 50,000 slices would be allocated."""

    def change(ds: pydicom.Dataset) -> None:
        ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].SpacingBetweenSlices = "0.002"
        ds.Rows = ds.Columns = 16
        last = ds.PerFrameFunctionalGroupsSequence[-1].PlanePositionSequence[0]
        last.ImagePositionPatient = [last.ImagePositionPatient[0], last.ImagePositionPatient[1], 1e5]

    path = _seg_with(interop, tmp_path, change, "seg_image_ct_binary_overlap.dcm")
    assert "slices" in _one_line_error(path, DicomInputError, seg=True)


def test_seg_labelmap_type_in_a_binary_seg_class(interop: Path, tmp_path: Path) -> None:
    """A FRACTIONAL SEG relabelled LABELMAP: highdicom indexed its segment table with 128 and 255."""

    def change(ds: pydicom.Dataset) -> None:
        ds.SegmentationType = "LABELMAP"

    path = _seg_with(interop, tmp_path, change, "seg_image_ct_true_fractional.dcm")
    assert "SOP class" in _one_line_error(path, DicomInputError, seg=True)


def test_seg_frames_a_tenth_of_a_micrometre_apart(interop: Path, tmp_path: Path) -> None:
    """Fuzzer timeout: one frame moved by 0.0001 mm made highdicom build a 2-million-slice volume."""

    def change(ds: pydicom.Dataset) -> None:
        plane = ds.PerFrameFunctionalGroupsSequence[-1].PlanePositionSequence[0]
        x, y, z = (float(v) for v in plane.ImagePositionPatient)
        plane.ImagePositionPatient = [x, y, z - 0.0001]

    path = _seg_with(interop, tmp_path, change, "seg_image_ct_binary_overlap.dcm")
    t0 = time.perf_counter()
    assert "apart" in _one_line_error(path, DicomInputError, seg=True)
    assert time.perf_counter() - t0 < 5


def test_truncated_seg(interop: Path, tmp_path: Path) -> None:
    data = (interop / "highdicom" / "seg_image_ct_binary.dcm").read_bytes()
    for cut in (200, len(data) // 2, len(data) - 10):
        path = tmp_path / f"cut{cut}.dcm"
        path.write_bytes(data[:cut])
        _one_line_error(path, DicomInputError, seg=True)


# ---------------------------------------------------------------------------------------------
# NIfTI
# ---------------------------------------------------------------------------------------------
def _nifti_bytes(shape=(6, 5, 4), dtype=np.int16) -> bytearray:
    img = nib.Nifti1Image(
        np.arange(np.prod(shape), dtype=dtype).reshape(shape), np.diag([0.8, 0.8, 2.0, 1.0])
    )
    img.set_qform(img.affine, code=1)
    img.set_sform(img.affine, code=1)
    return bytearray(img.to_bytes())


def test_nifti_bad_quaternion_with_valid_sform_uses_the_sform(tmp_path: Path) -> None:
    raw = _nifti_bytes()
    struct.pack_into("<f", raw, 264, 1.5)  # quatern_d: b^2 + c^2 + d^2 > 1
    path = tmp_path / "q.nii"
    path.write_bytes(bytes(raw))
    image = read_image(path)
    assert image.spacing == pytest.approx((0.8, 0.8, 2.0))
    struct.pack_into("<h", raw, 254, 0)  # no sform: nothing usable is left
    path.write_bytes(bytes(raw))
    assert "quatern" in _one_line_error(path, GeometryError)


def test_nifti_dim_zero(tmp_path: Path) -> None:
    raw = _nifti_bytes()
    struct.pack_into("<h", raw, 42, 0)  # dim[1] = 0
    path = tmp_path / "empty.nii"
    path.write_bytes(bytes(raw))
    assert "dim" in _one_line_error(path, InputError)


def test_nifti_gz_declaring_2e9_voxels_fails_without_allocating(tmp_path: Path) -> None:
    raw = _nifti_bytes(dtype=np.uint8)
    struct.pack_into("<8h", raw, 40, 3, 32767, 32767, 2, 1, 1, 1, 1)  # 2.1e9 voxels
    path = tmp_path / "big.nii.gz"
    path.write_bytes(gzip.compress(bytes(raw) + bytes(60_000)))
    tracemalloc.start()
    try:
        message = _one_line_error(path, InputError)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "dim" in message and peak < 50 * 2**20


@pytest.mark.parametrize(
    ("offset", "value", "fmt"),
    [(80, 1e-9, "<f"), (80, float("nan"), "<f"), (280 + 12, 1e12, "<f"), (80, 3e4, "<f")],
    ids=["pixdim 1e-9", "pixdim nan", "srow origin 1e12", "pixdim 3e4"],
)
def test_nifti_implausible_header_values(tmp_path: Path, offset: int, value: float, fmt: str) -> None:
    raw = _nifti_bytes()
    struct.pack_into(fmt, raw, offset, value)
    if offset == 80:  # pixdim[1]: make both transforms follow it
        struct.pack_into("<hh", raw, 252, 0, 0)
    path = tmp_path / "bad.nii"
    path.write_bytes(bytes(raw))
    _one_line_error(path, InputError)


def test_nifti_truncated_gives_one_line(tmp_path: Path) -> None:
    raw = _nifti_bytes()
    path = tmp_path / "cut.nii"
    path.write_bytes(bytes(raw[: len(raw) - 20]))
    _one_line_error(path, InputError)


# ---------------------------------------------------------------------------------------------
# pictures
# ---------------------------------------------------------------------------------------------
def _small_png(shared_data: Path, path: Path) -> bytes:
    src = sorted((shared_data / "cxr_lung_covid19_gb" / "images").glob("*.png"))[0]
    with PILImage.open(src) as pic:
        pic.convert("L").resize((32, 24)).save(path)
    return path.read_bytes()


def test_png_decompression_bomb(shared_data: Path, tmp_path: Path) -> None:
    data = bytearray(_small_png(shared_data, tmp_path / "small.png"))
    struct.pack_into(">II", data, 16, 16000, 16000)
    struct.pack_into(">I", data, 29, zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    path = tmp_path / "bomb.png"
    path.write_bytes(bytes(data))
    _one_line_error(path, InputError)


def test_truncated_two_page_tiff(shared_data: Path, tmp_path: Path) -> None:
    _small_png(shared_data, tmp_path / "small.png")
    with PILImage.open(tmp_path / "small.png") as pic:
        pic.save(tmp_path / "two.tif", save_all=True, append_images=[pic.rotate(90)])
    data = (tmp_path / "two.tif").read_bytes()
    for cut in range(len(data) // 2, len(data), max(1, len(data) // 16)):
        path = tmp_path / f"cut{cut}.tif"
        path.write_bytes(data[:cut])
        _one_line_error(path, InputError)


# ---------------------------------------------------------------------------------------------
# checkpoint config
# ---------------------------------------------------------------------------------------------
def _checkpoint(tmp_path: Path, **changes) -> Path:
    from medseg.config import Config, ModelConfig, config_to_dict

    cfg = Config(model=ModelConfig(decoder_channels=[32, 16, 16, 8, 8], encoder_weights="none")).validate()
    folder = tmp_path / "ckpt"
    folder.mkdir(exist_ok=True)
    (folder / "model.safetensors").write_bytes(b"")
    info = {
        "format": "medseg.checkpoint",
        "format_version": 1,
        "config": config_to_dict(cfg),
        "preprocessing": {"mean": [0.5], "std": [0.5], "input_range": [0.0, 1.0], "required_multiple": 32},
        "weights": {"file": "model.safetensors"},
        "labels": {},
        "training": {},
    }
    for key, value in changes.items():
        section, _, rest = key.partition("__")
        target = info[section]
        parts = rest.split("__")
        for part in parts[:-1]:
            target = target[part]
        target[parts[-1]] = value
    text = json.dumps(info).replace('"NAN"', "NaN")
    (folder / "config.json").write_text(text)
    return folder


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"weights__file": "../x.safetensors"}, "weights.file"),
        ({"weights__file": "/etc/passwd"}, "weights.file"),
        ({"config__model__decoder_channels": [10_000_000] * 5}, "decoder_channels"),
        ({"config__infer__batch_size": 0}, "batch_size"),
        ({"config__infer__sliding_window_overlap": 1.0}, "sliding_window_overlap"),
        ({"preprocessing__mean": ["NAN"]}, "preprocessing.mean"),
        ({"preprocessing__std": [0.0]}, "preprocessing.std"),
    ],
    ids=["weights outside", "weights absolute", "huge decoder", "batch 0", "overlap 1", "NaN mean", "std 0"],
)
def test_checkpoint_config_validated_on_load(tmp_path: Path, changes: dict, expected: str) -> None:
    from medseg.models import load_checkpoint

    outside = tmp_path / "x.safetensors"
    outside.write_bytes(b"not read")
    t0 = time.perf_counter()
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(_checkpoint(tmp_path, **changes))
    assert time.perf_counter() - t0 < 10
    assert expected in str(info.value) and "config.json" in str(info.value)
    assert "\n" not in str(info.value)


def test_preprocessing_nan_is_really_nan_in_the_file(tmp_path: Path) -> None:
    """Guard for the test above: the NaN reaches config.json as JSON NaN."""
    folder = _checkpoint(tmp_path, preprocessing__mean=["NAN"])
    assert math.isnan(json.loads((folder / "config.json").read_text())["preprocessing"]["mean"][0])
