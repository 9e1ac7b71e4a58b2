"""Encoder freezing, discriminative warm-up/cosine learning rates, and a tiny 2.5-D CT run end to end."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import SimpleITK as sitk
import torch

from medseg.config import config_from_dict
from medseg.data.manifest import ManifestEntry, write_manifest
from medseg.models import load_checkpoint
from medseg.training import Callback, TrainState, train
from medseg.training.optim import lr_factor


class _Snapshots(Callback):
    def __init__(self) -> None:
        self.snaps: list[dict[str, torch.Tensor]] = []
        self.lrs: list[dict[str, float]] = []

    def _snap(self, state: TrainState) -> None:
        self.snaps.append({k: v.detach().clone() for k, v in state.model.state_dict().items()})

    def on_train_start(self, state: TrainState) -> None:
        self._snap(state)

    def on_step_end(self, state: TrainState) -> None:
        self.lrs.append({g["name"]: g["lr"] for g in state.optimizer.param_groups})

    def on_epoch_end(self, state: TrainState, row: dict[str, float]) -> None:
        self._snap(state)


def _changed(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], prefix: str) -> bool:
    return any(not torch.equal(a[k], b[k]) for k in a if k.startswith(prefix) and a[k].is_floating_point())


def test_frozen_encoder_then_unfrozen_with_discriminative_lr(make_config: Any) -> None:
    rec = _Snapshots()
    cfg = make_config(train={"epochs": 2, "freeze_encoder_epochs": 1, "val_every": 5},
                      optim={"lr": 1e-3, "encoder_lr_mult": 0.1, "warmup_epochs": 1})
    train(cfg, callbacks=[rec])
    start, after1, after2 = rec.snaps
    assert not _changed(start, after1, "encoder.")  # weights and BatchNorm statistics untouched while frozen
    assert _changed(start, after1, "decoder.")
    assert _changed(after1, after2, "encoder.")  # trained after unfreezing
    # 2 steps/epoch: warm-up over epoch 1 (factor 1/2 then 1 after the first step), cosine to 0 over the run
    decoder = [lr["decoder"] for lr in rec.lrs]
    expected = [1e-3 * lr_factor(s, total_steps=4, warmup_steps=2, schedule="cosine") for s in range(1, 5)]
    assert decoder == pytest.approx(expected)
    assert decoder[-1] == pytest.approx(0.0, abs=1e-12)
    for lr in rec.lrs:
        assert lr["encoder"] == pytest.approx(0.1 * lr["decoder"])


def test_lr_factor_shape() -> None:
    f = [lr_factor(s, total_steps=10, warmup_steps=4, schedule="cosine") for s in range(11)]
    assert f[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert f[4] == 1.0 and f[7] == pytest.approx(0.5) and f[10] == pytest.approx(0.0)
    assert all(a >= b for a, b in zip(f[4:], f[5:], strict=False))
    assert lr_factor(9, total_steps=10, warmup_steps=4, schedule="constant") == 1.0


@pytest.fixture(scope="module")
def ct_manifest(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two real CT crops (12 slices across a lung base, every 4th pixel in-plane): one trains, one validates."""
    out = tmp_path_factory.mktemp("ct")
    entries = []
    for case, z0, split in (("LUNG1-002", 88, "train"), ("LUNG1-003", 68, "val")):
        src = shared_data / "ct_lung_nsclc_radiomics" / case
        (out / case).mkdir()
        for name in ("ct.nii.gz", "lung_label.nii.gz"):
            sitk.WriteImage(sitk.ReadImage(str(src / name))[::4, ::4, z0 : z0 + 12], str(out / case / name))
        entries.append(ManifestEntry(out / case / "ct.nii.gz", out / case / "lung_label.nii.gz", split, case))
    return write_manifest(entries, out / "manifest.csv")


def test_ct_25d_training_end_to_end(ct_manifest: Path, tmp_path: Path) -> None:
    cfg = config_from_dict({
        "data": {"task": "ct", "manifest": str(ct_manifest), "context_slices": 3, "image_size": [64, 64],
                 "slices_per_volume": 4, "batch_size": 2, "foreground_fraction": 0.5},
        "model": {"in_channels": 3, "encoder_weights": "none", "decoder_channels": [32, 16, 16, 8, 8]},
        "train": {"epochs": 1, "out_dir": str(tmp_path / "run"), "progress": False, "device": "cpu"},
        "infer": {"batch_size": 4},
    }).validate()
    result = train(cfg)
    assert result.steps == 2 and result.epochs == 1
    row = result.history[0]
    assert math.isfinite(row["train_loss"]) and {"dice_right_lung", "dice_left_lung", "hd95"} <= row.keys()
    loaded = load_checkpoint(result.last_checkpoint)  # type: ignore[arg-type]
    assert loaded.config.data.task == "ct" and loaded.info["training"]["step"] == 2
    assert loaded.info["training"]["metrics"]["dice"] == pytest.approx(row["dice"], nan_ok=True)
