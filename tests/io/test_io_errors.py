"""Bad input gives its specific medseg error (naming the file and a fix), and the CLI one stderr line."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from medseg.cli import main
from medseg.errors import DicomInputError, GeometryError, InputError
from medseg.io import read_image


def _truncated_pixels(ctx) -> tuple[Path, str]:
    src = next(iter(sorted(ctx.lidc.glob("*.dcm"))))
    dst = ctx.tmp / "cut.dcm"
    dst.write_bytes(src.read_bytes()[:300_000])
    return dst, "cut.dcm"


def _truncated_header(ctx) -> tuple[Path, str]:
    src = next(iter(sorted(ctx.lidc.glob("*.dcm"))))
    dst = ctx.tmp / "cut_header.dcm"
    dst.write_bytes(src.read_bytes()[:1500])
    return dst, "cut_header.dcm"


def _truncated_in_series(ctx) -> tuple[Path, str]:
    folder = ctx.lidc_copy()
    victim = folder / "000044.dcm"
    victim.write_bytes(victim.read_bytes()[:400_000])
    return folder, "000044.dcm"


def _pydicom_truncated(ctx) -> tuple[Path, str]:
    return Path(get_testdata_file("MR_truncated.dcm")), "MR_truncated.dcm"


def _sr(ctx) -> tuple[Path, str]:
    return ctx.data / "dicom_seg_interop" / "highdicom" / "sr_document.dcm", "SR"


def _rtstruct(ctx) -> tuple[Path, str]:
    return ctx.data / "ct_lung_nsclc_radiomics" / "LUNG1-002" / "rtstruct.dcm", "RTSTRUCT"


def _seg(ctx) -> tuple[Path, str]:
    return ctx.data / "dicom_seg_interop" / "highdicom" / "seg_image_ct_binary.dcm", "Segmentation"


def _slice_removed(ctx) -> tuple[Path, str]:
    folder = ctx.lidc_copy()
    z = float(pydicom.dcmread(folder / "000042.dcm", stop_before_pixels=True).ImagePositionPatient[2])
    (folder / "000042.dcm").unlink()
    return folder, f"missing at {z:.2f}"


def _slice_duplicated(ctx) -> tuple[Path, str]:
    folder = ctx.lidc_copy()
    ds = pydicom.dcmread(folder / "000040.dcm")
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(folder / "dup.dcm")
    return folder, "000040.dcm and dup.dcm"


def _two_series(ctx) -> tuple[Path, str]:
    folder = ctx.lidc_copy()
    shutil.copytree(ctx.data / "dicom_seg_interop" / "dcmqi" / "ct-3slice", folder / "other")
    uid = pydicom.dcmread(folder / "other" / "01.dcm", stop_before_pixels=True).SeriesInstanceUID
    return folder, uid


def _nan_nifti(ctx) -> tuple[Path, str]:
    data = np.zeros((4, 5, 3), np.float32)
    data[1, 2, 0] = np.nan
    path = ctx.tmp / "nan.nii.gz"
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(path))
    return path, "NaN"


def _nifti_4d(ctx) -> tuple[Path, str]:
    path = ctx.tmp / "four.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 5, 3, 2), np.int16), np.eye(4)), str(path))
    return path, "4-D"


def _empty_folder(ctx) -> tuple[Path, str]:
    folder = ctx.tmp / "empty"
    folder.mkdir()
    return folder, "empty"


def _no_dicom_folder(ctx) -> tuple[Path, str]:
    folder = ctx.tmp / "texts"
    folder.mkdir()
    (folder / "a.txt").write_text("hello\n")
    (folder / "b.dat").write_bytes(b"\x00" * 300)
    return folder, "no DICOM files"


def _missing(ctx) -> tuple[Path, str]:
    return ctx.tmp / "does_not_exist.nii.gz", "no such file"


def _colour(ctx) -> tuple[Path, str]:
    return Path(get_testdata_file("SC_rgb_small_odd.dcm")), "colour"


def _multiframe_not_volume(ctx) -> tuple[Path, str]:
    return Path(get_testdata_file("rtdose.dcm")), "multi-frame"


def _mixed_orientation(ctx) -> tuple[Path, str]:
    s = ctx.make_series(ctx.tmp / "mixed", n=4, file_order="forward")
    ds = pydicom.dcmread(s.files[2])
    ds.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
    ds.save_as(s.files[2])
    return s.folder, "different orientations"


def _uneven(ctx) -> tuple[Path, str]:
    s = ctx.make_series(ctx.tmp / "uneven", n=5, file_order="forward")
    ds = pydicom.dcmread(s.files[3])
    ipp = [float(v) for v in ds.ImagePositionPatient]
    ds.ImagePositionPatient = [ipp[0], ipp[1], ipp[2] + 0.5]
    ds.save_as(s.files[3])
    return s.folder, "non-uniform"


def _tilted(ctx) -> tuple[Path, str]:
    s = ctx.make_series(ctx.tmp / "tilt", n=5, file_order="forward")
    for k, f in enumerate(s.files):
        ds = pydicom.dcmread(f)
        ipp = [float(v) for v in ds.ImagePositionPatient]
        ds.ImagePositionPatient = [ipp[0], ipp[1] + 0.3 * k, ipp[2]]  # gantry tilt: y shifts per slice
        ds.save_as(f)
    return s.folder, "sideways"


def _nan_rescale(ctx) -> tuple[Path, str]:
    """Issue #13: a NaN RescaleSlope used to give an all-NaN volume that `convert` wrote (exit 0)."""
    s = ctx.make_series(ctx.tmp / "nan_slope", n=3, file_order="forward")
    ds = pydicom.dcmread(s.files[1])
    ds.RescaleSlope = "nan"
    ds.save_as(s.files[1])
    return s.folder, "RescaleSlope"


def _empty_nifti(ctx) -> tuple[Path, str]:
    """Issue #13: dim[1] = 0 used to read as a zero-size image."""
    img = nib.Nifti1Image(np.zeros((4, 5, 3), np.int16), np.eye(4))
    raw = bytearray(img.to_bytes())
    raw[42:44] = (0).to_bytes(2, "little")
    path = ctx.tmp / "empty.nii"
    path.write_bytes(bytes(raw))
    return path, "empty image"


def _absurd_spacing_nifti(ctx) -> tuple[Path, str]:
    """Issue #13: spacing outside 1e-3..1e4 mm used to be accepted."""
    path = ctx.tmp / "spacing.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 5, 3), np.int16), np.diag([1e-5, 1.0, 1.0, 1.0])), str(path))
    return path, "spacing"


def _label_not_integer(ctx) -> tuple[Path, str]:
    path = ctx.tmp / "soft.nii.gz"
    nib.save(nib.Nifti1Image(np.full((3, 3, 2), 0.5, np.float32), np.eye(4)), str(path))
    return path, "whole numbers"


CASES: dict[str, tuple[Callable, type[Exception]]] = {
    "truncated pixel data": (_truncated_pixels, DicomInputError),
    "truncated header": (_truncated_header, DicomInputError),
    "truncated file in a series": (_truncated_in_series, DicomInputError),
    "pydicom MR_truncated": (_pydicom_truncated, DicomInputError),
    "SR document": (_sr, DicomInputError),
    "RTSTRUCT": (_rtstruct, DicomInputError),
    "SEG": (_seg, DicomInputError),
    "series with a slice removed": (_slice_removed, GeometryError),
    "duplicated slice": (_slice_duplicated, GeometryError),
    "two series": (_two_series, DicomInputError),
    "NaN in NIfTI": (_nan_nifti, InputError),
    "4-D NIfTI": (_nifti_4d, InputError),
    "empty folder": (_empty_folder, InputError),
    "folder without DICOM": (_no_dicom_folder, DicomInputError),
    "missing path": (_missing, InputError),
    "colour DICOM": (_colour, DicomInputError),
    "multi-frame, not a volume": (_multiframe_not_volume, DicomInputError),
    "mixed orientation": (_mixed_orientation, GeometryError),
    "non-uniform spacing": (_uneven, GeometryError),
    "gantry tilt": (_tilted, GeometryError),
    "NaN RescaleSlope": (_nan_rescale, DicomInputError),
    "zero-size NIfTI": (_empty_nifti, InputError),
    "NIfTI spacing 1e-5 mm": (_absurd_spacing_nifti, GeometryError),
}


class _Ctx:
    def __init__(self, tmp: Path, data: Path, lidc: Path, make_series) -> None:
        self.tmp, self.data, self.lidc, self.make_series = tmp, data, lidc, make_series

    def lidc_copy(self) -> Path:
        dst = self.tmp / "lidc"
        shutil.copytree(self.lidc, dst)
        return dst


@pytest.fixture
def ctx(tmp_path: Path, shared_data: Path, lidc_dir: Path, make_series) -> _Ctx:
    return _Ctx(tmp_path, shared_data, lidc_dir, make_series)


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_raises_specific_error_and_cli_fails(case: str, ctx: _Ctx, capsys) -> None:
    build, error = CASES[case]
    path, expected = build(ctx)
    with pytest.raises(error) as info:
        read_image(path)
    assert type(info.value) is error, f"{case}: got {type(info.value).__name__}, expected {error.__name__}"
    message = str(info.value)
    assert expected in message
    assert path.name in message or str(path) in message  # names the file or folder
    assert "Fix:" in message or case == "missing path" or "no such file" in message

    # the CLI: exit code 2, one line on stderr, nothing written
    out = ctx.tmp / "out" / "converted.nii.gz"
    capsys.readouterr()
    assert main(["convert", str(path), str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("medseg: error:"), err
    assert not out.exists()
    if case != "two series":  # `medseg info` lists the series of a mixed folder instead
        assert main(["info", str(path)]) == 2
        assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_label_with_fractions_is_refused(ctx: _Ctx) -> None:
    path, expected = _label_not_integer(ctx)
    with pytest.raises(InputError, match=expected):
        read_image(path, kind="label")
    assert read_image(path).array.dtype == np.float32  # fine as an intensity image


def test_enhanced_ct_with_missing_frame(lidc_dir: Path, tmp_path: Path) -> None:
    highdicom = pytest.importorskip("highdicom")
    files = sorted(lidc_dir.glob("*.dcm"))
    datasets = [pydicom.dcmread(f) for f in files[:6] if f.name != "000038.dcm"]
    enhanced = highdicom.legacy.LegacyConvertedEnhancedCTImage(
        datasets,
        series_instance_uid=highdicom.UID(),
        series_number=1,
        sop_instance_uid=highdicom.UID(),
        instance_number=1,
    )
    enhanced.save_as(tmp_path / "enhanced.dcm")
    with pytest.raises(GeometryError, match=r"frame\(s\) missing"):
        read_image(tmp_path / "enhanced.dcm")


def test_two_series_error_lists_every_series(ctx: _Ctx) -> None:
    folder, other_uid = _two_series(ctx)
    lidc_uid = pydicom.dcmread(next(ctx.lidc.glob("*.dcm")), stop_before_pixels=True).SeriesInstanceUID
    with pytest.raises(DicomInputError) as info:
        read_image(folder)
    msg = str(info.value)
    assert lidc_uid in msg and other_uid in msg
    assert "16 files" in msg and "3 files" in msg and "CT" in msg
    assert "series_uid" in msg and "--series-uid" in msg
    assert read_image(folder, series_uid=other_uid).shape == (3, 512, 512)
    with pytest.raises(DicomInputError, match="no series with SeriesInstanceUID"):
        read_image(folder, series_uid="1.2.3.4")
