"""Tiny real-data training set-ups: four small chest X-rays to train on and one to validate, 64x64."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from medseg.config import Config, config_from_dict
from medseg.data.manifest import ManifestEntry, write_manifest

TRAIN_STEMS = ["kjr-21-e24-g001-l-a", "kjr-21-e24-g002-l-a", "kjr-21-e24-g003-l-a", "kjr-21-e25-g001-l-a"]
VAL_STEM = "covid-19-pneumonia-evolution-over-a-week-1-day0-PA"


@pytest.fixture(scope="session")
def cxr_manifest(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = shared_data / "cxr_lung_covid19_gb"
    entries = [
        ManifestEntry(d / "images" / f"{s}.jpg", d / "masks" / f"{s}_lungs.png", "train", f"p{i}")
        for i, s in enumerate(TRAIN_STEMS)
    ]
    entries.append(ManifestEntry(d / "images" / f"{VAL_STEM}.jpg", d / "masks" / f"{VAL_STEM}_lungs.png", "val", "pv"))
    return write_manifest(entries, tmp_path_factory.mktemp("manifest") / "manifest.csv")


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def tiny_config(manifest: Path, out_dir: Path, **sections: dict[str, Any]) -> Config:
    """A CPU-sized config: 64x64, batch 2 (2 steps/epoch), small decoder, random init, no progress bar."""
    base: dict[str, Any] = {
        "model": {"encoder_weights": "none", "decoder_channels": [32, 16, 16, 8, 8]},
        "data": {"manifest": str(manifest), "image_size": [64, 64], "batch_size": 2, "cache": "memory"},
        "optim": {"warmup_epochs": 1},
        "train": {"epochs": 2, "out_dir": str(out_dir), "progress": False, "log_every": 0, "device": "cpu"},
        "infer": {"batch_size": 2},
    }
    return config_from_dict(_merge(base, sections)).validate()


@pytest.fixture
def make_config(cxr_manifest: Path, tmp_path: Path) -> Any:
    """``make_config(run_name="run", **sections)`` -> :func:`tiny_config` with the run folder in ``tmp_path``."""

    def make(run_name: str = "run", **sections: dict[str, Any]) -> Config:
        return tiny_config(cxr_manifest, tmp_path / run_name, **sections)

    return make


@pytest.fixture(scope="session")
def config_factory(cxr_manifest: Path) -> Any:
    """``config_factory(out_dir, **sections)`` for module/session-scoped runs."""

    def make(out_dir: Path, **sections: dict[str, Any]) -> Config:
        return tiny_config(cxr_manifest, out_dir, **sections)

    return make
