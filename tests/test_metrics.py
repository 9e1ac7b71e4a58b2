"""medseg.metrics on constructed masks whose Dice / distances / sizes are known by construction."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medseg.errors import InputError
from medseg.metrics import (
    area_cm2,
    dice,
    flip_disagreement,
    hausdorff,
    hd95,
    mean_entropy,
    per_label_metrics,
    structure_size,
    volume_ml,
)


def _square(shape: tuple[int, int], top: int, left: int, side: int) -> np.ndarray:
    m = np.zeros(shape, dtype=bool)
    m[top : top + side, left : left + side] = True
    return m


def test_dice_of_two_squares_with_known_overlap() -> None:
    # 20x20 squares, the second shifted 5 columns: overlap 20x15
    a = _square((50, 60), 10, 10, 20)
    b = _square((50, 60), 10, 15, 20)
    assert dice(a, b) == pytest.approx(2 * 20 * 15 / (400 + 400))
    assert dice(a, a) == 1.0
    assert dice(a, _square((50, 60), 35, 40, 5)) == 0.0


def test_hausdorff_of_shifted_squares_uses_spacing_in_array_axis_order() -> None:
    a = _square((60, 60), 10, 10, 20)
    b_cols = _square((60, 60), 10, 15, 20)  # 5 columns (x) apart
    b_rows = _square((60, 60), 17, 10, 20)  # 7 rows (y) apart
    assert hausdorff(a, b_cols) == pytest.approx(5.0)
    # spacing is (row, col) = (y, x): 2.0 mm between rows, 0.5 mm between columns
    assert hausdorff(a, b_cols, (2.0, 0.5)) == pytest.approx(5 * 0.5)
    assert hausdorff(a, b_rows, (2.0, 0.5)) == pytest.approx(7 * 2.0)
    assert hd95(a, b_rows, (2.0, 0.5)) <= hausdorff(a, b_rows, (2.0, 0.5)) + 1e-6


def test_hd_between_two_points_in_3d_is_their_distance_in_mm() -> None:
    a = np.zeros((8, 10, 10), dtype=bool)
    b = np.zeros_like(a)
    a[1, 2, 5] = True
    b[3, 5, 5] = True  # 2 slices and 3 rows apart
    expected = math.hypot(2 * 3.0, 3 * 0.8)
    assert hausdorff(a, b, (3.0, 0.8, 0.8)) == pytest.approx(expected, rel=1e-5)
    assert hd95(a, b, (3.0, 0.8, 0.8)) == pytest.approx(expected, rel=1e-5)


def test_hd_between_discs_at_known_distance() -> None:
    yy, xx = np.mgrid[:80, :100]
    a = (yy - 40) ** 2 + (xx - 35) ** 2 <= 15**2
    b = (yy - 40) ** 2 + (xx - 47) ** 2 <= 15**2  # same disc, centres 12 px apart
    assert hausdorff(a, b) == pytest.approx(12.0, abs=1.0)
    assert hausdorff(a, b, 0.5) == pytest.approx(6.0, abs=0.5)


def test_empty_mask_conventions() -> None:
    empty = np.zeros((20, 20), dtype=bool)
    full = _square((20, 20), 5, 5, 4)
    assert dice(empty, empty) == 1.0
    assert hausdorff(empty, empty) == 0.0 and hd95(empty, empty) == 0.0
    assert dice(empty, full) == 0.0
    assert math.isinf(hausdorff(empty, full)) and math.isinf(hd95(full, empty))


def test_volume_and_area() -> None:
    cube = np.zeros((12, 12, 12), dtype=bool)
    cube[1:11, 1:11, 1:11] = True  # 1000 voxels of 2 x 1 x 1 mm
    assert volume_ml(cube, (2.0, 1.0, 1.0)) == pytest.approx(2.0)
    sq = _square((30, 30), 0, 0, 20)  # 400 px of 0.5 x 0.5 mm = 100 mm^2
    assert area_cm2(sq, (0.5, 0.5)) == pytest.approx(1.0)
    assert structure_size(sq, None) == (400.0, "px")
    assert structure_size(cube, (2.0, 1.0, 1.0)) == (pytest.approx(2.0), "mL")
    with pytest.raises(InputError):
        volume_ml(sq, (1.0, 1.0))


def test_per_label_metrics_per_structure() -> None:
    a = np.zeros((40, 60), dtype=np.uint8)
    b = np.zeros_like(a)
    a[5:15, 5:15] = 1
    b[5:15, 8:18] = 1  # label 1: shifted 3 columns
    a[20:30, 30:40] = 2
    b[20:30, 30:40] = 2  # label 2: identical
    m = per_label_metrics(a, b, [1, 2, 3], spacing=(1.0, 2.0))
    assert m[1]["dice"] == pytest.approx(2 * 70 / 200)
    assert m[1]["hausdorff"] == pytest.approx(3 * 2.0)
    assert m[2]["dice"] == 1.0 and m[2]["hd95"] == 0.0
    assert m[3]["dice"] == 1.0 and m[3]["size_a"] == 0.0  # absent from both
    assert m[1]["size_unit"] == "cm2" and m[1]["distance_unit"] == "mm"
    assert m[2]["size_a"] == pytest.approx(100 * 2.0 / 100)
    px = per_label_metrics(a, b, [1], spacing=None)
    assert px[1]["distance_unit"] == "px" and px[1]["hausdorff"] == pytest.approx(3.0)


def test_shape_and_spacing_errors() -> None:
    with pytest.raises(InputError, match="shape"):
        dice(np.zeros((4, 4)), np.zeros((4, 5)))
    with pytest.raises(InputError, match="spacing"):
        hausdorff(_square((9, 9), 1, 1, 3), _square((9, 9), 2, 2, 3), (1.0, 1.0, 1.0))


def test_mean_entropy() -> None:
    k, shape = 3, (10, 10)
    uniform = np.full((k, *shape), 1 / k)
    onehot = np.zeros((k, *shape))
    onehot[0] = 1.0
    assert mean_entropy(uniform) == pytest.approx(1.0)
    assert mean_entropy(uniform, normalize=False) == pytest.approx(math.log(3))
    assert mean_entropy(onehot) == pytest.approx(0.0)
    assert mean_entropy(onehot, region="foreground") == 0.0  # no foreground predicted
    # a confident background plus a 2x2 foreground patch with p = (0.1, 0.9, 0)
    p = onehot.copy()
    p[:, :2, :2] = np.array([0.1, 0.9, 0.0])[:, None, None]
    h_patch = -(0.1 * math.log(0.1) + 0.9 * math.log(0.9)) / math.log(3)
    assert mean_entropy(p, region="foreground") == pytest.approx(h_patch)
    assert mean_entropy(p) == pytest.approx(h_patch * 4 / 100)
    with pytest.raises(InputError):
        mean_entropy(np.ones((1, 4, 4)))


def test_flip_disagreement() -> None:
    a = np.zeros((2, 20, 20))
    a[0] = 1.0
    a[:, 5:15, 5:15] = np.array([0.2, 0.8])[:, None, None]
    b = np.zeros_like(a)
    b[0] = 1.0
    b[:, 5:15, 10:20] = np.array([0.2, 0.8])[:, None, None]  # shifted 5 columns: overlap 10x5
    assert flip_disagreement(a, a) == 0.0
    assert flip_disagreement(a, b) == pytest.approx(1 - 2 * 50 / 200)
    # total variation: 0.8 on the 100 px that differ (50 in each map only) out of 400 px
    assert flip_disagreement(a, b, mode="abs") == pytest.approx(0.8 * 100 / 400)
    with pytest.raises(InputError):
        flip_disagreement(a, b[:, :10])
