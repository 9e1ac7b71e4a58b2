"""NIfTI, MetaImage/NRRD and PNG/JPEG/TIFF reading against independent readers."""

from __future__ import annotations

import logging
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image as PILImage

from medseg.errors import InputError
from medseg.io import detect_format, ras_lps_flip, read_image


def _assert_geometry_equals_sitk(img, simg: sitk.Image) -> None:
    np.testing.assert_allclose(img.origin, simg.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(img.spacing, simg.GetSpacing(), atol=1e-5)
    np.testing.assert_allclose(img.direction.ravel(), simg.GetDirection(), atol=1e-6)


def test_nsclc_nifti_is_lps_like_simpleitk(shared_data: Path) -> None:
    folder = shared_data / "ct_lung_nsclc_radiomics" / "LUNG1-002"
    ct = read_image(folder / "ct.nii.gz", modality="CT")
    simg = sitk.ReadImage(str(folder / "ct.nii.gz"))
    _assert_geometry_equals_sitk(ct, simg)
    np.testing.assert_array_equal(ct.array, sitk.GetArrayViewFromImage(simg))
    assert ct.array.dtype == np.int16 and ct.modality == "CT" and ct.orientation == "LPS"
    assert ct.array.flags.c_contiguous
    label = read_image(folder / "lung_label.nii.gz", kind="label")
    assert label.kind == "label" and label.array.dtype == np.uint8
    assert set(np.unique(label.array).tolist()) == {0, 1, 2}
    assert label.same_geometry(ct)
    # clinical sanity: lungs are air-filled (mean HU well below water)
    assert ct.array[label.array > 0].mean() < -500


def test_ras_lps_flip_is_one_self_inverse_function() -> None:
    a = np.array([[0.5, 0, 0, 10], [0, 0.7, 0, -20], [0, 0, 2, 30], [0, 0, 0, 1.0]])
    flipped = ras_lps_flip(a)
    np.testing.assert_allclose(flipped[:2], -a[:2])
    np.testing.assert_allclose(flipped[2:], a[2:])
    np.testing.assert_allclose(ras_lps_flip(flipped), a)


def _nifti(path: Path, data: np.ndarray, *, sform=None, qform=None) -> Path:
    img = nib.Nifti1Image(data, None)
    if qform is not None:
        img.set_qform(qform, code=1)
    else:
        img.set_qform(None, code=0)
    if sform is not None:
        img.set_sform(sform, code=2)
    else:
        img.set_sform(None, code=0)
    nib.save(img, str(path))
    return path


def test_qform_and_sform_choice(tmp_path: Path, caplog) -> None:
    data = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    qform = np.array([[-1.5, 0, 0, 10], [0, 2.0, 0, -5], [0, 0, 3.0, 7], [0, 0, 0, 1]])
    sform = np.array([[0, 0, 3.0, 1], [0, -2.0, 0, 2], [1.5, 0, 0, 3], [0, 0, 0, 1]])
    only_q = read_image(_nifti(tmp_path / "q.nii", data, qform=qform))
    np.testing.assert_allclose(only_q.affine, ras_lps_flip(qform), atol=1e-6)
    only_s = read_image(_nifti(tmp_path / "s.nii", data, sform=sform))
    np.testing.assert_allclose(only_s.affine, ras_lps_flip(sform), atol=1e-6)
    with caplog.at_level(logging.WARNING, logger="medseg.io"):
        both = read_image(_nifti(tmp_path / "qs.nii", data, sform=sform, qform=qform))
    np.testing.assert_allclose(both.affine, ras_lps_flip(sform), atol=1e-6)
    assert "sform and qform differ" in caplog.text
    # voxel (x, y, z) = data[x, y, z] in NIfTI -> array[z, y, x] here
    assert both.array[3, 2, 1] == data[1, 2, 3]


def test_singleton_fourth_axis_is_dropped(tmp_path: Path) -> None:
    data = np.arange(60, dtype=np.float32).reshape(3, 4, 5, 1)
    path = tmp_path / "t1.nii.gz"
    nib.save(nib.Nifti1Image(data, np.diag([2.0, 2, 2, 1])), str(path))
    img = read_image(path)
    assert img.shape == (5, 4, 3)
    np.testing.assert_array_equal(img.array, data[..., 0].transpose(2, 1, 0))


def test_nrrd_label_matches_simpleitk(shared_data: Path) -> None:
    path = shared_data / "dicom_seg_interop" / "dcmqi" / "liver_seg.nrrd"
    img = read_image(path, kind="label")
    simg = sitk.ReadImage(str(path))
    _assert_geometry_equals_sitk(img, simg)
    np.testing.assert_array_equal(img.array, sitk.GetArrayViewFromImage(simg))
    assert img.source.format == "nrrd" and img.array.dtype == np.uint8
    # the SEG was made on this CT: same grid
    ct = read_image(shared_data / "dicom_seg_interop" / "dcmqi" / "ct-3slice")
    assert img.same_geometry(ct, atol=1e-3)


def test_mha_with_modality_and_2d(tmp_path: Path) -> None:
    vol = sitk.GetImageFromArray(np.arange(24, dtype=np.int16).reshape(2, 3, 4))
    vol.SetSpacing((0.5, 0.6, 2.0))
    vol.SetOrigin((1, 2, 3))
    vol.SetDirection((0, 1, 0, 1, 0, 0, 0, 0, -1))
    sitk.WriteImage(vol, str(tmp_path / "v.mhd"))
    img = read_image(tmp_path / "v.mhd")  # LUNA16 style .mhd + .raw
    _assert_geometry_equals_sitk(img, vol)
    np.testing.assert_array_equal(img.array, sitk.GetArrayViewFromImage(vol))
    assert img.modality == "OT"
    header = (tmp_path / "v.mhd").read_text()
    (tmp_path / "v.mhd").write_text(header.replace("ElementSpacing", "Modality = MET_MOD_CT\nElementSpacing"))
    assert read_image(tmp_path / "v.mhd").modality == "CT"
    assert read_image(tmp_path / "v.mhd", modality="MR").modality == "MR"
    flat = sitk.GetImageFromArray(np.arange(12, dtype=np.uint8).reshape(3, 4))
    flat.SetSpacing((0.2, 0.3))
    sitk.WriteImage(flat, str(tmp_path / "f.mha"))
    img2 = read_image(tmp_path / "f.mha")
    assert img2.ndim == 2 and img2.spacing == pytest.approx((0.2, 0.3))


def test_cxr_png_and_jpeg_are_grey_pictures(shared_data: Path) -> None:
    images = shared_data / "cxr_lung_covid19_gb" / "images"
    for name in ("ARDSSevere.png", "covid-19-pneumonia-2.jpg"):
        img = read_image(images / name)
        with PILImage.open(images / name) as pic:
            expected = np.asarray(pic.convert("L"))
        assert img.ndim == 2 and img.array.dtype == np.uint8
        np.testing.assert_array_equal(img.array, expected)
        assert img.source.format == ("png" if name.endswith(".png") else "jpeg")
        assert not img.spacing_known and img.spacing == (1.0, 1.0)
    mask = read_image(shared_data / "cxr_lung_covid19_gb" / "masks" / "ARDSSevere_lungs.png", kind="label")
    assert mask.shape == read_image(images / "ARDSSevere.png").shape
    assert set(np.unique(mask.array).tolist()) <= {0, 1, 2} and mask.array.max() == 2


def test_rgb_becomes_grey_with_a_note_and_16bit_png_is_kept(
    shared_data: Path, tmp_path: Path, caplog
) -> None:
    src = shared_data / "cxr_lung_covid19_gb" / "images" / "ARDSSevere.png"
    with PILImage.open(src) as pic:
        grey = np.asarray(pic.convert("L"))
    rgb_path = tmp_path / "rgb.png"
    PILImage.fromarray(np.stack([grey] * 3, axis=-1)).save(rgb_path)
    with caplog.at_level(logging.INFO, logger="medseg.io"):
        img = read_image(rgb_path)
    assert "converted to greyscale" in caplog.text
    np.testing.assert_array_equal(img.array, grey)
    deep = grey.astype(np.uint16) * 257
    PILImage.fromarray(deep).save(tmp_path / "deep.png")
    img16 = read_image(tmp_path / "deep.png")
    assert img16.array.dtype == np.uint16
    np.testing.assert_array_equal(img16.array, deep)
    tif = tmp_path / "x.tiff"
    PILImage.fromarray(grey).save(tif)
    assert read_image(tif).source.format == "tiff"


def test_colour_picture_is_not_a_label(tmp_path: Path) -> None:
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[..., 0] = 200
    PILImage.fromarray(rgb).save(tmp_path / "red.png")
    with pytest.raises(InputError, match="colour"):
        read_image(tmp_path / "red.png", kind="label")


def test_truncated_picture_and_nifti(shared_data: Path, tmp_path: Path) -> None:
    src = shared_data / "cxr_lung_covid19_gb" / "images" / "ARDSSevere.png"
    cut = tmp_path / "cut.png"
    cut.write_bytes(src.read_bytes()[:5000])
    with pytest.raises(InputError, match="truncated or corrupt"):
        read_image(cut)
    nii = shared_data / "ct_lung_nsclc_radiomics" / "LUNG1-002" / "lung_label.nii.gz"
    cut_nii = tmp_path / "cut.nii.gz"
    cut_nii.write_bytes(nii.read_bytes()[:20000])
    with pytest.raises(InputError, match="cut.nii.gz"):
        read_image(cut_nii)


def test_format_is_detected_by_content(shared_data: Path, tmp_path: Path) -> None:
    dcm = shared_data / "ct_lidc_nodules" / "LIDC-IDRI-0001" / "dicom" / "000040.dcm"
    odd = tmp_path / "slice.png"  # a DICOM file with a misleading suffix
    odd.write_bytes(dcm.read_bytes())
    assert detect_format(odd) == "dicom"
    assert read_image(odd).shape == (1, 512, 512)
    no_suffix = tmp_path / "IMG0001"
    no_suffix.write_bytes((shared_data / "cxr_dicom" / "CR-MONO1-10-chest.dcm").read_bytes())
    assert read_image(no_suffix).modality == "CR"  # no preamble, no suffix: tried with pydicom
    png = tmp_path / "picture"
    png.write_bytes((shared_data / "cxr_lung_covid19_gb" / "images" / "ARDSSevere.png").read_bytes())
    assert detect_format(png) == "picture"


def test_big_endian_nifti_gives_native_array(tmp_path: Path) -> None:
    data = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    img = nib.Nifti1Image(data, np.eye(4), header=nib.Nifti1Header(endianness=">"))
    nib.save(img, str(tmp_path / "be.nii"))
    assert not np.asanyarray(nib.load(str(tmp_path / "be.nii")).dataobj).dtype.isnative  # really big-endian
    got = read_image(tmp_path / "be.nii")
    assert got.array.dtype.isnative
    np.testing.assert_array_equal(got.array, data.transpose(2, 1, 0))
    assert got.to_tensor().shape == (1, 4, 3, 2)
