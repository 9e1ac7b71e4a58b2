from __future__ import annotations

from pathlib import Path

import pytest

from medseg.config import Config, config_from_dict, config_to_dict, load_config, save_config
from medseg.errors import ConfigError


def test_defaults_are_valid() -> None:
    cfg = load_config()
    assert isinstance(cfg, Config)
    assert cfg.model.num_classes == len(cfg.labels) + 1


def test_yaml_and_dotted_overrides(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("optim:\n  lr: 0.01\ndata:\n  image_size: [128, 128]\n")
    cfg = load_config(p, ["optim.lr=3e-4", "data.augment.enabled=false", "train.amp=bf16"])
    assert cfg.optim.lr == pytest.approx(3e-4)
    assert cfg.data.image_size == [128, 128]
    assert cfg.data.augment.enabled is False
    assert cfg.train.amp == "bf16"


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("optim.lrr=1", "did you mean 'optim.lr'"),
        ("trian.epochs=3", "did you mean 'train'"),
        ("train.epochs=many", "expected an integer"),
        ("train.amp=fp8", "must be one of"),
        ("data.image_size=5", "expected a list"),
    ],
)
def test_bad_keys_and_types_name_the_key(override: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(None, [override])
    assert fragment in str(e.value)
    assert override.split("=")[0].split(".")[0] in str(e.value)


def test_cross_field_validation() -> None:
    with pytest.raises(ConfigError, match="num_classes"):
        load_config(None, ["model.num_classes=5"])
    with pytest.raises(ConfigError, match="context_slices"):
        load_config(None, ["data.task=ct", "data.context_slices=3", "model.in_channels=1"])


def test_round_trip(tmp_path: Path) -> None:
    cfg = load_config(None, ["labels={1: lung}", "model.num_classes=2", "optim.lr=0.5"])
    save_config(cfg, tmp_path / "out.yaml")
    again = load_config(tmp_path / "out.yaml")
    assert config_to_dict(again) == config_to_dict(cfg)
    assert again.labels == {1: "lung"}
    assert config_from_dict(config_to_dict(cfg)).optim.lr == 0.5


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
