"""build_model: adapted stems, shapes, input checks, strict offline weight loading and source order."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import torch
from monai.networks.nets import FlexibleUNet
from safetensors.torch import save_file

from medseg.config import ModelConfig
from medseg.errors import ModelError
from medseg.models import (
    ENCODERS,
    build_model,
    check_input_size,
    encoder_preprocessing,
    read_weight_file,
    required_multiple,
    resolve_encoder_weights,
)

LITE0 = ENCODERS["efficientnet-lite0"]


@pytest.fixture(autouse=True)
def torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "torch_home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    return home


@pytest.fixture(scope="module")
def lite0_sd() -> dict[str, torch.Tensor]:
    src = resolve_encoder_weights("efficientnet-lite0", "imagenet")
    assert src is not None
    return read_weight_file(src.path)


def _cfg(**kw) -> ModelConfig:
    base: dict[str, Any] = dict(num_classes=2, decoder_channels=[32, 16, 16, 8, 8])
    base.update(kw)
    return ModelConfig(**base)


def _grey(size: int = 64) -> torch.Tensor:
    """A smooth grey test image in [0, 1], shape (size, size)."""
    y, x = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    return 0.5 + 0.4 * torch.sin(6 * x) * torch.cos(4 * y)


@pytest.mark.parametrize("k", [1, 5, 6])
def test_adapted_stem_on_grey_equals_rgb_stem_on_replicated_grey(k: int) -> None:
    rgb = build_model(_cfg(in_channels=3)).eval()
    adapted = build_model(_cfg(in_channels=k)).eval()
    grey = _grey()
    x_rgb = encoder_preprocessing(_cfg(in_channels=3)).normalize(grey.expand(1, 3, -1, -1))
    x_k = encoder_preprocessing(_cfg(in_channels=k)).normalize(grey.expand(1, k, -1, -1))
    with torch.no_grad():
        stem_rgb = rgb.encoder._bn0(rgb.encoder._conv_stem(rgb.encoder._conv_stem_padding(x_rgb)))
        stem_k = adapted.encoder._bn0(adapted.encoder._conv_stem(adapted.encoder._conv_stem_padding(x_k)))
        torch.testing.assert_close(stem_k, stem_rgb, atol=1e-5, rtol=1e-5)
        for fk, frgb in zip(adapted.encoder(x_k), rgb.encoder(x_rgb), strict=True):
            torch.testing.assert_close(fk, frgb, atol=1e-4, rtol=1e-4)


def test_preprocessing_one_value_per_channel() -> None:
    for k in (1, 3, 5):
        p = encoder_preprocessing(_cfg(in_channels=k))
        assert len(p.mean) == len(p.std) == k and p.input_range == (0.0, 1.0)
        assert p.mean == (127 / 255,) * k and p.std == (128 / 255,) * k  # EfficientNet-Lite's TF statistics


@pytest.mark.parametrize("k", [1, 3, 5])
def test_forward_backward_shapes(k: int) -> None:
    model = build_model(_cfg(in_channels=k, num_classes=3)).train()
    x = torch.randn(2, k, 64, 96)
    y = model(x)
    assert y.shape == (2, 3, 64, 96)
    y.square().mean().backward()
    # every parameter takes part (no dead classifier head: DDP would fail on unused parameters)
    unused = [n for n, p in model.named_parameters() if p.grad is None]
    assert unused == []
    assert model.encoder._conv_stem.weight.grad.abs().sum() > 0


def test_input_size_checks() -> None:
    cfg = _cfg(in_channels=1)
    assert required_multiple(cfg) == 32
    check_input_size((2, 1, 64, 512), cfg)
    check_input_size((32, 32), cfg)
    model = build_model(_cfg(in_channels=1, encoder_weights="none"))
    for bad in [(1, 1, 60, 64), (1, 1, 64, 100)]:
        with pytest.raises(ModelError, match="multiple of 32") as e:
            model(torch.zeros(bad))
        assert "64x64" in str(e.value) or "64x128" in str(e.value)  # suggests the padded size
    with pytest.raises(ModelError, match="3 channels"):
        model(torch.zeros(1, 3, 64, 64))
    with pytest.raises(ModelError):
        check_input_size((1, 1, 8, 64, 64), cfg)


def test_unknown_encoder_suggests_closest() -> None:
    with pytest.raises(ModelError) as e:
        build_model(_cfg(encoder="efficientnet-lite00"))
    msg = str(e.value)
    assert "did you mean 'efficientnet-lite0'" in msg
    assert all(n in msg for n in ENCODERS)
    with pytest.raises(ModelError, match="efficientnet-lite2"):
        build_model(_cfg(encoder="effnet-lite2"))


def test_no_3d_and_bad_settings() -> None:
    with pytest.raises(ModelError, match="2.5-D"):
        build_model(_cfg(spatial_dims=3))
    with pytest.raises(ModelError, match="decoder_channels"):
        build_model(_cfg(decoder_channels=[16, 8]))
    with pytest.raises(ModelError, match="norm"):
        build_model(_cfg(norm="layer"))


def test_registered_in_monai_flexible_unet(lite0_sd: dict[str, torch.Tensor]) -> None:
    net = FlexibleUNet(in_channels=3, out_channels=2, backbone="efficientnet-lite0", pretrained=True)
    assert torch.equal(net.encoder._conv_stem.weight, lite0_sd["_conv_stem.weight"])
    n = sum(p.numel() for p in net.parameters())
    assert 4.5e6 < n < 5.0e6  # ~4.7 M with the default decoder


def _write(path: Path, sd: dict[str, torch.Tensor]) -> Path:
    if path.suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    else:
        torch.save(sd, path)
    return path


def test_loader_refuses_missing_mismatched_or_foreign_tensors(
    tmp_path: Path, lite0_sd: dict[str, torch.Tensor]
) -> None:
    missing = dict(lite0_sd)
    del missing["_blocks.7._project_conv.weight"]
    with pytest.raises(ModelError, match=r"missing.*_blocks\.3\.7\._project_conv\.weight"):
        build_model(_cfg(encoder_weights=str(_write(tmp_path / "missing.pth", missing))))

    mismatched = dict(lite0_sd)
    mismatched["_blocks.2._bn1.weight"] = torch.ones(7)
    with pytest.raises(ModelError, match=r"shape mismatch.*_blocks\.2\._bn1\.weight"):
        build_model(_cfg(encoder_weights=str(_write(tmp_path / "mismatch.safetensors", mismatched))))

    foreign = dict(lite0_sd)  # e.g. an EfficientNet-B0 file: squeeze-excitation tensors Lite does not have
    foreign["_blocks.0._se_reduce.weight"] = torch.zeros(8, 32, 1, 1)
    with pytest.raises(ModelError, match="unexpected.*_se_reduce"):
        build_model(_cfg(encoder_weights=str(_write(tmp_path / "foreign.pth", foreign))))

    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="garbage.pth"):
        build_model(_cfg(encoder_weights=str(garbage)))
    with pytest.raises(ModelError, match="not found"):
        build_model(_cfg(encoder_weights=str(tmp_path / "nope.pth")))


def test_weight_sources_in_order_and_logged(
    tmp_path: Path,
    torch_home: Path,
    lite0_sd: dict[str, torch.Tensor],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def no_download(*a, **k):
        raise AssertionError("tried to download")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    monkeypatch.setattr("urllib.request.urlopen", no_download)
    caplog.set_level(logging.INFO, logger="medseg.models")
    stem = lite0_sd["_conv_stem.weight"]

    def loaded_stem(**kw) -> torch.Tensor:
        caplog.clear()
        return build_model(_cfg(in_channels=3, **kw)).encoder._conv_stem.weight.detach()

    # 3. only the package is there
    assert torch.equal(loaded_stem(), stem)
    assert "from package" in caplog.text and LITE0.file_name in caplog.text

    # 2. the hub cache wins over the package
    hub_file = torch_home / "hub" / "checkpoints" / LITE0.file_name
    hub_file.parent.mkdir(parents=True)
    _write(hub_file, {**lite0_sd, "_conv_stem.weight": stem * 2})
    assert torch.equal(loaded_stem(), stem * 2)
    assert "from torch hub cache" in caplog.text and str(hub_file) in caplog.text

    # 1. an explicit file wins over both
    explicit = _write(tmp_path / "mine.safetensors", {**lite0_sd, "_conv_stem.weight": stem * 3})
    assert torch.equal(loaded_stem(encoder_weights=str(explicit)), stem * 3)
    assert "from explicit file" in caplog.text and str(explicit) in caplog.text

    # "none": random initialisation, nothing read
    assert not torch.equal(loaded_stem(encoder_weights="none"), stem)
    assert "random initialisation" in caplog.text
