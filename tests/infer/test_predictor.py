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


def _cfg(task: str, names: str = "{1: bright, 2: dark}", *extra: str) -> object:
    over = [f"labels={names}", "model.encoder_weights=none", "data.image_size=[64, 64]", "infer.batch_size=4", *extra]
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
    # body_crop off: this toy model labels the air around the body too (a lung model calls it background)
    pred = Predictor(BrightDark(), _cfg("ct", "{1: bright, 2: dark}", "infer.body_crop=false"), device="cpu").predict(
        image)
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


# -- streaming, grids and windows (issue #17) ----------------------------------------------------


class Smooth(torch.nn.Module):
    """Position-independent but not pointwise: a 5x5 box blur of the centre channel -> 3 logits."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = torch.nn.functional.avg_pool2d(x[:, x.shape[1] // 2 : x.shape[1] // 2 + 1], 5, 1, 2)
        return torch.cat([torch.zeros_like(c), 4 * c, -4 * c], dim=1)


def _ct(z: int = 12, y: int = 80, x: int = 72) -> Image:
    rng = np.random.default_rng(3)
    arr = rng.normal(-300, 400, size=(z, y, x)).astype(np.int16)
    affine = np.diag([1.5, 1.5, 2.5, 1.0])
    return Image(arr, affine, modality="CT")


def _ct_cfg(*extra: str) -> object:
    over = ["labels={1: bright, 2: dark}", "model.encoder_weights=none", "data.image_size=[64, 64]",
            "infer.batch_size=4", "data.task=ct", "model.in_channels=3", "data.context_slices=3",
            "data.spacing_mm=2.0", *extra]
    return load_config(None, over)


def test_prepare_slab_equals_the_whole_volume_preparation(shared_data: Path) -> None:
    from medseg.data.preprocess import prepare_inputs, prepare_slab

    image = read_image(shared_data / "ct_lidc_nodules" / "LIDC-IDRI-0001" / "dicom")
    cfg = _ct_cfg("data.spacing_mm=1.3")
    full = prepare_inputs(image, cfg).tensor  # type: ignore[arg-type]
    for z0, z1 in [(0, 1), (0, 5), (5, 11), (15, 16), (0, 16)]:
        torch.testing.assert_close(prepare_slab(image, cfg, z0, z1), full[z0:z1], rtol=0, atol=0)  # type: ignore[arg-type]


@pytest.mark.parametrize("tta", [False, True])
def test_streaming_chunks_change_nothing_and_uncertainty_matches_the_whole_volume(tta: bool) -> None:
    from medseg.metrics import case_uncertainty

    image = _ct()
    calls: list[tuple[int, int]] = []
    small = Predictor(Smooth(), _ct_cfg("infer.chunk_slices=5"), device="cpu", tta_flip=tta,
                      progress=lambda done, total: calls.append((done, total)))
    big = Predictor(Smooth(), _ct_cfg("infer.chunk_slices=64"), device="cpu", tta_flip=tta)
    a = small.predict(image, return_probabilities=True)
    b = big.predict(image, return_probabilities=True)
    assert calls == [(5, 12), (10, 12), (12, 12)]  # progress after every chunk: (done slices, total)
    np.testing.assert_array_equal(a.labels.array, b.labels.array)
    np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-6)
    assert a.probabilities.shape == (3, *image.shape) and a.probabilities.dtype == np.float32
    # the streamed summary equals medseg.metrics.case_uncertainty of the whole-volume output
    if tta:
        flip = Predictor(Smooth(), _ct_cfg(), device="cpu", tta_flip=False)
        mirrored = Image(image.array[..., ::-1].copy(), image.affine, modality="CT")
        plain = flip.predict(image, return_probabilities=True).probabilities
        back = flip.predict(mirrored, return_probabilities=True).probabilities[[0, 1, 2]][..., ::-1]
        expected = case_uncertainty(plain, back)
    else:
        expected = case_uncertainty(a.probabilities)
    assert set(a.uncertainty) == set(expected)
    for key, value in expected.items():
        assert a.uncertainty[key] == pytest.approx(value, abs=1e-4), key


def test_whole_slice_window_equals_sliding_windows_for_a_local_model_and_old_path_is_kept() -> None:
    from monai.inferers import SlidingWindowInferer

    from medseg.data.preprocess import prepare_inputs, restore_outputs

    image = _ct(z=6, y=150, x=140)  # 2 mm grid 113x105: sliding = 4 overlapping 64x64 windows
    whole = Predictor(Smooth(), _ct_cfg("infer.window=whole"), device="cpu").predict(image, return_probabilities=True)
    cfg = _ct_cfg("infer.window=sliding")
    sliding = Predictor(Smooth(), cfg, device="cpu").predict(image, return_probabilities=True)
    # the previous Predictor: prepare the whole volume, MONAI sliding windows, restore, argmax
    prepared = prepare_inputs(image, cfg)  # type: ignore[arg-type]
    inferer = SlidingWindowInferer(roi_size=(64, 64), sw_batch_size=4, overlap=0.25, mode="gaussian",
                                   padding_mode="constant")
    with torch.no_grad():
        old = restore_outputs(inferer(prepared.tensor, lambda t: torch.softmax(Smooth()(t), 1)), prepared)
    np.testing.assert_allclose(sliding.probabilities, old, atol=1e-5)
    # one whole-slice window differs from blended windows only near the windows' edges
    assert (whole.labels.array == sliding.labels.array).mean() > 0.97
    assert np.abs(whole.probabilities - old).mean() < 0.01


def test_whole_slice_grid_is_padded_for_the_real_unet(tmp_path: Path) -> None:
    from medseg.models import build_model

    cfg = _ct_cfg("infer.window=whole", "infer.chunk_slices=3")
    model = build_model(cfg.model).eval()  # type: ignore[attr-defined]
    image = _ct(z=4, y=83, x=77)  # 2 mm grid 62x58: not a multiple of 32
    pred = Predictor(model, cfg, device="cpu").predict(image)  # type: ignore[arg-type]
    assert pred.labels.shape == image.shape


def test_probabilities_are_not_kept_unless_asked_but_still_readable() -> None:
    image = _ct(z=5)
    p = Predictor(Smooth(), _ct_cfg(), device="cpu")
    lean = p.predict(image)
    assert not lean.has_probabilities
    full = p.predict(image, return_probabilities=True)
    assert full.has_probabilities
    np.testing.assert_allclose(lean.probabilities, full.probabilities)  # computed again on first access
    assert lean.has_probabilities


def test_streaming_keeps_numpy_memory_below_one_probability_volume(monkeypatch: pytest.MonkeyPatch) -> None:
    import tracemalloc

    import medseg.infer.predictor as predictor_module

    # the label statistics (scipy connected components, int32 per voxel) are not the Predictor's streaming
    monkeypatch.setattr(predictor_module, "summarise_labels", lambda labels, names: {})
    image = _ct(z=48, y=256, x=256)
    p = Predictor(Smooth(), _ct_cfg("infer.chunk_slices=4", "infer.fill_holes=false"), device="cpu")
    p.predict(image)  # warm-up (imports, caches)
    tracemalloc.start()
    p.predict(image)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    probs_bytes = 3 * image.array.size * 4  # float32 (K, z, y, x): what the old Predictor held
    assert peak < 0.5 * probs_bytes


def test_bad_infer_settings_are_config_errors() -> None:
    from medseg.errors import ConfigError

    with pytest.raises(ConfigError, match="chunk_slices"):
        Predictor(Smooth(), _ct_cfg("infer.chunk_slices=0"), device="cpu")
    with pytest.raises(ConfigError, match="precision"):
        Predictor(Smooth(), _ct_cfg("infer.precision=fp16"), device="cpu")  # fp16 autocast is GPU only


def test_body_crop_runs_the_network_on_the_body_only() -> None:
    rng = np.random.default_rng(5)
    arr = np.full((6, 320, 320), -1000, np.int16)  # air around a 'body'
    arr[:, 120:200, 130:190] = rng.normal(0, 300, size=(6, 80, 60)).astype(np.int16)
    image = Image(arr, np.diag([1.0, 1.0, 2.5, 1.0]), modality="CT")
    seen: list[tuple[int, int]] = []

    class Spy(Smooth):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append((x.shape[-2], x.shape[-1]))
            return super().forward(x)

    cropped = Predictor(Spy(), _ct_cfg("infer.window=whole"), device="cpu").predict(image, return_probabilities=True)
    assert seen and all(s[0] < 160 and s[1] < 160 for s in seen)  # the 2 mm grid is 160x160, the body box smaller
    assert all(s[0] % 32 == 0 and s[1] % 32 == 0 for s in seen)
    full = Predictor(Smooth(), _ct_cfg("infer.window=whole", "infer.body_crop=false"), device="cpu").predict(
        image, return_probabilities=True)
    body = (slice(None), slice(None), slice(120, 200), slice(130, 190))
    np.testing.assert_allclose(cropped.probabilities[body], full.probabilities[body], atol=1e-5)
    assert (cropped.probabilities[0, :, :8, :8] == 1).all()  # outside the box: background


def test_body_crop_leaves_out_the_couch_but_not_a_large_second_part() -> None:
    arr = np.full((4, 320, 320), -1000, np.int16)
    arr[:, 60:220, 40:280] = 40  # trunk (rows 60-220)
    arr[:, 250:262, 20:300] = 200  # couch below it, separate, ~9 % of the trunk's area
    image = Image(arr, np.diag([1.0, 1.0, 2.5, 1.0]), modality="CT")
    p = Predictor(Smooth(), _ct_cfg("infer.window=whole"), device="cpu")
    grid = (320, 320)
    r0, r1, c0, c1 = p._body_box(image, 0, 4, grid)  # type: ignore[misc]
    assert r0 <= 60 - 16 and r1 >= 220 + 16 and r1 < 250  # the couch is not in the box
    assert c0 <= 40 - 16 and c1 >= 280 + 16
    arr[:, 240:300, 40:280] = 40  # a second part as large as a quarter of the trunk: kept
    r0, r1, _, _ = p._body_box(Image(arr, image.affine, modality="CT"), 0, 4, grid)  # type: ignore[misc]
    assert r1 >= 300


def test_remove_gas_is_a_checkpoint_setting_the_predictor_follows() -> None:
    # the film of tests/infer/test_postprocess.py: the left lung leaks through the diaphragm into gas
    arr = np.full((200, 200), 200.0, np.float32)
    arr[30:150, 20:90] = 50.0
    arr[30:150, 110:180] = 50.0
    arr[160:185, 130:170] = 60.0
    lab = np.zeros(arr.shape, np.uint8)
    lab[30:150, 20:90] = 1
    lab[30:185, 110:180] = 2
    onehot = torch.from_numpy(np.eye(3, dtype=np.float32)[lab].transpose(2, 0, 1))[None] * 20.0

    class Fixed(torch.nn.Module):  # answers the leaking label map whatever the input
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.interpolate(onehot, size=x.shape[-2:], mode="nearest").expand(x.shape[0], -1, -1, -1)

    image = Image(arr, np.eye(3), modality="CR")
    names = "{1: right lung, 2: left lung}"
    on = Predictor(Fixed(), _cfg("cxr", names, "data.image_size=[192, 192]"), device="cpu").predict(image)
    off = Predictor(Fixed(), _cfg("cxr", names, "data.image_size=[192, 192]", "infer.remove_gas=false"),
                    device="cpu").predict(image)
    assert (on.labels.array[162:183, 132:168] == 0).all()  # the bubble is cut
    assert (off.labels.array[162:183, 132:168] == 2).all()  # kept when the checkpoint says so
    assert (on.labels.array[40:140, 120:170] == 2).all() and (off.labels.array[40:140, 120:170] == 2).all()


def test_decision_grid_setting_is_validated() -> None:
    from medseg.errors import ConfigError

    with pytest.raises(ConfigError, match="decision_px"):
        _cfg("cxr", "{1: bright, 2: dark}", "infer.decision_px=10")
    assert _cfg("cxr", "{1: bright, 2: dark}", "infer.decision_px=0").infer.decision_px == 0  # type: ignore[attr-defined]
