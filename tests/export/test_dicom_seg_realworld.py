"""DICOM-SEG on real headers that broke the writer or the reader (issue #12): each test is a
reproducer, judged by dciodvfy (dicom3tools), highdicom and dcmqi where they apply."""

from __future__ import annotations

import shutil
import warnings
from dataclasses import replace
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from seg_helpers import dciodvfy_errors, dcmqi_decode, on_grid, write_series

from medseg.errors import DicomInputError, ExportError
from medseg.image import Image
from medseg.io import is_dicom_seg, list_series, read_dicom_seg, read_image, read_label_map, write_dicom_seg

NAMES = {1: "right lung", 2: "left lung", 5: "nodule"}
TYPES = ["BINARY", "LABELMAP"]


@pytest.fixture(scope="module")
def interop(shared_data: Path) -> Path:
    folder = shared_data / "dicom_seg_interop"
    if not folder.is_dir():
        pytest.skip(f"{folder} not present")
    return folder


@pytest.fixture(scope="module")
def ge_ct(interop: Path) -> Image:
    """The GE CT of dcmqi's tests: 3 slices, SpecificCharacterSet present but empty."""
    return read_image(interop / "dcmqi/ct-3slice")


def _labels_125(image: Image) -> Image:
    """Labels {1, 2, 5}: asymmetric blocks, 5 on the first slice only (flips and order show)."""
    lab = np.zeros(image.shape, np.uint8)
    ny, nx = image.shape[-2:]
    lab[..., : ny // 3, : nx // 2] = 1
    lab[..., ny // 3 : ny // 2, nx // 4 :] = 2
    (lab[0] if lab.ndim == 3 else lab)[2 * ny // 3 :, : nx // 4] = 5
    return image.with_array(lab, kind="label")


def _quiet_read(path: str | Path) -> Image:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom's test files have odd values on purpose
        return read_image(path)


@pytest.mark.parametrize("seg_type", TYPES)
def test_ct_with_empty_charset_gets_a_valid_seg(ge_ct: Image, seg_type: str, tmp_path: Path) -> None:
    assert ge_ct.source.datasets[0].SpecificCharacterSet == ""  # the reproducer's header
    labels = _labels_125(ge_ct)
    path = write_dicom_seg(labels, ge_ct, tmp_path / "seg.dcm", label_names=NAMES, segmentation_type=seg_type)
    assert dciodvfy_errors(path) == []
    assert "SpecificCharacterSet" not in pydicom.dcmread(path, stop_before_pixels=True)  # default repertoire
    back = read_dicom_seg(path, ge_ct)
    np.testing.assert_array_equal(back.labels.array, labels.array)
    assert back.names == NAMES
    if seg_type == "BINARY":  # dcmqi (3D Slicer's reader) sees the same voxels
        decoded = dcmqi_decode(path, tmp_path / "dcmqi")
        np.testing.assert_array_equal(on_grid(decoded, ge_ct) > 0, labels.array > 0)


@pytest.mark.parametrize("seg_type", TYPES)
def test_label_values_come_back_for_both_types(ge_ct: Image, seg_type: str, tmp_path: Path) -> None:
    labels = _labels_125(ge_ct)
    path = write_dicom_seg(labels, ge_ct, tmp_path / "seg.dcm", label_names=NAMES, segmentation_type=seg_type)
    for back in (read_dicom_seg(path, ge_ct), read_dicom_seg(path)):
        assert sorted(np.unique(back.labels.array).tolist()) == [0, 1, 2, 5]
        np.testing.assert_array_equal(back.labels.array, labels.array)
        assert back.names == NAMES
    # the segment numbers stay what DICOM requires: 1..K for BINARY, the label values for LABELMAP
    numbers = sorted(int(s.SegmentNumber) for s in pydicom.dcmread(path).SegmentSequence)
    assert [n for n in numbers if n] == ([1, 2, 3] if seg_type == "BINARY" else [1, 2, 5])


def test_seg_read_without_source_is_index_aligned_with_read_image(tmp_path: Path) -> None:
    # feet-first stack whose files run against the slice normal: highdicom stacks it the other way
    direction = np.array([[1.0, 0, 0], [0, 1, 0], [0, 0, -1]])
    write_series(
        tmp_path / "ct",
        direction=direction,
        spacing=(0.8, 0.8, 2.0),
        origin=(-40, -30, 50),
        shape=(5, 24, 32),
    )
    ct = read_image(tmp_path / "ct")
    labels = _labels_125(ct)
    for seg_type in TYPES:
        path = write_dicom_seg(
            labels, ct, tmp_path / f"{seg_type}.dcm", label_names=NAMES, segmentation_type=seg_type
        )
        own = read_dicom_seg(path).labels
        np.testing.assert_array_equal(own.array, labels.array)
        np.testing.assert_allclose(own.affine, ct.affine, atol=1e-4)


def test_2d_image_with_frame_of_reference_but_no_orientation(tmp_path: Path) -> None:
    image = _quiet_read(get_testdata_file("JPEG2000.dcm"))
    header = image.source.datasets[0]
    assert image.ndim == 2 and "FrameOfReferenceUID" in header and "ImageOrientationPatient" not in header
    labels = _labels_125(image)
    path = write_dicom_seg(labels, image, tmp_path / "seg.dcm", label_names=NAMES)
    assert dciodvfy_errors(path) == []
    own = read_dicom_seg(path).labels
    np.testing.assert_array_equal(own.array, labels.array)
    np.testing.assert_allclose(own.spacing, image.spacing)
    np.testing.assert_array_equal(read_dicom_seg(path, image).labels.array, labels.array)
    assert hd.seg.segread(path).number_of_segments == 3  # highdicom parses it too


def test_empty_slice_thickness_is_taken_from_the_spacing(tmp_path: Path) -> None:
    image = _quiet_read(get_testdata_file("explicit_VR-UN.dcm"))
    assert image.source.datasets[0].get("SliceThickness") in (None, "")
    path = write_dicom_seg(_labels_125(image), image, tmp_path / "seg.dcm", label_names=NAMES)
    assert dciodvfy_errors(path) == []
    measures = pydicom.dcmread(path).SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    assert float(measures.SliceThickness) == pytest.approx(image.spacing[2])
    np.testing.assert_allclose(read_dicom_seg(path).labels.affine, image.affine, atol=1e-4)


def test_unreadable_number_of_frames_is_repaired_in_a_copy(tmp_path: Path) -> None:
    image = read_image(get_testdata_file("CT_small.dcm"))
    header = pydicom.Dataset(image.source.datasets[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bad = pydicom.dcmread(get_testdata_file("badVR.dcm"), stop_before_pixels=True)
        header["NumberOfFrames"] = bad["NumberOfFrames"]  # '1A', kept as text by pydicom
    source = image.replace(source=replace(image.source, datasets=(header,)))
    path = write_dicom_seg(_labels_125(source), source, tmp_path / "seg.dcm", label_names=NAMES)
    assert dciodvfy_errors(path) == []
    assert header.get("NumberOfFrames") == "1A"  # the caller's header is left alone
    np.testing.assert_array_equal(read_dicom_seg(path, image).labels.array, _labels_125(image).array)


def test_library_failures_are_told_without_the_library_text(
    ge_ct: Image, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise ValueError("'' is not a valid SpecificCharacterSetValues")

    monkeypatch.setattr(hd.seg, "Segmentation", refuse)
    with pytest.raises(ExportError) as info:
        write_dicom_seg(_labels_125(ge_ct), ge_ct, tmp_path / "seg.dcm", label_names=NAMES)
    assert "SpecificCharacterSetValues" not in str(info.value)
    assert "Fix:" in str(info.value)
    assert not (tmp_path / "seg.dcm").exists()


@pytest.mark.parametrize(
    "name", ["dicom_seg_interop/highdicom/dx_image.dcm", "cxr_dicom/siim_cr_chest_pa.dcm"]
)
def test_radiograph_seg_keeps_its_pixel_spacing(shared_data: Path, name: str, tmp_path: Path) -> None:
    if not (shared_data / name).is_file():
        pytest.skip(f"{name} not present")
    image = read_image(shared_data / name)
    assert image.source.spacing_tag is not None and not np.allclose(image.spacing, 1.0)
    labels = _labels_125(image)
    for seg_type in TYPES:
        path = write_dicom_seg(
            labels, image, tmp_path / f"{seg_type}.dcm", label_names=NAMES, segmentation_type=seg_type
        )
        assert dciodvfy_errors(path) == []
        own = read_dicom_seg(path).labels
        np.testing.assert_allclose(own.spacing, image.spacing, rtol=1e-6)
        np.testing.assert_array_equal(own.array, labels.array)
        hd.seg.segread(path)  # highdicom parses the Pixel Measures item too


def test_big_endian_segs_are_read(ge_ct: Image, tmp_path: Path) -> None:
    pytest.importorskip("data_store", reason="the pydicom-data package (test extra) is not installed")
    little = read_dicom_seg(get_testdata_file("liver.dcm"), ge_ct)
    big = read_dicom_seg(get_testdata_file("liver_expb.dcm"), ge_ct)  # dcmqi's liver, Explicit VR Big Endian
    assert int(big.labels.array.sum()) > 1000
    np.testing.assert_array_equal(big.labels.array, little.labels.array)
    # and one of ours, re-encoded big endian by pydicom
    labels = _labels_125(ge_ct)
    path = write_dicom_seg(labels, ge_ct, tmp_path / "seg.dcm", label_names=NAMES)
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRBigEndian
    pydicom.dcmwrite(tmp_path / "seg_be.dcm", ds, implicit_vr=False, little_endian=False, force_encoding=True)
    np.testing.assert_array_equal(read_dicom_seg(tmp_path / "seg_be.dcm", ge_ct).labels.array, labels.array)


def test_labelmap_seg_is_a_seg_everywhere(interop: Path, ge_ct: Image, tmp_path: Path) -> None:
    folder = tmp_path / "study"
    shutil.copytree(interop / "dcmqi/ct-3slice", folder)
    labels = _labels_125(ge_ct)
    seg = write_dicom_seg(
        labels, ge_ct, folder / "labelmap.dcm", label_names=NAMES, segmentation_type="LABELMAP"
    )
    assert is_dicom_seg(seg)
    with pytest.raises(DicomInputError, match="Segmentation"):
        read_image(seg)
    ct = read_image(folder)  # the SEG beside the slices is skipped, as a BINARY one is
    assert ct.shape == ge_ct.shape
    assert [s.is_image for s in list_series(folder)].count(False) == 1
    back, names = read_label_map(seg, source=ct)
    np.testing.assert_array_equal(back.array, labels.array)
    assert names == NAMES


def test_nodule_sr_references_a_labelmap_seg(ge_ct: Image, tmp_path: Path) -> None:
    from medseg.detect import Detection
    from medseg.detect.sr import write_nodule_sr

    labels = _labels_125(ge_ct)
    seg = write_dicom_seg(
        labels, ge_ct, tmp_path / "seg.dcm", label_names=NAMES, segmentation_type="LABELMAP"
    )
    centre = ge_ct.index_to_world(np.array([[50.0, 400.0, 0.0]]))[0]
    detection = Detection(
        center=tuple(float(v) for v in centre),
        center_index=(50.0, 400.0, 0.0),
        diameter_mm=6.0,
        volume_mm3=113.0,
        score=0.9,
        mean_probability=0.7,
        n_voxels=100,
    )
    out = write_nodule_sr([detection], ge_ct, tmp_path / "sr.dcm", seg=seg)  # the CT has an empty charset
    # dicom3tools' condition for Referenced Segment Number knows only the BINARY SEG SOP class
    # (1.2.840.10008.5.1.4.1.1.66.4), not Label Map Segmentation Storage: that one error is its own
    known = "Shall not be present for Referenced SOP Class that is not segmentation"
    assert [e for e in dciodvfy_errors(out) if known not in e] == []
    groups = hd.sr.srread(out).content.get_volumetric_roi_measurement_groups()
    item = groups[1].referenced_segment[0].ReferencedSOPSequence[0]
    assert item.ReferencedSOPClassUID == "1.2.840.10008.5.1.4.1.1.66.7"
    assert int(item.ReferencedSegmentNumber) == 5  # the segment coded Nodule


def test_predict_writes_a_valid_seg_for_the_ge_ct(interop: Path, tmp_path: Path) -> None:
    from medseg.cli import main

    out = tmp_path / "out"
    rc = main(
        ["predict", str(interop / "dcmqi/ct-3slice"), "--out", str(out), "--format", "seg", "--device", "cpu"]
    )
    assert rc in (0, None)
    seg = out / "ct-3slice" / "seg.dcm"
    assert seg.is_file()
    assert dciodvfy_errors(seg) == []
    ct = read_image(interop / "dcmqi/ct-3slice")
    back = read_dicom_seg(seg, ct)
    assert back.labels.same_geometry(ct) and np.any(back.labels.array > 0)


@pytest.mark.parametrize(
    ("charset", "name", "expected"),
    [
        ("", "JANCT000", None),  # present but empty (the GE CT): the default repertoire
        (None, "JANCT000", None),
        (None, "Müller^Anna", "ISO_IR 192"),  # no charset but text beyond ASCII: UTF-8
        ("ISO_IR 100", "Müller^Anna", "ISO_IR 100"),
        ("ISO IR 100", "Müller^Anna", "ISO_IR 100"),  # a common misspelling pydicom also accepts
        (["", "ISO 2022 IR 87"], "Yamada", ["ISO 2022 IR 6", "ISO 2022 IR 87"]),
        ("NOT A CHARSET", "Doe^John", "ISO_IR 192"),
    ],
)
def test_specific_character_set_is_always_valid(charset: object, name: str, expected: object) -> None:
    from medseg.io.seg import specific_character_set

    ds = pydicom.Dataset()
    if charset is not None:
        ds.SpecificCharacterSet = charset
    ds.PatientName = name
    assert specific_character_set(ds) == expected
