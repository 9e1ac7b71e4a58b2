"""The contract every registered architecture passes (segmentation_models_pytorch style)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from medseg.config import load_config
from medseg.errors import CheckpointError, ConfigError
from medseg.models import build_model, load_checkpoint, save_checkpoint
from medseg.models.registry import ARCHITECTURES, class_path, get_architecture


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_architecture_contract(name: str, tmp_path: Path) -> None:
    cfg = load_config(None, [f"model.architecture={name}", "model.encoder_weights=none", "model.in_channels=3",
                             "data.task=ct", "data.context_slices=3"])
    torch.manual_seed(0)
    model = build_model(cfg.model)
    assert isinstance(model, get_architecture(name).cls)
    # forward on several valid sizes: logits (B, num_classes, H, W)
    for h, w in ((64, 64), (96, 160)):
        out = model(torch.randn(2, 3, h, w))
        assert out.shape == (2, cfg.model.num_classes, h, w) and torch.isfinite(out).all()
    # backward reaches the first layer
    model.train()
    model(torch.randn(2, 3, 64, 64)).square().mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads[0] is not None and float(grads[0].abs().sum()) > 0
    # save -> load gives the same outputs, and config.json names the class
    model.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        want = model(x)
    folder = save_checkpoint(tmp_path / "ckpt", model, cfg)
    info = json.loads((folder / "config.json").read_text())
    assert info["model"]["class"] == class_path(get_architecture(name).cls)
    loaded = load_checkpoint(folder)
    with torch.no_grad():
        got = loaded.model(x)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    # a checkpoint of another class is refused with a clear error
    info["model"]["class"] = "somewhere.Else"
    (folder / "config.json").write_text(json.dumps(info))
    with pytest.raises(CheckpointError, match="somewhere.Else"):
        load_checkpoint(folder)


def test_unknown_architecture_names_the_key_and_the_closest_name() -> None:
    with pytest.raises(ConfigError, match="did you mean 'flexible_unet'") as e:
        build_model(load_config(None, ["model.architecture=flexible_unt", "model.encoder_weights=none"]).model)
    assert "model.architecture" in str(e.value)


def test_a_save_killed_between_the_renames_still_loads(tmp_path: Path) -> None:
    import os

    cfg = load_config(None, ["model.encoder_weights=none"])
    model = build_model(cfg.model).eval()
    folder = save_checkpoint(tmp_path / "last", model, cfg)
    # what _swap_into_place leaves when killed after its first rename: no 'last', a complete '.last.old-*'
    os.rename(folder, tmp_path / ".last.old-deadbeef")
    loaded = load_checkpoint(tmp_path / "last")
    assert loaded.config.labels == cfg.labels
    # the next save puts a real 'last' in place again
    save_checkpoint(tmp_path / "last", model, cfg)
    assert (tmp_path / "last" / "config.json").is_file()
