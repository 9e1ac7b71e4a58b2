"""Clear errors: config mistakes (one CLI line, exit 2), non-finite loss (names the step), reused run folders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from medseg.cli import main
from medseg.config import config_to_dict, save_config
from medseg.errors import ConfigError, TrainingError
from medseg.training import Callback, TrainState, train


def _cli_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("medseg: error:"), err
    return err


def test_config_errors_are_one_line_exit_2(make_config: Any, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    cfg_file = tmp_path / "cfg.yaml"
    save_config(make_config(), cfg_file)
    data = yaml.safe_load(cfg_file.read_text())
    data["train"]["epoch"] = data["train"].pop("epochs")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data))
    err = _cli_error(capsys, ["train", str(bad)])
    assert "unknown config key 'train.epoch'" in err and "did you mean 'train.epochs'" in err
    err = _cli_error(capsys, ["train", str(cfg_file), "--set", "train.epochs=many"])
    assert "train.epochs" in err and "expected an integer" in err
    err = _cli_error(capsys, ["train", str(cfg_file), "--set", f"data.manifest={tmp_path / 'nowhere.csv'}"])
    assert "data.manifest" in err and "does not exist" in err
    err = _cli_error(capsys, ["train", str(cfg_file), "--set", "train.amp=fp16", "--set", "train.device=cpu"])
    assert "train.amp" in err and "bf16" in err
    err = _cli_error(capsys, ["train", str(cfg_file), "--set", "train.monitor=dice_heart"])
    assert "train.monitor" in err and "dice_right_lung" in err
    assert not Path(make_config().train.out_dir).exists()  # nothing was written


class _PoisonWeights(Callback):
    def on_step_end(self, state: TrainState) -> None:
        if state.step == 1:
            with torch.no_grad():
                next(state.model.parameters()).fill_(float("nan"))


def test_non_finite_loss_raises_with_the_step(make_config: Any) -> None:
    with pytest.raises(TrainingError, match=r"non-finite loss at epoch 1, step 2.*Fix: lower optim.lr"):
        train(make_config(), callbacks=[_PoisonWeights()])


def test_run_folder_is_not_overwritten(make_config: Any) -> None:
    cfg = make_config(train={"max_steps": 1})
    train(cfg)
    with pytest.raises(ConfigError, match="already holds a training run.*--resume"):
        train(cfg)
    assert config_to_dict(cfg)["train"]["max_steps"] == 1


def test_cli_train_runs_and_overrides(make_config: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg_file = tmp_path / "cfg.yaml"
    save_config(make_config(), cfg_file)
    run = tmp_path / "cli_run"
    assert main(["train", str(cfg_file), "--set", f"train.out_dir={run}", "--set", "train.max_steps=1"]) == 0
    out = capsys.readouterr().out
    assert "max_steps: 0 epochs, 1 steps" in out  # stopped inside epoch 1 (2 steps per epoch)
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["train"]["max_steps"] == 1 and saved["train"]["out_dir"] == str(run)
    assert (run / "checkpoints" / "last" / "model.safetensors").is_file()
