"""Shared fixtures: the real-data folder beside the repo and the GPU marker."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO / ".." / "shared" / "data").resolve()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    import torch

    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (real datasets with PROVENANCE.md); tests skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} not present")
    return SHARED_DATA


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


def _tiny_checkpoint(folder: Path, overrides: list[str], bias: list[float]) -> Path:
    """An untrained tiny-input model whose head bias makes it predict ``argmax(bias)`` everywhere."""
    import torch

    from medseg.config import load_config
    from medseg.models import build_model, save_checkpoint

    cfg = load_config(None, ["model.encoder_weights=none", *overrides])
    model = build_model(cfg.model).eval()
    with torch.no_grad():
        model.segmentation_head[0].bias.copy_(torch.tensor(bias))
    return save_checkpoint(folder, model, cfg)


@pytest.fixture(scope="session")
def tiny_cxr_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 64-px radiograph "model" that labels everything right lung (fast, deterministic)."""
    return _tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny_cxr", ["data.image_size=[64, 64]"],
                            [0.0, 30.0, 0.0])


@pytest.fixture(scope="session")
def tiny_ct_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2.5-D CT "model" (3 slices, 64 px at 6 mm) that labels everything right lung."""
    return _tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny_ct",
                            ["data.task=ct", "model.in_channels=3", "data.context_slices=3",
                             "data.image_size=[64, 64]", "data.spacing_mm=6.0"], [0.0, 30.0, 0.0])
