from __future__ import annotations

import numpy as np
import pytest

from medseg.image import Image, ImageSource
from medseg.infer.postprocess import patient_left_sign, postprocess_labels, summarise_labels

NAMES = {1: "right lung", 2: "left lung"}


def _two_lungs_2d() -> np.ndarray:
    lab = np.zeros((40, 60), np.uint8)
    lab[5:35, 5:25] = 1  # image left = patient right (PA display)
    lab[5:35, 35:55] = 2
    return lab


def test_left_right_follow_patient_side_on_a_radiograph() -> None:
    img = Image(np.zeros((40, 60), np.float32), np.eye(3), modality="CR")
    swapped = 3 - _two_lungs_2d()
    swapped[swapped == 3] = 0
    out = postprocess_labels(swapped, img, NAMES)
    assert (out == _two_lungs_2d()).all()


def test_dicom_patient_orientation_flips_the_rule() -> None:
    import pydicom

    ds = pydicom.Dataset()
    ds.PatientOrientation = ["R", "F"]  # rows run towards patient right: patient left on the image left
    img = Image(np.zeros((40, 60), np.float32), np.eye(3), modality="CR", source=ImageSource(None, "dicom", (ds,)))
    assert patient_left_sign(img) == -1.0
    out = postprocess_labels(_two_lungs_2d(), img, NAMES)
    assert (out[5:35, 5:25] == 2).all() and (out[5:35, 35:55] == 1).all()


def test_ct_left_lung_is_at_larger_world_x() -> None:
    lab = np.zeros((4, 30, 40), np.uint8)
    lab[:, 5:25, 3:15] = 2
    lab[:, 5:25, 25:37] = 1
    lps = Image(np.zeros(lab.shape, np.int16), np.eye(4), modality="CT")
    out = postprocess_labels(lab, lps, NAMES)
    assert (out[:, 5:25, 25:37] == 2).all() and (out[:, 5:25, 3:15] == 1).all()
    ras_x = Image(np.zeros(lab.shape, np.int16), np.diag([-1.0, 1, 1, 1]), modality="CT")  # x index runs to the right
    out2 = postprocess_labels(lab, ras_x, NAMES)
    assert (out2 == lab).all()


def test_keeps_largest_component_and_fills_holes() -> None:
    lab = _two_lungs_2d()
    lab[15:20, 10:15] = 0  # a hole (vessel) inside the right lung
    lab[0:2, 0:2] = 1  # a speck of false positive
    img = Image(np.zeros(lab.shape, np.float32), np.eye(3), modality="CR")
    out = postprocess_labels(lab, img, NAMES)
    assert (out[15:20, 10:15] == 1).all()
    assert (out[0:2, 0:2] == 0).all()
    no_fill = postprocess_labels(lab, img, NAMES, fill_holes=False, keep_largest=False)
    assert (no_fill[15:20, 10:15] == 0).all() and (no_fill[0:2, 0:2] == 1).all()


def test_other_labels_are_untouched() -> None:
    lab = np.zeros((4, 30, 40), np.uint8)
    lab[0, 1, 1] = 3
    lab[3, 20, 30] = 3
    img = Image(np.zeros(lab.shape, np.int16), np.eye(4), modality="CT")
    out = postprocess_labels(lab, img, {1: "right lung", 2: "left lung", 3: "nodule"})
    assert (out == 3).sum() == 2


def test_summary_units() -> None:
    lab = np.zeros((2, 10, 10), np.uint8)
    lab[:, :5, :5] = 1
    img = Image(lab, np.diag([2.0, 2.0, 5.0, 1.0]), kind="label", modality="CT")
    s = summarise_labels(img, NAMES)
    assert s["right lung"]["volume_ml"] == pytest.approx(50 * 20 / 1000)
    assert s["right lung"]["components"] == 1 and s["left lung"]["voxels"] == 0
    png = Image(lab[0], np.eye(3), kind="label", modality="OT", source=ImageSource(None, "png"))
    assert summarise_labels(png, NAMES)["right lung"]["area_px"] == 25


def _film_with_gastric_bubble(right_bottom: int = 150) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic PA film (bright soft tissue, dark lungs, a dark gas bubble under the left
    hemidiaphragm) and a predicted label map whose left lung leaks through the diaphragm into it."""
    img = np.full((200, 200), 200.0, np.float32)
    img[30:right_bottom, 20:90] = 50.0  # right lung (image left)
    img[30:150, 110:180] = 50.0  # left lung; rows 150-159 = diaphragm (tissue)
    img[160:185, 130:170] = 60.0  # gastric bubble
    lab = np.zeros(img.shape, np.uint8)
    lab[30:right_bottom, 20:90] = 1
    lab[30:185, 110:180] = 2  # leak: diaphragm and bubble labelled as left lung
    return img, lab


def test_gas_below_the_diaphragm_is_cut_from_a_radiograph() -> None:
    arr, lab = _film_with_gastric_bubble()
    img = Image(arr, np.eye(3), modality="CR")
    out = postprocess_labels(lab, img, NAMES)
    assert (out[160:185, 130:170] == 0).all()  # the bubble
    assert (out[150:160, 130:170] == 0).all()  # the diaphragm above it
    assert (out[30:150, 110:180] == 2).all() and (out[30:150, 20:90] == 1).all()  # the lungs stay
    plain = postprocess_labels(lab, img, NAMES, anatomy=False)
    assert (plain[160:185, 130:170] == 2).all()


def test_dense_base_without_gas_below_is_kept() -> None:
    arr, lab = _film_with_gastric_bubble()
    arr[150:200, 110:180] = 200.0  # no bubble: white base (effusion / opacity) down to the mask's end
    out = postprocess_labels(lab, Image(arr, np.eye(3), modality="CR"), NAMES)
    assert (out == lab).all()


def test_gas_rule_spares_a_base_level_with_the_other_lung() -> None:
    arr, lab = _film_with_gastric_bubble(right_bottom=190)  # other lung reaches as low: not a leak
    out = postprocess_labels(lab, Image(arr, np.eye(3), modality="CR"), NAMES)
    assert (out == lab).all()


def test_gas_rule_is_off_for_an_upside_down_film() -> None:
    import pydicom

    arr, lab = _film_with_gastric_bubble()
    ds = pydicom.Dataset()
    ds.PatientOrientation = ["L", "H"]  # rows run towards the head
    img = Image(arr, np.eye(3), modality="CR", source=ImageSource(None, "dicom", (ds,)))
    out = postprocess_labels(lab, img, NAMES)
    assert (out[160:185, 130:170] == 2).all()


@pytest.mark.parametrize("shape", [(64, 80), (6, 40, 50)])
def test_summary_counts_and_components_match_whole_image_labelling(shape: tuple[int, ...]) -> None:
    from scipy import ndimage

    rng = np.random.default_rng(len(shape))
    lab = (ndimage.zoom(rng.random([max(2, s // 8) for s in shape]), 8, order=0)[tuple(slice(s) for s in shape)]
           * 4).astype(np.uint8)  # blocks of 0..3, several components each
    lab[lab == 3] = 0  # label 3 named but absent
    names = {1: "right lung", 2: "left lung", 3: "nodule"}
    affine = np.eye(len(shape) + 1)
    s = summarise_labels(Image(lab, affine, kind="label", modality="CT" if len(shape) == 3 else "CR"), names)
    for value, name in names.items():
        assert s[name]["voxels"] == int((lab == value).sum())
        assert s[name]["components"] == ndimage.label(lab == value)[1]


@pytest.mark.parametrize("ndim", [2, 3])
def test_hole_filling_inside_the_bounding_box_equals_whole_grid_filling(ndim: int) -> None:
    from scipy import ndimage

    from medseg.infer.postprocess import _fill_holes

    rng = np.random.default_rng(ndim)
    for _ in range(20):
        shape = (4, 40, 50)[-ndim:]
        mask = ndimage.binary_opening(rng.random(shape) < 0.6) if ndim == 2 else rng.random(shape) < 0.6
        mask[..., :3, :] = False  # keep clear of one image edge only: boxes touch the others
        want = (np.stack([ndimage.binary_fill_holes(s) for s in mask]) if ndim == 3
                else ndimage.binary_fill_holes(mask))
        np.testing.assert_array_equal(_fill_holes(mask), want)
    assert not _fill_holes(np.zeros((5, 6), bool)).any()
