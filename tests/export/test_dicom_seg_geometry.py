"""DICOM-SEG geometry: what we write lands at the same world coordinates, frame by frame.

Synthetic CT series with known geometry (axial, axial stacked feet-to-head and head-to-feet,
sagittal, coronal, oblique; file order against slice order) are written with pydicom, read with
``medseg.io.read_image``, and a labelled blob is written into a SEG. It must come back at the same
LPS positions when decoded by dcmqi (independent C++ reader), by highdicom on the SEG's own grid
and by ``read_dicom_seg`` on the source grid; every frame must cite the source instance at its
position and hold that slice's pixels (checked with plain pydicom).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from seg_helpers import (
    dciodvfy_errors,
    dcmqi_decode,
    frame_references,
    rotation,
    world_points,
    write_series,
)

from medseg.image import Image
from medseg.io import read_dicom_seg, read_image, write_dicom_seg

NAMES = {1: "right lung", 2: "nodule"}

GEOMETRIES = {
    "axial": (np.eye(3), False),
    "axial_reversed_files": (np.eye(3), True),
    "axial_head_to_feet": (np.diag([1.0, 1.0, -1.0]), False),
    "sagittal": (np.array([[0, 0, -1], [1, 0, 0], [0, -1, 0]], dtype=float), False),
    "coronal": (np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0]], dtype=float), False),
    "oblique": (rotation("x", 30) @ rotation("z", 20), True),
}


def _blobs(shape: tuple[int, int, int]) -> np.ndarray:
    """Asymmetric blobs (label 1: an L-shape over 3 slices; label 2: a box on 2 slices)."""
    lab = np.zeros(shape, dtype=np.uint8)
    lab[1:4, 3:9, 4:7] = 1
    lab[2, 3:5, 7:12] = 1
    lab[3:5, 12:16, 15:20] = 2
    return lab


@pytest.fixture(params=sorted(GEOMETRIES))
def series(request: pytest.FixtureRequest, tmp_path: Path) -> Image:
    direction, reverse_files = GEOMETRIES[request.param]
    folder = tmp_path / request.param
    write_series(
        folder,
        direction=direction,
        spacing=(0.8, 0.9, 2.5),
        origin=(-12.0, 30.5, 104.0),
        shape=(6, 20, 24),
        reverse_files=reverse_files,
        seed=len(request.param),
    )
    return read_image(folder)


def test_blob_lands_at_the_same_world_coordinates(series: Image, tmp_path: Path) -> None:
    labels = series.with_array(_blobs(series.shape), kind="label")
    seg_path = write_dicom_seg(labels, series, tmp_path / "seg.dcm", label_names=NAMES)

    # our reader on the source grid: voxel for voxel
    back, names = read_dicom_seg(seg_path, series)
    assert names == NAMES
    assert back.same_geometry(series)
    np.testing.assert_array_equal(back.array, labels.array)

    # highdicom on the SEG's own grid and dcmqi (independent decoder): same LPS positions
    own, _ = read_dicom_seg(seg_path)
    decoded = dcmqi_decode(seg_path, tmp_path / "dcmqi")
    for value in NAMES:
        expected = world_points(labels, value)
        assert len(expected) > 0
        np.testing.assert_allclose(world_points(own, value), expected, atol=1e-3)
        np.testing.assert_allclose(world_points(decoded, value), expected, atol=1e-3)


def test_frames_cite_the_source_instance_at_their_position(series: Image, tmp_path: Path) -> None:
    labels = series.with_array(_blobs(series.shape), kind="label")
    seg_path = write_dicom_seg(labels, series, tmp_path / "seg.dcm", label_names=NAMES)
    uids = list(series.source.sop_instance_uids)
    frames = frame_references(seg_path)
    nonempty = {(k, v) for v in NAMES for k in range(series.shape[0]) if np.any(labels.array[k] == v)}
    assert len(frames) == len(nonempty)  # one frame per segment and non-empty slice, no empty frames
    seen = set()
    for uid, position, number, pixels in frames:
        k = uids.index(uid)
        np.testing.assert_allclose(
            position, np.asarray(series.source.datasets[k].ImagePositionPatient, float)
        )
        np.testing.assert_allclose(position, series.index_to_world([0, 0, k]), atol=1e-3)
        np.testing.assert_array_equal(pixels.astype(bool), labels.array[k] == number)
        seen.add((k, number))
    assert seen == nonempty


def test_labelmap_frames_cite_the_right_instances(series: Image, tmp_path: Path) -> None:
    labels = series.with_array(_blobs(series.shape), kind="label")
    seg_path = write_dicom_seg(
        labels, series, tmp_path / "seg.dcm", label_names=NAMES, segmentation_type="LABELMAP"
    )
    uids = list(series.source.sop_instance_uids)
    frames = frame_references(seg_path)
    assert len(frames) == sum(1 for k in range(series.shape[0]) if labels.array[k].any())
    for uid, _, _, pixels in frames:
        np.testing.assert_array_equal(pixels, labels.array[uids.index(uid)])
    back, _ = read_dicom_seg(seg_path, series)
    np.testing.assert_array_equal(back.array, labels.array)


def test_slices_in_descending_order_are_mapped_by_position(tmp_path: Path) -> None:
    """An Image whose slice axis runs against the reader's order (datasets reversed with it)."""
    folder = tmp_path / "ct"
    write_series(folder, direction=np.eye(3), spacing=(0.7, 0.7, 2.0), origin=(0, 0, 0), shape=(5, 16, 16))
    image = read_image(folder)
    flip = np.diag([1.0, 1.0, -1.0, 1.0])
    flip[2, 3] = image.shape[0] - 1
    reversed_image = Image(
        image.array[::-1],
        image.affine @ flip,
        modality="CT",
        source=replace(image.source, datasets=image.source.datasets[::-1], files=image.source.files[::-1]),
    )
    lab = np.zeros(image.shape, dtype=np.uint8)
    lab[0, 2:6, 2:6] = 1  # first slice of the reversed image = last slice of the reader's
    labels = reversed_image.with_array(lab, kind="label")
    seg_path = write_dicom_seg(labels, None, tmp_path / "seg.dcm", label_names={1: "nodule"})
    ((uid, position, _, _),) = frame_references(seg_path)
    assert uid == image.source.sop_instance_uids[-1]
    np.testing.assert_allclose(position, image.index_to_world([0, 0, image.shape[0] - 1]), atol=1e-4)
    back, _ = read_dicom_seg(seg_path, image)
    np.testing.assert_array_equal(back.array, lab[::-1])


def test_oblique_seg_is_valid_dicom(tmp_path: Path) -> None:
    folder = tmp_path / "oblique"
    write_series(
        folder,
        direction=GEOMETRIES["oblique"][0],
        spacing=(0.8, 0.9, 2.5),
        origin=(1, 2, 3),
        shape=(6, 20, 24),
    )
    image = read_image(folder)
    labels = image.with_array(_blobs(image.shape), kind="label")
    for seg_type in ("BINARY", "LABELMAP"):
        path = write_dicom_seg(
            labels, image, tmp_path / f"{seg_type}.dcm", label_names=NAMES, segmentation_type=seg_type
        )
        assert dciodvfy_errors(path) == []


def test_multiframe_source_frames_are_mapped_by_position(tmp_path: Path) -> None:
    """An enhanced multi-frame CT (highdicom's legacy converter stores its frames head-to-feet,
    the reader sorts them feet-to-head): each SEG frame still cites the frame at its position."""
    import highdicom as hd
    import pydicom

    files = write_series(
        tmp_path / "single",
        direction=rotation("x", 20),
        spacing=(0.8, 0.9, 2.5),
        origin=(1, 2, 3),
        shape=(6, 20, 24),
    )
    enhanced = hd.legacy.LegacyConvertedEnhancedCTImage(
        [pydicom.dcmread(f) for f in files], hd.UID(), 5, hd.UID(), 1
    )
    enhanced.save_as(tmp_path / "enhanced.dcm")
    image = read_image(tmp_path / "enhanced.dcm")
    assert len(image.source.datasets) == 1
    labels = image.with_array(_blobs(image.shape), kind="label")
    seg_path = write_dicom_seg(labels, image, tmp_path / "seg.dcm", label_names=NAMES)
    assert dciodvfy_errors(seg_path) == []
    frame_positions = [
        np.asarray(item.PlanePositionSequence[0].ImagePositionPatient, dtype=float)
        for item in enhanced.PerFrameFunctionalGroupsSequence
    ]
    assert not np.allclose(frame_positions[0], image.index_to_world([0, 0, 0]))  # frames stored reordered
    seg = pydicom.dcmread(seg_path)
    pixels = seg.pixel_array
    for item, frame in zip(seg.PerFrameFunctionalGroupsSequence, pixels, strict=True):
        source = item.DerivationImageSequence[0].SourceImageSequence[0]
        assert source.ReferencedSOPInstanceUID == enhanced.SOPInstanceUID
        position = np.asarray(item.PlanePositionSequence[0].ImagePositionPatient, dtype=float)
        np.testing.assert_allclose(
            position, frame_positions[int(source.ReferencedFrameNumber) - 1], atol=1e-4
        )
        k = int(round(image.world_to_index(position)[2]))
        number = int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        np.testing.assert_array_equal(frame.astype(bool), labels.array[k] == number)
    back, _ = read_dicom_seg(seg_path, image)
    np.testing.assert_array_equal(back.array, labels.array)
    decoded = dcmqi_decode(seg_path, tmp_path / "dcmqi")
    np.testing.assert_allclose(world_points(decoded, 2), world_points(labels, 2), atol=1e-3)


def test_datasets_out_of_slice_order_are_matched_by_position(tmp_path: Path) -> None:
    folder = tmp_path / "ct"
    write_series(folder, direction=np.eye(3), spacing=(0.7, 0.7, 2.0), origin=(0, 0, 0), shape=(5, 16, 16))
    image = read_image(folder)
    order = [3, 0, 4, 1, 2]
    shuffled = replace(
        image.source,
        datasets=tuple(image.source.datasets[i] for i in order),
        files=tuple(image.source.files[i] for i in order),
    )
    lab = np.zeros(image.shape, dtype=np.uint8)
    lab[4, 2:6, 2:6] = 1
    lab[1, 8:12, 8:12] = 2
    labels = Image(lab, image.affine, kind="label", source=shuffled)
    seg_path = write_dicom_seg(labels, None, tmp_path / "seg.dcm", label_names=NAMES)
    for uid, position, number, pixels in frame_references(seg_path):
        k = image.source.sop_instance_uids.index(uid)
        np.testing.assert_allclose(position, image.index_to_world([0, 0, k]), atol=1e-4)
        np.testing.assert_array_equal(pixels.astype(bool), lab[k] == number)
    back, _ = read_dicom_seg(seg_path, image)
    np.testing.assert_array_equal(back.array, lab)
