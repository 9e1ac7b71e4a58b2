"""Stopping and resuming gives the same weights as an uninterrupted run (CPU, fp32)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest
import torch

from medseg.models import load_checkpoint
from medseg.training import Callback, TrainState, train

# augmentation (numpy RNG per sample) and decoder dropout (torch RNG) both on, validation in between
SECTIONS: dict[str, Any] = {
    "model": {"dropout": 0.2},
    "data": {"augment": {"affine_prob": 1.0, "intensity_prob": 1.0}},
}


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run_dir / "checkpoints" / "last").model.state_dict()


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    worst = max(float((a[k].double() - b[k].double()).abs().max()) for k in a if a[k].numel())
    assert worst <= 1e-6, worst


class _Crash(Callback):
    def __init__(self, at_step: int) -> None:
        self.at_step = at_step

    def on_step_end(self, state: TrainState) -> None:
        if state.step == self.at_step:
            raise RuntimeError("simulated crash")


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, config_factory: Any) -> tuple[Path, Any]:
    run = tmp_path_factory.mktemp("ref") / "run"
    result = train(config_factory(run, **SECTIONS))
    assert result.steps == 4 and result.epochs == 2 and result.stop_reason == "completed"
    return run, result


def test_resume_mid_epoch_equals_uninterrupted(reference: tuple[Path, Any], make_config: Any) -> None:
    ref_dir, ref = reference
    first = train(make_config(**SECTIONS, train={"max_steps": 3}))
    assert first.steps == 3 and first.stop_reason == "max_steps" and first.epochs == 1
    early, final = _weights(first.run_dir), _weights(ref_dir)
    assert any(not torch.equal(early[k], final[k]) for k in final)  # it really stopped one step short
    resumed = train(make_config(**SECTIONS), resume=first.run_dir)
    assert resumed.steps == 4 and resumed.epochs == 2
    _assert_same(_weights(resumed.run_dir), _weights(ref_dir))
    # metrics.csv holds each completed epoch once (the partial epoch-2 row was dropped on resume)
    with (resumed.run_dir / "metrics.csv").open() as f:
        assert [r["epoch"] for r in csv.DictReader(f)] == ["1", "2"]
    assert [r["epoch"] for r in resumed.history] == [1, 2]
    assert resumed.history[1]["train_loss"] == pytest.approx(ref.history[1]["train_loss"], rel=1e-5)


def test_resume_after_crash_equals_uninterrupted(reference: tuple[Path, Any], make_config: Any) -> None:
    ref_dir, _ = reference
    cfg = make_config(**SECTIONS)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(cfg, callbacks=[_Crash(at_step=3)])
    state = torch.load(Path(cfg.train.out_dir) / "state.pt", weights_only=True)
    assert state["counters"]["step"] == 2 and state["counters"]["epoch"] == 1  # last save: end of epoch 1
    resumed = train(cfg, resume="auto")
    assert resumed.steps == 4
    _assert_same(_weights(resumed.run_dir), _weights(ref_dir))
