"""Predictor: preprocessing -> network -> back onto the input grid, TTA, checkpoints, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from medseg.config import load_config
from medseg.errors import CheckpointError, InputError
from medseg.image import Image
from medseg.infer import Predictor
from medseg.io import read_image


class BrightDark(torch.nn.Module):
    """Pointwise 'segmenter': class 1 where the normalised centre channel is > 0, class 2 elsewhere."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x[:, x.shape[1] // 2 : x.shape[1] // 2 + 1]
        return torch.cat([torch.full_like(c, -50.0), 20 * c, -20 * c], dim=1)


class ImageLeftHalf(torch.nn.Module):
    """Position-dependent model: class 1 on the image's left half, class 2 on the right half."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = x.shape[-1]
        left = (torch.arange(w) < w // 2).float().expand(x.shape[0], 1, x.shape[-2], w)
        return torch.cat([torch.full_like(left, -50.0), 20 * left, 20 * (1 - left)], dim=1)


def _cfg(task: str, names: str = "{1: bright, 2: dark}") -> object:
    over = [f"labels={names}", "model.encoder_weights=none", "data.image_size=[64, 64]", "infer.batch_size=4"]
    if task == "ct":
        over += ["data.task=ct", "model.in_channels=3", "data.context_slices=3", "data.spacing_mm=2.0"]
    return load_config(None, over)


def test_radiograph_prediction_lies_on_the_input_grid(shared_data: Path) -> None:
    image = read_image(shared_data / "cxr_dicom" / "siim_cr_chest_pa.dcm")
    pred = Predictor(BrightDark(), _cfg("cxr"), device="cpu").predict(image)
    assert pred.labels.shape == image.shape and np.allclose(pred.labels.affine, image.affine)
    assert pred.labels.kind == "label" and pred.labels.source is image.source
    assert pred.probabilities.shape == (3, *image.shape)
    np.testing.assert_allclose(pred.probabilities.sum(0), 1.0, atol=1e-4)
    # the pointwise model marks bright pixels: agreement with thresholding the original image
    # at its (percentile-scaled) mid grey is high even after resizing down and back up
    arr = image.array.astype(np.float32)
    lo, hi = np.percentile(arr, [0.5, 99.5])
    pre = load_config(None, ["model.encoder_weights=none"])
    from medseg.models import encoder_preprocessing

    mid = lo + (hi - lo) * encoder_preprocessing(pre.model).mean[0]
    expected = np.where(arr > mid, 1, 2)
    assert (pred.labels.array == expected).mean() > 0.95
    assert set(pred.summary) == {"bright", "dark"}
    assert pred.summary["bright"]["area_cm2"] > 0  # the SC file has PixelSpacing


def test_ct_prediction_per_slice_on_the_input_grid(shared_data: Path) -> None:
    image = read_image(shared_data / "ct_lidc_nodules" / "LIDC-IDRI-0001" / "dicom")
    pred = Predictor(BrightDark(), _cfg("ct"), device="cpu").predict(image)
    assert pred.labels.shape == image.shape and pred.probabilities.shape == (3, *image.shape)
    mid_hu = -1000 + 1400 * 127 / 255  # HU window [-1000, 400] -> [0, 1]; encoder mean 127/255
    expected = np.where(image.array > mid_hu, 1, 2)
    assert (pred.labels.array == expected).mean() > 0.95
    assert pred.summary["bright"]["volume_ml"] > 0


def test_flip_tta_swaps_left_and_right_channels() -> None:
    image = Image(np.random.default_rng(0).normal(size=(64, 96)).astype(np.float32), np.eye(3), modality="CR")
    names = "{1: right lung, 2: left lung}"
    plain = Predictor(ImageLeftHalf(), _cfg("cxr", names), device="cpu", tta_flip=False).predict(image)
    tta = Predictor(ImageLeftHalf(), _cfg("cxr", names), device="cpu", tta_flip=True).predict(image)
    # a mirrored chest turns the right lung into the left one: with the swap, TTA agrees with the plain run
    assert (tta.labels.array == plain.labels.array).mean() > 0.97
    assert tta.probabilities[1][:, :40].mean() > 0.9
    assert "tta_disagreement" in tta.uncertainty and tta.uncertainty["tta_disagreement"] < 0.05


def test_wrong_dimensionality_and_nans_are_clear_errors() -> None:
    p = Predictor(BrightDark(), _cfg("cxr"), device="cpu")
    with pytest.raises(InputError, match="2-D radiographs"):
        p.predict(Image(np.zeros((3, 64, 64), np.float32), np.eye(4), modality="CT"))
    bad = np.zeros((64, 64), np.float32)
    bad[3, 3] = np.nan
    with pytest.raises(InputError, match="NaN"):
        p.predict(Image(bad, np.eye(3)))
    with pytest.raises(InputError, match="label"):
        p.predict(Image(np.zeros((64, 64), np.uint8), np.eye(3), kind="label"))


def test_from_checkpoint_round_trip(tmp_path: Path) -> None:
    from medseg.models import build_model, save_checkpoint

    cfg = _cfg("cxr", "{1: right lung, 2: left lung}")
    model = build_model(cfg.model).eval()  # type: ignore[attr-defined]
    folder = save_checkpoint(tmp_path / "ckpt", model, cfg)  # type: ignore[arg-type]
    image = Image(np.random.default_rng(1).normal(size=(70, 50)).astype(np.float32), np.eye(3), modality="DX")
    a = Predictor(model, cfg, device="cpu").predict(image)  # type: ignore[arg-type]
    b = Predictor.from_checkpoint(folder, device="cpu").predict(image)
    np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-5)
    with pytest.raises(CheckpointError):
        Predictor.from_checkpoint(tmp_path / "missing", device="cpu")
