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
