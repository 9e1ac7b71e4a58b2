"""configs/ct_nodule.yaml loads with every key known to medseg.config."""

from __future__ import annotations

from pathlib import Path

from medseg.config import load_config


def test_ct_nodule_config_loads(repo_root: Path) -> None:
    cfg = load_config(repo_root / "configs" / "ct_nodule.yaml")
    assert cfg.labels == {1: "lung", 2: "nodule"}
    assert cfg.model.num_classes == 3 and cfg.model.in_channels == cfg.data.context_slices == 3
    assert cfg.data.task == "ct" and cfg.data.foreground_fraction >= 0.9
    assert cfg.train.loss == "dicefocal"
    assert cfg.infer.keep_largest is False
