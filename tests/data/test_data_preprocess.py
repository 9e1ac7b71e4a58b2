"""The inference contract: shapes, normalisation, 2.5-D stacks and prepare -> restore geometry on real images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from medseg.config import Config, config_from_dict
from medseg.data.preprocess import (
    context_stack,
    normalize,
    prepare_inputs,
    prepare_label,
    restore_outputs,
    unit_inputs,
)
from medseg.errors import ConfigError, GeometryError, InputError
from medseg.image import Image
from medseg.io import read_image
from medseg.models import encoder_preprocessing


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * (a & b).sum() / (a.sum() + b.sum()))


def _round_trip(label: Image, prepared) -> np.ndarray:  # type: ignore[no-untyped-def]
    """A label map -> prepared grid (nearest) -> one-hot 'probabilities' -> restored -> argmax."""
    small = prepare_label(label, prepared).long()
    n = 1 if prepared.task == "cxr" else small.shape[0]
    probs = torch.nn.functional.one_hot(small.reshape(n, *small.shape[-2:]), 3).permute(0, 3, 1, 2).float()
    restored = restore_outputs(probs, prepared)
    assert restored.dtype == np.float32
    assert restored.shape == (3, *label.shape)
    np.testing.assert_allclose(restored.sum(axis=0), 1.0, atol=1e-5)  # still probabilities
    return restored.argmax(axis=0)


@pytest.fixture(scope="module")
def cxr(shared_data: Path) -> tuple[Image, Image]:
    d = shared_data / "cxr_lung_covid19_gb"
    stem = "pneumocystis-carinii-pneumonia-1-PA"
    return read_image(d / "images" / f"{stem}.jpg"), read_image(d / "masks" / f"{stem}_lungs.png", kind="label")


@pytest.fixture(scope="module")
def ct_crop(shared_data: Path) -> tuple[Image, Image]:
    """16 real axial slices of LUNG1-002 through both lungs, on the scan's own geometry."""
    d = shared_data / "ct_lung_nsclc_radiomics" / "LUNG1-002"
    ct, lab = read_image(d / "ct.nii.gz", modality="CT"), read_image(d / "lung_label.nii.gz", kind="label")
    z0, z1 = 50, 66
    affine = ct.affine.copy()
    affine[:3, 3] = ct.index_to_world([0, 0, z0])
    return (Image(ct.array[z0:z1], affine, "intensity", "CT"), Image(lab.array[z0:z1], affine, "label", "CT"))


def test_cxr_prepare_shapes_and_normalisation(cxr: tuple[Image, Image]) -> None:
    image, _ = cxr
    cfg = Config(data=config_from_dict({"image_size": [128, 96]}, type(Config().data)))
    prepared = prepare_inputs(image, cfg)
    assert prepared.tensor.shape == (1, 1, 128, 96) and prepared.tensor.dtype == torch.float32
    assert prepared.input_shape == image.shape and prepared.grid_shape == (128, 96)
    unit, _ = unit_inputs(image, cfg)
    assert 0.0 <= float(unit.min()) < 0.1 and 0.9 < float(unit.max()) <= 1.0
    pre = encoder_preprocessing(cfg.model)
    expected = (unit - pre.mean[0]) / pre.std[0]
    torch.testing.assert_close(prepared.tensor[0], expected)


def test_cxr_robust_percentile_scaling() -> None:
    """0.5/99.5 percentiles map to 0/1 (clipped): a few burnt-in outliers do not squash the image."""
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 4096, size=(64, 64)).astype(np.float32)
    arr[0, :5] = 1e6  # burnt-in text / markers
    image = Image(arr, np.eye(3))
    cfg = config_from_dict({"data": {"image_size": [64, 64]}})
    unit, _ = unit_inputs(image, cfg)
    lo, hi = np.percentile(arr, [0.5, 99.5])
    np.testing.assert_allclose(unit[0].numpy(), np.clip((arr - lo) / (hi - lo), 0, 1), atol=1e-5)
    assert float((unit == 1).float().mean()) < 0.01 and float(unit.median()) == pytest.approx(0.5, abs=0.05)


def test_cxr_round_trip_keeps_geometry(cxr: tuple[Image, Image]) -> None:
    image, label = cxr
    cfg = Config()
    prepared = prepare_inputs(image, cfg)
    back = _round_trip(label, prepared)
    for value in (1, 2):
        assert _dice(back == value, label.array == value) > 0.98


def test_ct_prepare_25d_stack(ct_crop: tuple[Image, Image]) -> None:
    image, _ = ct_crop
    cfg = config_from_dict(
        {"data": {"task": "ct", "context_slices": 3, "spacing_mm": 1.5, "hu_window": [-1000, 400]},
         "model": {"in_channels": 3}}
    ).validate()
    prepared = prepare_inputs(image, cfg)
    h = round(512 * image.spacing[1] / 1.5)
    assert prepared.tensor.shape == (16, 3, h, h) and prepared.grid_shape == (h, h)
    t = prepared.tensor
    # channel j of slice z is slice z + j - 1; the ends repeat the edge slice
    torch.testing.assert_close(t[5, 2], t[6, 1])
    torch.testing.assert_close(t[5, 0], t[4, 1])
    torch.testing.assert_close(t[0, 0], t[0, 1])
    torch.testing.assert_close(t[15, 2], t[15, 1])
    # HU window: air (-1000 and below) is 0 before normalisation, dense bone (>= 400) is 1
    unit, _ = unit_inputs(image, cfg)
    pre = encoder_preprocessing(cfg.model)
    torch.testing.assert_close(normalize(context_stack(unit, 3), cfg), t)
    assert float(unit.min()) == 0.0 and float(unit.max()) == 1.0
    assert float(t.min()) == pytest.approx((0 - pre.mean[0]) / pre.std[0])


@pytest.mark.parametrize("spacing_mm", [0.0, 1.5])
def test_ct_round_trip_keeps_geometry(ct_crop: tuple[Image, Image], spacing_mm: float) -> None:
    image, label = ct_crop
    cfg = config_from_dict({"data": {"task": "ct", "spacing_mm": spacing_mm}, "model": {"in_channels": 3}}).validate()
    prepared = prepare_inputs(image, cfg)
    back = _round_trip(label, prepared)
    for value in (1, 2):
        assert _dice(back == value, label.array == value) > 0.98
    if spacing_mm == 0:
        np.testing.assert_array_equal(back, label.array)  # native grid: exact


def test_context_stack_against_explicit_loop() -> None:
    vol = torch.arange(5 * 2 * 2, dtype=torch.float32).reshape(5, 2, 2)
    out = context_stack(vol, 5)
    for z in range(5):
        for j in range(5):
            torch.testing.assert_close(out[z, j], vol[min(4, max(0, z + j - 2))])
    with pytest.raises(ConfigError, match="odd"):
        context_stack(vol, 2)


def test_contract_errors(cxr: tuple[Image, Image], ct_crop: tuple[Image, Image]) -> None:
    image, label = cxr
    ct_cfg = config_from_dict({"data": {"task": "ct"}, "model": {"in_channels": 3}}).validate()
    with pytest.raises(InputError, match="expects a 3-D CT volume"):
        prepare_inputs(image, ct_cfg)
    with pytest.raises(InputError, match="label map"):
        prepare_inputs(label, Config())
    with pytest.raises(ConfigError, match="multiples of 32"):
        prepare_inputs(image, config_from_dict({"data": {"image_size": [100, 100]}}))
    prepared = prepare_inputs(image, Config())
    with pytest.raises(GeometryError, match="do not match"):
        restore_outputs(np.zeros((1, 3, 128, 128), np.float32), prepared)
    with pytest.raises(GeometryError, match="label shape"):
        prepare_label(ct_crop[1], prepared)
    nan = image.with_array(np.full(image.shape, np.nan, dtype=np.float32))
    with pytest.raises(InputError, match="NaN"):
        prepare_inputs(nan, Config())


@pytest.mark.parametrize("film", ["cxr_lung_v7_covid/images/00870a9c.jpg", "cxr_dicom/siim_cr_chest_pa.dcm",
                                  "cxr_dicom/CR-MONO1-10-chest.dcm"])
def test_cxr_scaling_equals_monai_percentile_transform(shared_data: Path, film: str) -> None:
    """The in-place scaling = MONAI's ScaleIntensityRangePercentiles that the models were trained with."""
    from monai.transforms import ScaleIntensityRangePercentiles

    path = shared_data / film
    if not path.is_file():
        pytest.skip(f"{path} not present")
    image = read_image(path)
    r, c = image.shape[0] // 32 * 32, image.shape[1] // 32 * 32  # a film the grid takes as it is:
    image = Image(np.ascontiguousarray(image.array[:r, :c]), image.affine)  # the scaling, not a resize
    cfg = Config()
    cfg.data.image_size = [r, c]
    unit, _ = unit_inputs(image, cfg)
    ref = ScaleIntensityRangePercentiles(lower=0.5, upper=99.5, b_min=0.0, b_max=1.0, clip=True)(
        torch.from_numpy(np.asarray(image.array, dtype=np.float32).copy())[None])
    np.testing.assert_allclose(unit.numpy(), np.asarray(ref), rtol=0, atol=1e-6)
