"""write_mask: label maps as NIfTI / MetaImage with their geometry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from seg_helpers import rotation

from medseg.errors import ExportError
from medseg.export import write_mask
from medseg.image import Image, affine_from_geometry
from medseg.io import read_image


@pytest.mark.parametrize("name", ["labels.nii.gz", "labels.nii", "labels.mha", "labels.nrrd"])
def test_mask_round_trip_keeps_values_and_geometry(tmp_path: Path, name: str) -> None:
    rng = np.random.default_rng(1)
    array = rng.integers(0, 4, size=(5, 7, 9)).astype(np.uint8)
    affine = affine_from_geometry(
        (0.7, 0.8, 2.5), (-20.0, 15.0, 100.0), rotation("z", 15) @ rotation("x", 10)
    )
    labels = Image(array, affine, kind="label")
    path = write_mask(labels, tmp_path / name)
    back = read_image(path, kind="label")
    np.testing.assert_array_equal(back.array, array)
    np.testing.assert_allclose(back.affine, affine, atol=1e-4)


def test_mask_errors(tmp_path: Path) -> None:
    labels = Image(np.zeros((3, 4, 4), np.uint8), np.eye(4), kind="label")
    with pytest.raises(ExportError, match="unsupported mask format .png"):
        write_mask(labels, tmp_path / "labels.png")
    with pytest.raises(ExportError, match="writes label maps"):
        write_mask(labels.replace(kind="intensity"), tmp_path / "labels.nii.gz")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("high", [3, 200, 40000])
def test_present_labels_finds_exactly_the_values_that_occur(high: int) -> None:
    from medseg.image import present_labels

    rng = np.random.default_rng(high)
    array = np.zeros((6, 50, 60), dtype=np.uint16)
    chosen = sorted({int(v) for v in rng.integers(1, high + 1, size=12)} | {high})
    flat = array.reshape(-1)
    flat[rng.choice(flat.size, size=len(chosen), replace=False)] = chosen
    assert present_labels(array) == chosen
    assert present_labels(array.astype(bool)) == [1]
    assert present_labels(np.zeros((2, 3), np.uint8)) == []
