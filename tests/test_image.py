from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from medseg.errors import GeometryError, InputError
from medseg.image import Image, affine_from_geometry, orientation_code


def _oblique_affine() -> np.ndarray:
    theta = np.deg2rad(20)
    rot = np.array([[np.cos(theta), -np.sin(theta), 0], [np.sin(theta), np.cos(theta), 0], [0, 0, 1]])
    return affine_from_geometry((0.7, 0.8, 2.5), (-100.0, 50.0, -300.0), rot)


def test_array_is_read_only_and_copy_isolated() -> None:
    data = np.zeros((3, 4, 5), np.int16)
    img = Image(data, np.eye(4))
    with pytest.raises(ValueError):
        img.array[0, 0, 0] = 1
    with pytest.raises(AttributeError):
        img.kind = "label"  # type: ignore[misc]


def test_geometry_properties_follow_sitk_convention() -> None:
    aff = _oblique_affine()
    img = Image(np.zeros((6, 5, 4), np.float32), aff, modality="CT")
    assert img.shape == (6, 5, 4)
    assert img.size == (4, 5, 6)
    np.testing.assert_allclose(img.spacing, (0.7, 0.8, 2.5))
    np.testing.assert_allclose(img.origin, (-100.0, 50.0, -300.0))
    s = img.to_sitk()
    assert s.GetSize() == img.size
    np.testing.assert_allclose(s.GetSpacing(), img.spacing)
    # the voxel (i, j, k) world position is the same in SimpleITK and in our affine
    idx = (3, 1, 4)
    np.testing.assert_allclose(s.TransformIndexToPhysicalPoint(idx), img.index_to_world(idx), atol=1e-9)
    np.testing.assert_allclose(img.world_to_index(img.index_to_world(idx)), idx, atol=1e-9)
    back = Image.from_sitk(s, modality="CT")
    assert back.same_geometry(img)


def test_orientation_codes() -> None:
    assert orientation_code(np.eye(3)) == "LPS"
    assert orientation_code(np.diag([-1, -1, 1])) == "RAS"
    # sagittal: x index runs A->P (+y), y index runs S->I (-z), slices along +x
    sag = np.array([[0, 0, 1], [1, 0, 0], [0, -1, 0]], float)
    assert orientation_code(sag) == "PIL"


def test_radiograph_is_2d_with_3x3_affine() -> None:
    img = Image(np.zeros((10, 20), np.uint16), np.diag([0.15, 0.2, 1.0]), modality="CR")
    assert img.spacing == (0.15, 0.2)
    assert img.voxel_volume == pytest.approx(0.03)
    with pytest.raises(GeometryError):
        Image(np.zeros((10, 20)), np.eye(4))


def test_label_requires_integer_array() -> None:
    with pytest.raises(InputError):
        Image(np.zeros((3, 3), np.float32), np.eye(3), kind="label")
    lab = Image(np.zeros((3, 3), np.uint8), np.eye(3), kind="label")
    assert lab.with_array(np.ones((3, 3), np.uint8)).array.sum() == 9
    with pytest.raises(GeometryError):
        lab.with_array(np.ones((2, 3), np.uint8))


def test_bad_shapes_and_affines_raise() -> None:
    with pytest.raises(GeometryError):
        Image(np.zeros((2, 2, 2, 2)), np.eye(5))
    with pytest.raises(GeometryError):
        Image(np.zeros((2, 2, 2)), np.zeros((4, 4)))


def test_to_tensor_adds_channel_and_repr_is_informative() -> None:
    img = Image(np.arange(24, dtype=np.float32).reshape(2, 3, 4), np.eye(4), modality="CT")
    t = img.to_tensor()
    assert tuple(t.shape) == (1, 2, 3, 4)
    t[0, 0, 0, 0] = 99  # tensor is a copy, the image stays immutable
    assert img.array[0, 0, 0] == 0
    r = repr(img)
    assert "CT" in r and "(2, 3, 4)" in r and "LPS" in r and "[0, 23]" in r


def test_from_sitk_rejects_vector_images() -> None:
    vec = sitk.Image([4, 4], sitk.sitkVectorUInt8, 3)
    with pytest.raises(InputError):
        Image.from_sitk(vec)


def test_label_boxes_are_each_values_extent() -> None:
    from medseg.image import label_boxes

    rng = np.random.default_rng(0)
    arr = np.zeros((5, 30, 40), np.uint8)
    arr[1:3, 4:9, 10:30] = 2
    arr[4, 20, 0] = 2
    arr[0:2, 25:28, 35:38] = 5
    boxes = label_boxes(arr)
    assert sorted(boxes) == [2, 5]  # absent values (1, 3, 4) have no box
    for v, box in boxes.items():
        idx = np.argwhere(arr == v)
        assert box == tuple(slice(int(lo), int(hi) + 1) for lo, hi in zip(idx.min(0), idx.max(0), strict=True))
    assert label_boxes(rng.random((4, 4)) > 0.5).keys() <= {1}  # bool masks: value 1
    assert label_boxes(np.ones((3, 3), np.float32)) == {} and label_boxes(np.zeros((0, 3), np.uint8)) == {}
