"""write_label_map / the format table: one writer for label maps, the suffix picks the format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medseg.errors import ExportError
from medseg.image import Image, affine_from_geometry, present_labels
from medseg.io import read_dicom_seg, read_image, read_label_map, stem_of, suffix_of, write_label_map
from medseg.io.formats import image_suffixes, label_map_suffix, writable_suffixes

SAMPLE_CXR = Path(__file__).resolve().parents[2] / "sample_data" / "cxr" / "siim_cr_chest_pa.dcm"


@pytest.mark.parametrize("name", ["labels.nii.gz", "labels.nii", "labels.mha", "labels.nrrd"])
def test_volume_label_map_round_trip_keeps_values_and_geometry(tmp_path: Path, name: str) -> None:
    rng = np.random.default_rng(1)
    array = rng.integers(0, 4, size=(5, 7, 9)).astype(np.uint8)
    c, s = np.cos(0.3), np.sin(0.3)
    direction = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])
    affine = affine_from_geometry((0.7, 0.8, 2.5), (-20.0, 15.0, 100.0), direction)
    labels = Image(array, affine, kind="label")
    path = write_label_map(labels, tmp_path / name)
    back = read_image(path, kind="label")
    np.testing.assert_array_equal(back.array, array)
    np.testing.assert_allclose(back.affine, affine, atol=1e-4)


def test_2d_label_map_as_png(tmp_path: Path) -> None:
    array = np.zeros((20, 30), np.uint8)
    array[2:8, 3:9] = 1
    array[10:15, 20:28] = 2
    path = write_label_map(Image(array, np.eye(3), kind="label"), tmp_path / "x.png")
    back, names = read_label_map(path)
    np.testing.assert_array_equal(back.array, array)
    assert names == {}


def test_dcm_suffix_writes_a_dicom_seg_with_structure_codes(tmp_path: Path) -> None:
    source = read_image(SAMPLE_CXR)
    array = np.zeros(source.shape, np.uint8)
    h, w = source.shape
    array[h // 4 : h // 2, w // 8 : w // 3] = 1
    array[h // 4 : h // 2, 2 * w // 3 : 7 * w // 8] = 2
    labels = Image(array, source.affine, kind="label")
    path = write_label_map(labels, tmp_path / "seg.dcm", source=source, label_names={1: "Lung_R", 2: "Lung_L"})
    back, names = read_dicom_seg(path, source)
    assert present_labels(back.array) == [1, 2]
    import pydicom

    ds = pydicom.dcmread(path)
    for seg, side in zip(ds.SegmentSequence, ("Right", "Left"), strict=True):
        assert seg.SegmentedPropertyTypeCodeSequence[0].CodeMeaning == "Lung"
        assert seg.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence[0].CodeMeaning == side


def test_label_map_writer_refuses_before_writing(tmp_path: Path) -> None:
    labels = Image(np.zeros((3, 4, 4), np.uint8), np.eye(4), kind="label")
    with pytest.raises(ExportError, match=r"cannot write a label map as \.jpg"):
        write_label_map(labels, tmp_path / "labels.jpg")
    with pytest.raises(ExportError, match="must be a label image"):
        write_label_map(labels.replace(kind="intensity"), tmp_path / "labels.nii.gz")
    with pytest.raises(ExportError, match="needs the DICOM image"):
        write_label_map(labels, tmp_path / "seg.dcm")
    assert list(tmp_path.iterdir()) == []


def test_format_table_answers_suffix_questions() -> None:
    assert suffix_of("A/CT.NII.GZ") == ".nii.gz" and stem_of("A/ct.nii.gz") == "ct"
    assert stem_of("x.tar") == "x" and stem_of(".nii.gz") == ".nii"
    assert ".png" in image_suffixes() and ".dcm" not in image_suffixes()
    assert ".dcm" in writable_suffixes(labels=True) and ".dcm" not in writable_suffixes()
    assert label_map_suffix(2) == ".png" and label_map_suffix(3) == ".nii.gz"


@pytest.mark.parametrize("high", [3, 200, 40000])
def test_present_labels_finds_exactly_the_values_that_occur(high: int) -> None:
    rng = np.random.default_rng(high)
    array = np.zeros((6, 50, 60), dtype=np.uint16)
    chosen = sorted({int(v) for v in rng.integers(1, high + 1, size=12)} | {high})
    flat = array.reshape(-1)
    flat[rng.choice(flat.size, size=len(chosen), replace=False)] = chosen
    assert present_labels(array) == chosen
    assert present_labels(array.astype(bool)) == [1]
    assert present_labels(np.zeros((2, 3), np.uint8)) == []
