"""Reading SEGs written by other tools (dcmqi, highdicom) with ``read_dicom_seg``."""

from __future__ import annotations

import logging
from pathlib import Path

import highdicom as hd
import numpy as np
import pytest
from seg_helpers import world_points

from medseg.errors import DicomInputError, GeometryError, InputError
from medseg.image import Image
from medseg.io import read_dicom_seg, read_image


@pytest.fixture(scope="module")
def interop(shared_data: Path) -> Path:
    folder = shared_data / "dicom_seg_interop"
    if not folder.is_dir():
        pytest.skip(f"{folder} not present")
    return folder


def test_dcmqi_liver_equals_its_nrrd_on_the_ct_grid(interop: Path) -> None:
    ct = read_image(interop / "dcmqi/ct-3slice")
    reference = read_image(interop / "dcmqi/liver_seg.nrrd", kind="label")
    assert reference.same_geometry(ct)
    labels, names = read_dicom_seg(interop / "dcmqi/liver.dcm", ct)
    assert names == {1: "Liver"}
    assert labels.same_geometry(ct) and labels.kind == "label"
    assert labels.source is ct.source  # on the CT grid, exportable into the same study again
    assert int(labels.array.sum()) > 1000
    np.testing.assert_array_equal(labels.array, reference.array)


def test_dcmqi_liver_on_its_own_grid_is_at_the_same_world_positions(interop: Path) -> None:
    reference = read_image(interop / "dcmqi/liver_seg.nrrd", kind="label")
    labels, _ = read_dicom_seg(interop / "dcmqi/liver.dcm")
    assert labels.source.format == "dicom-seg"
    np.testing.assert_allclose(world_points(labels, 1), world_points(reference, 1), atol=1e-3)


def test_label_names_map_segments_to_project_values(interop: Path) -> None:
    ct = read_image(interop / "dcmqi/ct-3slice")
    labels, names = read_dicom_seg(interop / "dcmqi/liver.dcm", ct, label_names={7: "LIVER", 1: "spleen"})
    assert names == {7: "LIVER"}
    assert set(np.unique(labels.array)) == {0, 7}
    with pytest.raises(InputError, match="'Liver' is not in label_names"):
        read_dicom_seg(interop / "dcmqi/liver.dcm", ct, label_names={1: "lung"})


def _ct2_slices(interop: Path) -> list[Image]:
    """The four CT2 files are far apart (a sparse subset of a series): one Image per slice."""
    return [read_image(f) for f in sorted((interop / "pydicom_77654033/CT2").glob("*.dcm"))]


@pytest.mark.parametrize(
    "name",
    ["seg_image_ct_binary.dcm", "seg_image_ct_binary_fractional.dcm", "seg_image_ct_true_fractional.dcm"],
)
def test_highdicom_segs_match_highdicom_decoding(interop: Path, name: str) -> None:
    path = interop / "highdicom" / name
    seg = hd.seg.segread(path)
    for image in _ct2_slices(interop):
        (uid,) = image.source.sop_instance_uids
        expected = seg.get_pixels_by_source_instance([uid], assert_missing_frames_are_empty=True)[0, ..., 0]
        labels, names = read_dicom_seg(path, image)
        assert names == {1: "first segment"}
        assert labels.shape == image.shape
        np.testing.assert_array_equal(
            labels.array[0], (expected >= 0.5).astype(np.uint8)
        )  # fractional: >= 0.5


def test_overlapping_segments_later_wins_with_warning(
    interop: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = interop / "highdicom/seg_image_ct_binary_overlap.dcm"
    seg = hd.seg.segread(path)
    overlaps = 0
    for image in _ct2_slices(interop):
        (uid,) = image.source.sop_instance_uids
        stack = seg.get_pixels_by_source_instance([uid], assert_missing_frames_are_empty=True)[0]
        first, second = stack[..., 0] > 0, stack[..., 1] > 0
        overlaps += int(np.count_nonzero(first & second))
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="medseg.io.seg"):
            labels, names = read_dicom_seg(path, image)
        assert names == {1: "first segment", 2: "second segment"}
        expected = np.where(second, 2, np.where(first, 1, 0))
        np.testing.assert_array_equal(labels.array[0], expected)
        if np.any(first & second):
            assert any("overlap" in r.getMessage() for r in caplog.records)
    assert overlaps > 0


def test_single_frame_ct_seg(interop: Path) -> None:
    image = read_image(interop / "highdicom/ct_image.dcm")
    labels, names = read_dicom_seg(interop / "highdicom/seg_image_ct_binary_single_frame.dcm", image)
    seg = hd.seg.segread(interop / "highdicom/seg_image_ct_binary_single_frame.dcm")
    expected = seg.get_pixels_by_source_instance(list(image.source.sop_instance_uids))[..., 0]
    assert names == {1: "first segment"}
    assert int(labels.array.sum()) > 0
    np.testing.assert_array_equal(labels.array, expected)


def test_radiograph_seg_by_source_instance(interop: Path) -> None:
    image = read_image(interop / "pydicom_77654033/CR1/6154.dcm")
    path = interop / "highdicom/seg_image_cr_binary.dcm"
    labels, names = read_dicom_seg(path, image)
    expected = hd.seg.segread(path).get_pixels_by_source_instance(list(image.source.sop_instance_uids))[
        0, ..., 0
    ]
    assert labels.shape == image.shape == expected.shape
    np.testing.assert_array_equal(labels.array, expected)
    assert labels.same_geometry(image)
    own, _ = read_dicom_seg(path)  # no source: the one referenced image's grid
    np.testing.assert_array_equal(own.array, expected)


def test_not_a_seg_and_wrong_source(interop: Path, shared_data: Path) -> None:
    with pytest.raises(DicomInputError, match="not a DICOM Segmentation"):
        read_dicom_seg(interop / "highdicom/ct_image.dcm")
    with pytest.raises(DicomInputError, match="cannot read the file as DICOM"):
        read_dicom_seg(interop / "dcmqi/liver_seg.nrrd")
    lidc_folder = shared_data / "ct_lidc_nodules/LIDC-IDRI-0001/dicom"
    if lidc_folder.is_dir():
        with pytest.raises(GeometryError, match="frame of reference.*refers to none"):
            read_dicom_seg(interop / "dcmqi/liver.dcm", read_image(lidc_folder))
    dx = read_image(interop / "highdicom/dx_image.dcm")
    with pytest.raises(GeometryError, match="no frame of reference, and the SEG refers to none"):
        read_dicom_seg(interop / "highdicom/seg_image_cr_binary.dcm", dx)


def test_seg_with_another_frame_of_reference_is_placed_by_reference(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Some tools give the SEG a new Frame of Reference UID; its frames still cite the source slices."""
    import pydicom
    from seg_helpers import write_series

    from medseg.io import write_dicom_seg

    write_series(
        tmp_path / "ct", direction=np.eye(3), spacing=(0.7, 0.7, 2.0), origin=(0, 0, 0), shape=(4, 16, 16)
    )
    image = read_image(tmp_path / "ct")
    lab = np.zeros(image.shape, np.uint8)
    lab[1:3, 4:9, 3:7] = 1
    path = write_dicom_seg(
        image.with_array(lab, kind="label"), image, tmp_path / "seg.dcm", label_names={1: "lung"}
    )
    ds = pydicom.dcmread(path)
    ds.FrameOfReferenceUID = pydicom.uid.generate_uid()
    ds.save_as(path)
    with caplog.at_level(logging.INFO, logger="medseg.io.seg"):
        labels, _ = read_dicom_seg(path, image)
    np.testing.assert_array_equal(labels.array, lab)
    assert any("by the source instances they cite" in r.getMessage() for r in caplog.records)
