"""Single DICOM radiographs: LUTs, MONOCHROME1 inversion, pixel spacing sources, files without meta."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import FileMetaDataset
from pydicom.pixels import apply_modality_lut, apply_voi_lut
from pydicom.uid import ImplicitVRLittleEndian

from medseg.io import read_image


@pytest.fixture(scope="module")
def cxr(shared_data: Path) -> Path:
    return shared_data / "cxr_dicom"


def _as_part10(src: Path, dst: Path, **changes) -> Path:
    """Copy a (possibly meta-less) DICOM file as a proper Part 10 file with some attributes changed."""
    ds = pydicom.dcmread(src, force=True)
    if "TransferSyntaxUID" not in getattr(ds, "file_meta", FileMetaDataset()):
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    for key, value in changes.items():
        if value is None:
            del ds[key]
        else:
            setattr(ds, key, value)
    ds.save_as(dst, enforce_file_format=True)
    return dst


def _regions(a: np.ndarray) -> dict[str, float]:
    h, w = a.shape
    rows = slice(int(0.3 * h), int(0.6 * h))
    return {
        "lung_r": float(a[rows, int(0.15 * w) : int(0.35 * w)].mean()),
        "lung_l": float(a[rows, int(0.65 * w) : int(0.85 * w)].mean()),
        "mediastinum": float(a[rows, int(0.45 * w) : int(0.55 * w)].mean()),
    }


def test_monochrome1_without_file_meta_is_inverted(cxr: Path, tmp_path: Path) -> None:
    path = cxr / "CR-MONO1-10-chest.dcm"
    assert open(path, "rb").read(132)[128:132] != b"DICM"  # really no preamble / file meta
    img = read_image(path)
    assert img.ndim == 2 and img.shape == (440, 440) and img.modality == "CR"
    assert img.array.dtype == np.float32
    assert img.source.spacing_tag is None and not img.spacing_known
    np.testing.assert_allclose(img.affine, np.eye(3))
    assert "PixelData" not in img.source.datasets[0]
    # anatomy: after inversion lungs are darker than the mediastinum (higher = brighter)
    r = _regions(img.array)
    assert r["lung_r"] < r["mediastinum"] - 150 and r["lung_l"] < r["mediastinum"] - 150
    # the same pixels labelled MONOCHROME2 read as the exact inverse within the window output range
    mono2 = read_image(_as_part10(path, tmp_path / "mono2.dcm", PhotometricInterpretation="MONOCHROME2"))
    np.testing.assert_allclose(img.array + mono2.array, 0 + 1023, atol=1e-3)  # 10-bit window range 0..1023
    r2 = _regions(mono2.array)
    assert r2["lung_r"] > r2["mediastinum"]
    # MONOCHROME2 values are pydicom's windowed values (WindowCenter 550 / Width 1024 applied)
    ds = pydicom.dcmread(tmp_path / "mono2.dcm")
    expected = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds)
    np.testing.assert_allclose(mono2.array, expected, atol=1e-3)


def test_fake_monochrome1_jpeg_is_inverse_of_original(cxr: Path) -> None:
    orig = read_image(cxr / "siim_cr_chest_pa.dcm")  # JPEG baseline, decoded with pylibjpeg
    fake = read_image(cxr / "siim_cr_chest_pa_FAKE_MONOCHROME1.dcm")
    assert orig.shape == (1024, 1024)
    assert orig.source.spacing_tag == "PixelSpacing"
    np.testing.assert_allclose(orig.spacing, (0.168, 0.168))
    np.testing.assert_array_equal(fake.array, 255 - orig.array)
    r = _regions(orig.array)
    assert r["lung_r"] < r["mediastinum"] and r["lung_l"] < r["mediastinum"]


def test_dx_for_presentation_spacing_and_monochrome1(shared_data: Path) -> None:
    path = shared_data / "dicom_seg_interop" / "highdicom" / "dx_image.dcm"
    img = read_image(path)
    ds = pydicom.dcmread(path)
    assert img.modality == "DX" and img.source.spacing_tag == "PixelSpacing"
    ps = [float(v) for v in ds.PixelSpacing]
    np.testing.assert_allclose(img.spacing, (ps[1], ps[0]))  # (x = columns, y = rows)
    windowed = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds)
    np.testing.assert_allclose(img.array, 255 - windowed, atol=1e-3)  # 8-bit window range 0..255


def test_cr_with_rescale_uses_imager_pixel_spacing(shared_data: Path) -> None:
    folder = shared_data / "dicom_seg_interop" / "pydicom_77654033" / "CR1"  # a folder with one CR
    img = read_image(folder)
    ds = pydicom.dcmread(folder / "6154.dcm")
    assert "PixelSpacing" not in ds and img.source.spacing_tag == "ImagerPixelSpacing"
    np.testing.assert_allclose(img.spacing, [float(v) for v in ds.ImagerPixelSpacing][::-1])
    # slope 0.684 / intercept 200 then window 1600/2800 -> output range is the rescaled 12-bit range
    lo, hi = 0 * 0.684 + 200, 4095 * 0.684 + 200
    windowed = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds)
    np.testing.assert_allclose(img.array, lo + hi - windowed, rtol=1e-5)


def test_nominal_scanned_pixel_spacing_is_last_resort(cxr: Path, tmp_path: Path) -> None:
    path = _as_part10(
        cxr / "CR-MONO1-10-chest.dcm", tmp_path / "scanned.dcm", NominalScannedPixelSpacing=[0.2, 0.3]
    )
    img = read_image(path)
    assert img.source.spacing_tag == "NominalScannedPixelSpacing" and img.spacing_known
    np.testing.assert_allclose(img.affine, np.diag([0.3, 0.2, 1.0]))
    both = _as_part10(path, tmp_path / "both.dcm", ImagerPixelSpacing=[0.15, 0.15])
    assert read_image(both).source.spacing_tag == "ImagerPixelSpacing"


def test_radiograph_as_label_keeps_stored_values(shared_data: Path) -> None:
    path = shared_data / "dicom_seg_interop" / "highdicom" / "dx_image.dcm"
    img = read_image(path, kind="label")
    assert img.kind == "label" and img.array.dtype == np.uint8
    np.testing.assert_array_equal(img.array, pydicom.dcmread(path).pixel_array)


def test_zero_pixel_spacing_means_not_calibrated(tmp_path: Path) -> None:
    """pydicom-data's RG1_* radiographs write PixelSpacing 0\\0: read as 'spacing unknown', not refused."""
    import pydicom

    from medseg.io import read_image

    src = Path(__file__).resolve().parents[2] / "sample_data" / "cxr" / "siim_cr_chest_pa.dcm"
    ds = pydicom.dcmread(src)
    ds.PixelSpacing = ["0.000", "0.000"]
    for kw in ("ImagerPixelSpacing", "NominalScannedPixelSpacing"):
        if kw in ds:
            delattr(ds, kw)
    ds.save_as(tmp_path / "zero.dcm")
    image = read_image(tmp_path / "zero.dcm")
    assert not image.spacing_known and image.source.spacing_tag is None
