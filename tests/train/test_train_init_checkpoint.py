"""train.init_checkpoint: fine-tune a trained model on a grown data set (active-learning loop)."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from medseg.errors import CheckpointError
from medseg.models import load_checkpoint
from medseg.training import Callback, TrainState, train


class Snapshot(Callback):
    def __init__(self) -> None:
        self.weights: dict[str, torch.Tensor] = {}

    def on_train_start(self, state: TrainState) -> None:
        self.weights = {k: v.detach().clone() for k, v in state.model.state_dict().items()}


def test_second_round_starts_from_the_first_rounds_weights(make_config: Any) -> None:
    first = train(make_config("round0", train={"max_steps": 2, "epochs": 1}))
    assert first.last_checkpoint is not None
    snap = Snapshot()
    cfg = make_config("round1", train={"max_steps": 1, "epochs": 1, "init_checkpoint": str(first.last_checkpoint)})
    train(cfg, callbacks=[snap])
    ref = load_checkpoint(first.last_checkpoint).model.state_dict()
    for k, v in ref.items():
        assert torch.equal(snap.weights[k].cpu(), v), k
    # without init_checkpoint the start differs (a fresh random init)
    fresh = Snapshot()
    train(make_config("fresh", train={"max_steps": 1, "epochs": 1, "seed": 1}), callbacks=[fresh])
    assert any(not torch.equal(fresh.weights[k].cpu(), v) for k, v in ref.items())


def test_mismatched_checkpoint_is_a_checkpoint_error(make_config: Any) -> None:
    first = train(make_config("r0", train={"max_steps": 1, "epochs": 1}))
    cfg = make_config("r1", model={"decoder_channels": [64, 32, 16, 8, 8]},
                      train={"max_steps": 1, "init_checkpoint": str(first.last_checkpoint)})
    with pytest.raises(CheckpointError, match="does not match"):
        train(cfg)
