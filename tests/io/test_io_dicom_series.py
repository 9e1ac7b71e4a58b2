"""DICOM CT series: geometry against SimpleITK and known synthetic geometry, round trips, HU."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.data import get_testdata_file

from medseg.io import list_series, read_image, write_image


def _sitk_series(folder: Path) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder)))
    return reader.Execute()


def _assert_same_as_sitk(img, simg: sitk.Image, atol: float = 1e-4) -> None:
    np.testing.assert_allclose(img.origin, simg.GetOrigin(), atol=atol)
    np.testing.assert_allclose(img.spacing, simg.GetSpacing(), atol=atol)
    np.testing.assert_allclose(img.direction.ravel(), simg.GetDirection(), atol=1e-6)
    np.testing.assert_array_equal(img.array, sitk.GetArrayViewFromImage(simg))


def test_lidc_series_matches_simpleitk(lidc_dir: Path) -> None:
    img = read_image(lidc_dir)
    assert img.shape == (16, 512, 512)
    assert img.modality == "CT" and img.kind == "intensity"
    assert img.array.dtype == np.int16  # slope 1, intercept -1024: exact int16 HU
    assert img.orientation == "LPS"
    _assert_same_as_sitk(img, _sitk_series(lidc_dir))
    # provenance: headers in slice order, no pixel data, files in the same order
    z = [float(ds.ImagePositionPatient[2]) for ds in img.source.datasets]
    assert z == sorted(z) and len(z) == 16
    assert all("PixelData" not in ds for ds in img.source.datasets)
    assert [pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in img.source.files] == list(
        img.source.sop_instance_uids
    )
    # HU from pydicom for one slice (independent decode)
    ds = pydicom.dcmread(img.source.files[5])
    hu = ds.pixel_array.astype(np.int32) * int(ds.RescaleSlope) + int(ds.RescaleIntercept)
    np.testing.assert_array_equal(img.array[5], hu)


def test_file_list_in_any_order_equals_folder(lidc_dir: Path) -> None:
    files = sorted(lidc_dir.glob("*.dcm"))
    random.Random(3).shuffle(files)
    a = read_image(files)
    b = read_image(lidc_dir)
    assert a.same_geometry(b, atol=0)
    np.testing.assert_array_equal(a.array, b.array)


def test_dcmqi_ct_matches_simpleitk(shared_data: Path) -> None:
    folder = shared_data / "dicom_seg_interop" / "dcmqi" / "ct-3slice"
    _assert_same_as_sitk(read_image(folder), _sitk_series(folder))


def test_single_ct_file_is_a_one_slice_volume() -> None:
    path = get_testdata_file("CT_small.dcm")
    img = read_image(path)
    ds = pydicom.dcmread(path)
    assert img.shape == (1, 128, 128)
    assert img.spacing[2] == pytest.approx(float(ds.SliceThickness))
    np.testing.assert_allclose(img.origin, [float(v) for v in ds.ImagePositionPatient])
    np.testing.assert_array_equal(
        img.array[0], ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    )


_C, _S = np.cos(0.4), np.sin(0.4)
ORIENTATIONS = {
    "axial": dict(row_dir=(1, 0, 0), col_dir=(0, 1, 0)),
    "axial-flipped-x": dict(row_dir=(-1, 0, 0), col_dir=(0, 1, 0)),
    "coronal": dict(row_dir=(1, 0, 0), col_dir=(0, 0, -1)),
    "sagittal": dict(row_dir=(0, 1, 0), col_dir=(0, 0, -1)),
    "oblique": dict(row_dir=(_C, _S, 0), col_dir=(-_S * np.cos(0.3), _C * np.cos(0.3), np.sin(0.3))),
    "axial-reversed-files": dict(row_dir=(1, 0, 0), col_dir=(0, 1, 0), file_order="reverse"),
}


@pytest.mark.parametrize("name", list(ORIENTATIONS))
def test_series_geometry_and_nifti_round_trip(name: str, make_series, tmp_path: Path) -> None:
    s = make_series(tmp_path / "dcm", **ORIENTATIONS[name])
    img = read_image(s.folder)
    np.testing.assert_allclose(img.affine, s.affine, atol=1e-5)
    np.testing.assert_array_equal(img.array, s.hu)
    # SimpleITK reading the same files agrees (independent sorting and geometry)
    _assert_same_as_sitk(img, _sitk_series(s.folder))

    i, j, k = s.marker
    world = s.affine @ np.array([i, j, k, 1.0])
    nii = write_image(img, tmp_path / "vol.nii.gz")
    back = read_image(nii)
    np.testing.assert_allclose(back.affine, s.affine, atol=1e-4)
    np.testing.assert_allclose(back.world_to_index(world[:3]), [i, j, k], atol=1e-4)
    assert back.array[k, j, i] == s.hu[k, j, i] == s.hu.max()
    # the NIfTI as SimpleITK sees it has the same LPS geometry (checks the RAS<->LPS flip)
    simg = sitk.ReadImage(str(nii))
    np.testing.assert_allclose(simg.TransformContinuousIndexToPhysicalPoint((i, j, k)), world[:3], atol=1e-4)
    assert sitk.GetArrayViewFromImage(simg)[k, j, i] == s.hu[k, j, i]


def test_float_rescale_gives_float32(make_series, tmp_path: Path) -> None:
    s = make_series(tmp_path / "dcm", slope=0.5, intercept=-1000.25)
    img = read_image(s.folder)
    assert img.array.dtype == np.float32
    np.testing.assert_allclose(img.array, s.hu, atol=1e-3)


def test_per_slice_rescale_applied_per_slice(make_series, tmp_path: Path) -> None:
    s = make_series(tmp_path / "dcm", n=3, file_order="forward")
    ds = pydicom.dcmread(s.files[1])
    ds.RescaleIntercept = "-1000"
    ds.save_as(s.files[1])
    img = read_image(s.folder)
    assert img.array.dtype == np.int16
    np.testing.assert_array_equal(img.array[0], s.stored[0].astype(np.int32) - 1024)
    np.testing.assert_array_equal(img.array[1], s.stored[1].astype(np.int32) - 1000)


def test_unused_high_bits_are_ignored_like_pydicom(make_series, tmp_path: Path) -> None:
    s = make_series(tmp_path / "dcm", bits_stored=12, signed=False, intercept=-1024, n=3)
    for f in s.files:  # set garbage in the 4 unused high bits (allowed by PS3.5 8.1.1)
        ds = pydicom.dcmread(f)
        raw = np.frombuffer(ds.PixelData, dtype=np.uint16) | np.uint16(0xA000)
        ds.PixelData = raw.tobytes()
        ds.save_as(f)
    img = read_image(s.folder)
    np.testing.assert_array_equal(img.array, s.hu)
    ds = pydicom.dcmread(s.files[0])  # s.files are in slice order
    np.testing.assert_array_equal(img.array[0], ds.pixel_array.astype(int) - 1024)


def test_enhanced_multiframe_ct_equals_series(lidc_dir: Path, tmp_path: Path) -> None:
    highdicom = pytest.importorskip("highdicom")
    datasets = [pydicom.dcmread(f) for f in sorted(lidc_dir.glob("*.dcm"))]
    enhanced = highdicom.legacy.LegacyConvertedEnhancedCTImage(
        datasets[::-1],  # frames stored in reverse: the reader must sort by position
        series_instance_uid=highdicom.UID(),
        series_number=1,
        sop_instance_uid=highdicom.UID(),
        instance_number=1,
    )
    enhanced.save_as(tmp_path / "enhanced.dcm")
    a = read_image(tmp_path / "enhanced.dcm")
    b = read_image(lidc_dir)
    assert a.same_geometry(b, atol=1e-4)
    np.testing.assert_array_equal(a.array, b.array)
    assert len(a.source.datasets) == 1 and "PixelData" not in a.source.datasets[0]


def test_series_uid_picks_one_series_and_skips_other_files(
    lidc_dir: Path, shared_data: Path, tmp_path: Path
) -> None:
    mixed = tmp_path / "mixed"
    shutil.copytree(lidc_dir, mixed / "a")
    shutil.copytree(shared_data / "dicom_seg_interop" / "dcmqi" / "ct-3slice", mixed / "b" / "deeper")
    shutil.copy(shared_data / "dicom_seg_interop" / "highdicom" / "sr_document.dcm", mixed / "sr.dcm")
    dicomdir = Path(get_testdata_file("DICOMDIR"))  # a real DICOMDIR, under its own and another name
    shutil.copy(dicomdir, mixed / "DICOMDIR")
    shutil.copy(dicomdir, mixed / "index.dcm")
    (mixed / "README.txt").write_text("not dicom\n")
    (mixed / "notes.csv").write_text("a,b\n1,2\n")
    shutil.copy(shared_data / "cxr_lung_covid19_gb" / "masks" / "ARDSSevere_lungs.png", mixed / "a" / "x.png")
    infos = {s.uid: s for s in list_series(mixed)}
    lidc_uid = pydicom.dcmread(next(lidc_dir.glob("*.dcm")), stop_before_pixels=True).SeriesInstanceUID
    assert infos[lidc_uid].number_of_files == 16 and infos[lidc_uid].modality == "CT"
    assert sum(s.is_image for s in infos.values()) == 2
    assert sorted(s.number_of_files for s in infos.values()) == [
        1,
        3,
        16,
    ]  # DICOMDIRs and other files skipped
    assert any(s.modality == "SR" and not s.is_image for s in infos.values())
    img = read_image(mixed, series_uid=lidc_uid)
    np.testing.assert_array_equal(img.array, read_image(lidc_dir).array)
    assert img.source.series_instance_uid == lidc_uid
