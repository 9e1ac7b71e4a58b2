"""write_image (formats, atomicity, input protection) and the `medseg info` / `medseg convert` commands."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from PIL import Image as PILImage

from medseg.cli import main
from medseg.errors import ExportError
from medseg.image import Image
from medseg.io import read_image, write_image


def _volume() -> Image:
    arr = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    affine = np.array([[0, 0.8, 0, 10.0], [-0.7, 0, 0, 20.0], [0, 0, 2.5, -30.0], [0, 0, 0, 1]])
    return Image(arr, affine, "intensity", "CT")


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".mha", ".mhd", ".nrrd"])
def test_volume_round_trip_every_format(suffix: str, tmp_path: Path) -> None:
    img = _volume()
    out = write_image(img, tmp_path / f"vol{suffix}")
    back = read_image(out)
    assert back.same_geometry(img, atol=1e-5)
    np.testing.assert_array_equal(back.array, img.array)
    assert back.array.dtype == np.int16
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == (["vol.mhd", "vol.raw"] if suffix == ".mhd" else [f"vol{suffix}"])  # no temp files left
    if suffix.startswith(".nii"):  # the stored NIfTI affine is RAS, qform = sform (code 1)
        nii = nib.load(str(out))
        np.testing.assert_allclose(nii.affine[:2], -img.affine[:2], atol=1e-5)
        assert int(nii.header["qform_code"]) == 1 and int(nii.header["sform_code"]) == 1


def test_label_writes_small_integer_types(tmp_path: Path) -> None:
    arr = np.zeros((3, 4, 5), np.int64)
    arr[1, 2, 3] = 2
    label = Image(arr, np.eye(4), "label")
    for suffix in (".nii.gz", ".nrrd"):
        back = read_image(write_image(label, tmp_path / f"lab{suffix}"), kind="label")
        assert back.array.dtype == np.uint8
        np.testing.assert_array_equal(back.array, arr)
    assert sitk.ReadImage(str(tmp_path / "lab.nrrd")).GetPixelID() == sitk.sitkUInt8


def test_png_labels_and_intensity_rule(tmp_path: Path) -> None:
    mask = np.zeros((6, 7), np.uint8)
    mask[2:4, 1:3] = 1
    mask[4, 5] = 2
    out = write_image(Image(mask, np.eye(3), "label"), tmp_path / "mask.png")
    np.testing.assert_array_equal(read_image(out, kind="label").array, mask)
    big = Image(np.array([[0, 300], [5, 1000]], np.uint16), np.eye(3), "label")
    with PILImage.open(write_image(big, tmp_path / "big.png")) as pic:
        np.testing.assert_array_equal(np.asarray(pic), big.array)
    # intensities: [min, max] -> [0, 255]
    hu = Image(np.array([[-1000.0, 0.0], [1000.0, 500.0]], np.float32), np.eye(3))
    got = read_image(write_image(hu, tmp_path / "hu.png")).array
    np.testing.assert_array_equal(got, [[0, 128], [255, 191]])
    with pytest.raises(ExportError, match="2-D"):
        write_image(_volume(), tmp_path / "vol.png")


def test_refuses_to_overwrite_inputs_and_bad_suffix(
    shared_data: Path, tmp_path: Path, lidc_copy: Path
) -> None:
    png = tmp_path / "in.png"
    png.write_bytes((shared_data / "cxr_lung_covid19_gb" / "images" / "ARDSSevere.png").read_bytes())
    before = png.read_bytes()
    img = read_image(png)
    with pytest.raises(ExportError, match="overwrite an input"):
        write_image(img, png)
    assert png.read_bytes() == before
    series = read_image(lidc_copy)
    target = series.source.files[3]
    dicom_bytes = target.read_bytes()
    with pytest.raises(ExportError, match="overwrite an input"):
        write_image(series, target)
    assert target.read_bytes() == dicom_bytes
    with pytest.raises(ExportError, match="cannot write .jpg"):
        write_image(img, tmp_path / "x.jpg")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png", "lidc"]


def test_failed_write_leaves_nothing(tmp_path: Path) -> None:
    big_label = Image(np.array([[70000]], np.int32), np.eye(3), "label")
    with pytest.raises(ExportError, match="16-bit PNG"):
        write_image(big_label, tmp_path / "big.png")
    assert list(tmp_path.iterdir()) == []


def test_cli_info_dicom_series(lidc_dir: Path, capsys) -> None:
    assert main(["info", str(lidc_dir)]) == 0
    out = capsys.readouterr().out
    uid = pydicom.dcmread(next(lidc_dir.glob("*.dcm")), stop_before_pixels=True).SeriesInstanceUID
    for text in ("CT", "(16, 512, 512)", "0.7031, 0.7031, 2.5", "LPS", "-2048 .. 3071", "PixelSpacing", uid):
        assert text in out, text
    assert "16 files" in out


def test_cli_info_radiograph_and_mixed_folder(shared_data: Path, capsys) -> None:
    assert main(["info", str(shared_data / "cxr_dicom" / "siim_cr_chest_pa.dcm")]) == 0
    out = capsys.readouterr().out
    assert "CR" in out and "(1024, 1024)" in out and "PixelSpacing" in out and "0.168" in out
    folder = shared_data / "dicom_seg_interop" / "highdicom"
    assert main(["info", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "--series-uid" in out and "DX" in out and "SEG" in out
    dx_uid = pydicom.dcmread(folder / "dx_image.dcm", stop_before_pixels=True).SeriesInstanceUID
    assert main(["info", str(folder), "--series-uid", dx_uid]) == 0
    assert "(169, 211)" in capsys.readouterr().out


def test_cli_convert_series_and_label(lidc_dir: Path, shared_data: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "ct.nii.gz"
    assert main(["convert", str(lidc_dir), str(out)]) == 0
    assert "ct.nii.gz" in capsys.readouterr().out
    back, orig = read_image(out), read_image(lidc_dir)
    assert back.same_geometry(orig, atol=1e-4)
    np.testing.assert_array_equal(back.array, orig.array)
    mask = shared_data / "cxr_lung_covid19_gb" / "masks" / "ARDSSevere_lungs.png"
    assert main(["convert", str(mask), str(tmp_path / "mask.nrrd"), "--label"]) == 0
    np.testing.assert_array_equal(
        read_image(tmp_path / "mask.nrrd", kind="label").array, read_image(mask, kind="label").array
    )


def test_radiograph_to_nifti_stays_2d(shared_data: Path, tmp_path: Path) -> None:
    import nibabel as nib

    cr = read_image(shared_data / "cxr_dicom" / "siim_cr_chest_pa.dcm")
    back = read_image(write_image(cr, tmp_path / "cr.nii.gz"))
    assert nib.load(str(tmp_path / "cr.nii.gz")).header["dim"][0] == 2
    assert back.shape == cr.shape and back.ndim == 2
    np.testing.assert_allclose(back.affine, cr.affine, atol=1e-6)
    np.testing.assert_array_equal(back.array, cr.array)


def test_cli_convert_volume_to_png_is_one_user_level_line(lidc_dir: Path, tmp_path: Path, capsys) -> None:
    """Regression (#16): the message named an internal temp file and suggested Python code."""
    out = tmp_path / "ct.png"
    assert main(["convert", str(lidc_dir), str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith(f"medseg: error: {out}: a PNG holds one 2-D picture")
    assert ".tmp" not in err and "array[" not in err and ".nii.gz" in err
    assert list(tmp_path.iterdir()) == []
