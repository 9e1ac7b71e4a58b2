"""DICOM-SEG writing on real DICOM: the LIDC CT series and real radiographs (CR/DX, no frame of
reference), judged by dicom3tools (dciodvfy/dcentvfy), dcmqi and highdicom; plus the errors."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from seg_helpers import assert_entities_consistent, dciodvfy_errors, dcmqi_decode, on_grid, write_series

import medseg
from medseg.errors import ExportError, GeometryError
from medseg.image import Image, ImageSource
from medseg.io import read_dicom_seg, read_image, write_dicom_seg

NAMES = {1: "right lung", 2: "left lung", 3: "nodule"}
SEG_CLASS = {"BINARY": "1.2.840.10008.5.1.4.1.1.66.4", "LABELMAP": "1.2.840.10008.5.1.4.1.1.66.7"}


def _ellipsoid(shape: tuple[int, ...], centre: tuple[float, ...], radii: tuple[float, ...]) -> np.ndarray:
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grids, centre, radii, strict=True)) <= 1.0


@pytest.fixture(scope="module")
def lidc(shared_data: Path) -> Image:
    folder = shared_data / "ct_lidc_nodules/LIDC-IDRI-0001/dicom"
    if not folder.is_dir():
        pytest.skip(f"{folder} not present")
    return read_image(folder)


@pytest.fixture(scope="module")
def lidc_labels(lidc: Image) -> Image:
    lab = np.zeros(lidc.shape, dtype=np.uint8)
    lab[_ellipsoid(lidc.shape, (8, 250, 160), (6, 120, 70))] = 1  # patient right = low x (LPS)
    lab[_ellipsoid(lidc.shape, (7, 250, 350), (7, 120, 70))] = 2
    lab[_ellipsoid(lidc.shape, (8, 300, 380), (2.5, 12, 12))] = 3  # inside "left lung": later label
    return lidc.with_array(lab, kind="label")


@pytest.mark.parametrize("seg_type", ["BINARY", "LABELMAP"])
def test_lidc_ct_seg_is_valid_and_decodes_identically(
    lidc: Image, lidc_labels: Image, seg_type: str, tmp_path: Path
) -> None:
    path = write_dicom_seg(
        lidc_labels,
        lidc,
        tmp_path / "seg.dcm",
        label_names=NAMES,
        segmentation_type=seg_type,
        model_name="cxr-unet-test",
        series_description="lungs by medseg",
        content_creator="Tester^Ann",
    )
    # independent validators
    assert dciodvfy_errors(path) == []
    assert_entities_consistent(path, lidc.source.files, tmp_path)  # the subset cites slices not here
    decoded = dcmqi_decode(path, tmp_path / "dcmqi")
    np.testing.assert_array_equal(on_grid(decoded, lidc), lidc_labels.array)
    # highdicom reads it back frame by source instance
    seg = hd.seg.segread(path)
    pixels = seg.get_pixels_by_source_instance(
        list(lidc.source.sop_instance_uids), combine_segments=True, assert_missing_frames_are_empty=True
    )
    np.testing.assert_array_equal(pixels, lidc_labels.array)
    back, names = read_dicom_seg(path, lidc)
    assert names == NAMES
    np.testing.assert_array_equal(back.array, lidc_labels.array)

    # content: type, UIDs, references, descriptions, codes, algorithm
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    first = lidc.source.datasets[0]
    assert ds.SOPClassUID == SEG_CLASS[seg_type] and ds.SegmentationType == seg_type
    assert ds.Modality == "SEG"
    assert ds.StudyInstanceUID == first.StudyInstanceUID and ds.PatientID == first.PatientID
    assert ds.FrameOfReferenceUID == first.FrameOfReferenceUID
    new_uids = {ds.SeriesInstanceUID, ds.SOPInstanceUID}
    assert not new_uids & {first.SeriesInstanceUID, *lidc.source.sop_instance_uids}
    assert ds.SeriesDescription == "lungs by medseg"
    assert str(ds.ContentCreatorName) == "Tester^Ann"
    (series_ref,) = ds.ReferencedSeriesSequence
    assert series_ref.SeriesInstanceUID == first.SeriesInstanceUID
    assert {item.ReferencedSOPInstanceUID for item in series_ref.ReferencedInstanceSequence} == set(
        lidc.source.sop_instance_uids
    )
    segments = {int(s.SegmentNumber): s for s in ds.SegmentSequence if int(s.SegmentNumber) > 0}
    assert {n: s.SegmentLabel for n, s in segments.items()} == NAMES
    right = segments[1]
    assert right.SegmentedPropertyTypeCodeSequence[0].CodeValue == "39607008"  # SCT Lung
    modifier = right.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence[0]
    assert modifier.CodeValue == "24028007"  # SCT Right
    assert segments[3].SegmentedPropertyCategoryCodeSequence[0].CodeValue == "49755003"  # abnormal structure
    algorithm = right.SegmentationAlgorithmIdentificationSequence[0]
    assert right.SegmentAlgorithmType == "AUTOMATIC"
    assert algorithm.AlgorithmName == "medseg" and algorithm.AlgorithmVersion == medseg.__version__
    assert algorithm.AlgorithmFamilyCodeSequence[0].CodeMeaning == "Artificial Intelligence"
    assert "model=cxr-unet-test" in algorithm.AlgorithmParameters
    # empty frames are not stored
    nonempty = [int(np.any(lidc_labels.array[k] == v)) for v in NAMES for k in range(lidc.shape[0])]
    slices = int(np.count_nonzero(lidc_labels.array.reshape(lidc.shape[0], -1).any(axis=1)))
    assert int(ds.NumberOfFrames) == (sum(nonempty) if seg_type == "BINARY" else slices)
    assert slices < lidc.shape[0]


RADIOGRAPHS = [
    "dicom_seg_interop/highdicom/dx_image.dcm",  # DX, MONOCHROME1, Patient Orientation L\F
    "cxr_dicom/siim_cr_chest_pa.dcm",  # CR secondary capture, JPEG, invalid Patient's Age "62"
    "cxr_dicom/CR-MONO1-10-chest.dcm",  # no file meta, no Patient ID/Study Date, no spacing
]


@pytest.mark.parametrize("seg_type", ["BINARY", "LABELMAP"])
@pytest.mark.parametrize("relpath", RADIOGRAPHS)
def test_radiograph_seg_is_valid(shared_data: Path, relpath: str, seg_type: str, tmp_path: Path) -> None:
    """One frame per segment, no frame of reference; dcmqi only decodes SEGs with a frame of
    reference ("Failed to get image directions"), so dicom3tools and highdicom judge these."""
    source_file = shared_data / relpath
    if not source_file.is_file():
        pytest.skip(f"{source_file} not present")
    image = read_image(source_file)
    rows, cols = image.shape
    lab = np.zeros(image.shape, dtype=np.uint8)
    lab[_ellipsoid(image.shape, (rows * 0.5, cols * 0.3), (rows * 0.3, cols * 0.15))] = 1
    lab[_ellipsoid(image.shape, (rows * 0.5, cols * 0.7), (rows * 0.3, cols * 0.15))] = 2
    labels = image.with_array(lab, kind="label")
    path = write_dicom_seg(labels, image, tmp_path / "seg.dcm", label_names=NAMES, segmentation_type=seg_type)
    assert dciodvfy_errors(path) == []
    assert_entities_consistent(path, [source_file], tmp_path / "scratch")
    seg = hd.seg.segread(path)
    (uid,) = image.source.sop_instance_uids
    pixels = seg.get_pixels_by_source_instance([uid], combine_segments=True)
    np.testing.assert_array_equal(pixels[0], lab)
    back, names = read_dicom_seg(path, image)
    assert names == {1: "right lung", 2: "left lung"}  # "nodule" is empty: left out
    np.testing.assert_array_equal(back.array, lab)
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    assert "FrameOfReferenceUID" not in ds
    assert int(ds.NumberOfFrames) == (2 if seg_type == "BINARY" else 1)
    referenced = {
        item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        for item in ds.PerFrameFunctionalGroupsSequence
    }
    assert referenced == {uid}
    assert list(ds.get("PatientOrientation") or []) == list(
        image.source.datasets[0].get("PatientOrientation") or []
    )


# ---------------------------------------------------------------------------------------------
# options and errors on a small synthetic series
# ---------------------------------------------------------------------------------------------
@pytest.fixture()
def small(tmp_path: Path) -> Image:
    folder = tmp_path / "ct"
    write_series(folder, direction=np.eye(3), spacing=(0.7, 0.7, 2.0), origin=(-5, -5, 10), shape=(4, 16, 16))
    return read_image(folder)


def _labels(image: Image, values: dict[int, tuple[slice, ...]]) -> Image:
    lab = np.zeros(image.shape, dtype=np.uint8)
    for v, where in values.items():
        lab[where] = v
    return image.with_array(lab, kind="label")


def test_empty_segments_are_left_out_with_a_warning(
    small: Image, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    labels = _labels(small, {2: np.s_[1:3, 2:6, 2:6], 5: np.s_[2, 8:12, 8:12]})
    names = {1: "right lung", 2: "left lung", 5: "nodule"}
    with caplog.at_level(logging.WARNING, logger="medseg.io.seg"):
        binary = write_dicom_seg(labels, small, tmp_path / "b.dcm", label_names=names)
    assert any("'right lung' (label 1) is empty" in r.getMessage() for r in caplog.records)
    labelmap = write_dicom_seg(
        labels, small, tmp_path / "l.dcm", label_names=names, segmentation_type="LABELMAP"
    )
    # BINARY numbers segments 1..K, LABELMAP keeps the label values
    b_seg, l_seg = hd.seg.segread(binary), hd.seg.segread(labelmap)
    assert {n: b_seg.get_segment_description(n).SegmentLabel for n in b_seg.segment_numbers} == {
        1: "left lung",
        2: "nodule",
    }
    assert {n: l_seg.get_segment_description(n).SegmentLabel for n in l_seg.segment_numbers} == {
        2: "left lung",
        5: "nodule",
    }
    # label_names maps segments back to the project's values by name, for both types
    for path in (binary, labelmap):
        back, back_names = read_dicom_seg(path, small, label_names=names)
        np.testing.assert_array_equal(back.array, labels.array)
        assert back_names == {2: "left lung", 5: "nodule"}


def test_all_empty_mask_is_an_error(small: Image, tmp_path: Path) -> None:
    labels = small.with_array(np.zeros(small.shape, np.uint8), kind="label")
    with pytest.raises(ExportError, match="mask is empty"):
        write_dicom_seg(labels, small, tmp_path / "seg.dcm", label_names={1: "lung"})
    assert not list(tmp_path.glob("*seg.dcm*"))


def test_unnamed_label_value_is_an_error(small: Image, tmp_path: Path) -> None:
    labels = _labels(small, {1: np.s_[1, 2:6, 2:6], 3: np.s_[2, 2:6, 2:6]})
    with pytest.raises(ExportError, match=r"\[3\].*no name"):
        write_dicom_seg(labels, small, tmp_path / "seg.dcm", label_names={1: "lung"})


def test_labels_without_dicom_source_are_refused(tmp_path: Path) -> None:
    nifti_labels = Image(
        np.ones((3, 8, 8), np.uint8),
        np.eye(4),
        kind="label",
        source=ImageSource(path=tmp_path / "labels.nii.gz", format="nifti"),
    )
    with pytest.raises(
        ExportError, match="no DICOM to refer to.*write NIfTI instead or give the DICOM series"
    ):
        write_dicom_seg(nifti_labels, None, tmp_path / "seg.dcm", label_names={1: "lung"})
    with pytest.raises(ExportError, match="no DICOM to refer to"):
        write_dicom_seg(nifti_labels, nifti_labels, tmp_path / "seg.dcm", label_names={1: "lung"})
    assert not (tmp_path / "seg.dcm").exists()


def test_labels_off_the_source_grid_are_refused(small: Image, tmp_path: Path) -> None:
    good = _labels(small, {1: np.s_[1, 2:6, 2:6]})
    shifted = good.replace(
        affine=good.affine + np.array([[0, 0, 0, 0.5], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]])
    )
    with pytest.raises(GeometryError, match="not on the source image grid"):
        write_dicom_seg(shifted, small, tmp_path / "seg.dcm", label_names={1: "lung"})
    with pytest.raises(
        GeometryError, match="source slice 0 at .* is not on the label grid"
    ):  # no source image
        write_dicom_seg(shifted, None, tmp_path / "seg.dcm", label_names={1: "lung"})
    cropped = Image(good.array[:, :8], good.affine, kind="label", source=small.source)
    with pytest.raises(GeometryError, match="rows, columns"):
        write_dicom_seg(cropped, None, tmp_path / "seg.dcm", label_names={1: "lung"})
    fewer = Image(good.array[:3], good.affine, kind="label", source=small.source)
    with pytest.raises(GeometryError, match="3 slices but the source DICOM has 4"):
        write_dicom_seg(fewer, None, tmp_path / "seg.dcm", label_names={1: "lung"})
    sparse = replace(small.source, datasets=small.source.datasets[::2], files=small.source.files[::2])
    every_other = Image(good.array[:2], good.affine @ np.diag([1, 1, 2, 1]), kind="label", source=sparse)
    assert write_dicom_seg(every_other, None, tmp_path / "ok.dcm", label_names={1: "lung"}).is_file()
    (tmp_path / "ok.dcm").unlink()
    half_slice = Image(good.array, good.affine @ np.diag([1, 1, 0.5, 1]), kind="label", source=small.source)
    with pytest.raises(GeometryError, match="not on the label grid"):
        write_dicom_seg(half_slice, None, tmp_path / "seg.dcm", label_names={1: "lung"})
    assert not list(tmp_path.glob("*seg.dcm*"))


def test_failed_write_leaves_no_partial_file_and_keeps_the_old_one(
    small: Image, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    labels = _labels(small, {1: np.s_[1, 2:6, 2:6]})
    target = tmp_path / "out" / "seg.dcm"
    write_dicom_seg(labels, small, target, label_names={1: "lung"})
    before = target.read_bytes()

    def disk_full(self: pydicom.Dataset, filename: object, **kwargs: object) -> None:
        Path(str(filename)).write_bytes(b"DICM partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(hd.seg.Segmentation, "save_as", disk_full)
    with pytest.raises(OSError, match="No space left"):
        write_dicom_seg(labels, small, target, label_names={1: "lung"})
    assert target.read_bytes() == before
    assert [p.name for p in target.parent.iterdir()] == ["seg.dcm"]


def test_never_overwrites_a_source_file(small: Image) -> None:
    labels = _labels(small, {1: np.s_[1, 2:6, 2:6]})
    victim = small.source.files[0]
    before = victim.read_bytes()
    with pytest.raises(ExportError, match="overwrite an input"):
        write_dicom_seg(labels, small, victim, label_names={1: "lung"})
    assert victim.read_bytes() == before


def test_compression_options(small: Image, tmp_path: Path) -> None:
    from pydicom.pixels import get_encoder
    from pydicom.uid import ExplicitVRLittleEndian, JPEGLSLossless, RLELossless

    labels = _labels(small, {1: np.s_[0:3, 2:9, 2:9], 2: np.s_[2:4, 9:14, 9:14]})
    names = {1: "right lung", 2: "left lung"}
    expected = {"auto": RLELossless, "rle": RLELossless, "none": ExplicitVRLittleEndian}
    if get_encoder(JPEGLSLossless).is_available:
        expected["jpeg-ls"] = JPEGLSLossless
    for compression, uid in expected.items():
        path = write_dicom_seg(
            labels,
            small,
            tmp_path / f"{compression}.dcm",
            label_names=names,
            segmentation_type="LABELMAP",
            compression=compression,  # type: ignore[arg-type]
        )
        assert pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID == uid
        assert dciodvfy_errors(path) == []
        back, _ = read_dicom_seg(path, small)
        np.testing.assert_array_equal(back.array, labels.array)
    with pytest.raises(ExportError, match="BINARY SEG is stored uncompressed"):
        write_dicom_seg(labels, small, tmp_path / "x.dcm", label_names=names, compression="rle")
    with pytest.raises(ExportError, match="segmentation_type must be"):
        write_dicom_seg(labels, small, tmp_path / "x.dcm", label_names=names, segmentation_type="FRACTIONAL")  # type: ignore[arg-type]


def test_intensity_image_is_not_a_label_map(small: Image, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="integer label map"):
        write_dicom_seg(small, small, tmp_path / "seg.dcm", label_names={1: "lung"})


def test_source_headers_are_not_modified(shared_data: Path, tmp_path: Path) -> None:
    """CR-MONO1 lacks Patient ID etc.: the SEG gets empty values, the Image's headers stay as read."""
    source_file = shared_data / "cxr_dicom/CR-MONO1-10-chest.dcm"
    if not source_file.is_file():
        pytest.skip(f"{source_file} not present")
    image = read_image(source_file)
    header = image.source.datasets[0]
    assert "PatientID" not in header
    before = header.to_json_dict()
    labels = image.with_array(
        (np.arange(image.array.size).reshape(image.shape) % 7 == 0).astype(np.uint8), kind="label"
    )
    path = write_dicom_seg(labels, None, tmp_path / "seg.dcm", label_names={1: "lung"})
    assert header.to_json_dict() == before
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    assert "PatientID" in ds and not ds.PatientID
