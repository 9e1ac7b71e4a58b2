"""Checkpoint folders: round trip, self-description, atomic replacement, corruption, no pickle."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
from torch import nn

from medseg.config import Config, ModelConfig
from medseg.errors import CheckpointError
from medseg.models import (
    build_model,
    encoder_preprocessing,
    load_checkpoint,
    save_checkpoint,
)
from medseg.structures import concept_to_dict


def _config(in_channels: int = 1) -> Config:
    cfg = Config(
        name="ckpt-test",
        labels={1: "right lung", 2: "left lung"},
        model=ModelConfig(
            in_channels=in_channels,
            num_classes=3,
            decoder_channels=[32, 16, 16, 8, 8],
            encoder_weights="none",
        ),
    )
    return cfg.validate()


@pytest.fixture
def saved(tmp_path: Path) -> tuple[Path, nn.Module, Config]:
    cfg = _config()
    torch.manual_seed(0)
    model = build_model(cfg.model)
    model.train()
    model(torch.randn(2, 1, 64, 64))  # move BN running statistics away from their defaults
    model.eval()
    path = save_checkpoint(tmp_path / "ckpt", model, cfg, training={"epoch": 3, "best_dice": 0.91})
    return path, model, cfg


def test_round_trip_identical_outputs_and_description(saved: tuple[Path, nn.Module, Config]) -> None:
    path, model, cfg = saved
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.safetensors"]
    loaded = load_checkpoint(path)
    assert not loaded.model.training
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded.model(x), model(x))
    assert loaded.config == cfg
    info = loaded.info
    assert info["format_version"] == 1 and info["medseg_version"]
    assert info["model"]["class"].endswith("MedsegUNet")
    assert info["labels"]["1"] == {"name": "right lung", "concept": concept_to_dict("right lung")}
    assert info["labels"]["2"]["concept"] == concept_to_dict("left lung")
    assert loaded.preprocessing == encoder_preprocessing(cfg.model)
    assert info["preprocessing"]["required_multiple"] == 32
    assert info["training"] == {"epoch": 3, "best_dice": 0.91}
    # also addressable through its config.json
    assert load_checkpoint(path / "config.json").config == cfg


def test_loading_never_unpickles(
    saved: tuple[Path, nn.Module, Config], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, _, _ = saved

    def forbidden(*a, **k):
        raise AssertionError("unpickling attempted")

    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)
    monkeypatch.setattr(torch, "load", forbidden)
    load_checkpoint(path)


def test_save_replaces_a_checkpoint_but_not_other_folders(
    saved: tuple[Path, nn.Module, Config], tmp_path: Path
) -> None:
    path, model, cfg = saved
    before = json.loads((path / "config.json").read_text())
    save_checkpoint(path, model, cfg, training={"epoch": 4})
    assert json.loads((path / "config.json").read_text())["training"] == {"epoch": 4}
    assert before["training"] == {"epoch": 3, "best_dice": 0.91}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # no temporary or old folders left

    other = tmp_path / "results"
    other.mkdir()
    (other / "keep.txt").write_text("precious")
    with pytest.raises(CheckpointError, match="not a medseg checkpoint"):
        save_checkpoint(other, model, cfg)
    assert (other / "keep.txt").read_text() == "precious"


def test_save_refuses_a_model_that_does_not_match_the_config(tmp_path: Path) -> None:
    model = build_model(_config(in_channels=1).model)
    wrong = _config(in_channels=3)
    wrong.data.task = "cxr"
    with pytest.raises(CheckpointError, match="does not match config.model"):
        save_checkpoint(tmp_path / "c", model, wrong)
    assert not (tmp_path / "c").exists()


def test_save_unwraps_ddp_style_wrappers(tmp_path: Path) -> None:
    cfg = _config()
    wrapper = nn.Module()
    wrapper.module = build_model(cfg.model)
    path = save_checkpoint(tmp_path / "c", wrapper, cfg)
    assert load_checkpoint(path).model.state_dict().keys() == wrapper.module.state_dict().keys()


def _edit_json(path: Path, edit) -> None:
    info = json.loads((path / "config.json").read_text())
    edit(info)
    (path / "config.json").write_text(json.dumps(info))


def test_corrupt_weights_are_refused(saved: tuple[Path, nn.Module, Config]) -> None:
    path, _, _ = saved
    weights = path / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-100] ^= 0xFF  # one flipped byte inside a tensor
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="model.safetensors.*sha256"):
        load_checkpoint(path)
    # without the recorded checksum a truncated file still fails, naming the file
    _edit_json(path, lambda i: i["weights"].pop("sha256"))
    weights.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(CheckpointError, match="model.safetensors.*safetensors"):
        load_checkpoint(path)
    weights.unlink()
    with pytest.raises(CheckpointError, match="model.safetensors: missing"):
        load_checkpoint(path)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda i: i["config"]["model"].update(in_channels=3), r"_conv_stem\.weight"),
        (lambda i: i["config"]["model"].update(num_classes=5), "num_classes"),
        (lambda i: i["config"]["model"].update(encoder="efficientnet-lite9"), "did you mean"),
        (lambda i: i["config"]["model"].update(decoder_channels=[64, 16, 16, 8, 8]), "shape mismatch"),
        (lambda i: i["config"].update(modle={}), "unknown config key 'modle'"),
        (lambda i: i.update(format_version=99), "format_version 99"),
        (lambda i: i.pop("config"), "'config' section"),
        (lambda i: i["preprocessing"].update(mean=[0.5, 0.5]), "one mean and std per input channel"),
        (lambda i: i["preprocessing"].pop("std"), "'preprocessing' section"),
    ],
)
def test_edited_config_json_is_refused(saved: tuple[Path, nn.Module, Config], edit, message: str) -> None:
    path, _, _ = saved
    _edit_json(path, edit)
    with pytest.raises(CheckpointError, match=message) as e:
        load_checkpoint(path)
    assert "config.json" in str(e.value) or "model.safetensors" in str(e.value)


def test_bad_json_and_missing_folder(saved: tuple[Path, nn.Module, Config], tmp_path: Path) -> None:
    path, _, _ = saved
    (path / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="config.json: not valid JSON"):
        load_checkpoint(path)
    (path / "config.json").unlink()
    with pytest.raises(CheckpointError, match="config.json: missing"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nowhere")
