"""Mixed precision: bf16 autocast trains on CPU; fp16 needs CUDA (GradScaler path tested on a GPU)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

from medseg.errors import ConfigError
from medseg.training import Callback, TrainState, train


class _OutputDtypes(Callback):
    """Records the dtype of the network's logits (forward hook) and the loss per step."""

    def __init__(self) -> None:
        self.dtypes: list[torch.dtype] = []
        self.losses: list[float] = []

    def on_train_start(self, state: TrainState) -> None:
        state.model.register_forward_hook(lambda m, i, o: self.dtypes.append(o.dtype))

    def on_step_end(self, state: TrainState) -> None:
        self.losses.append(state.loss)


# one batch of the 4 training images (32x32) per epoch, no augmentation, constant lr: the loss must go down
OVERFIT: dict[str, Any] = {
    "data": {"batch_size": 4, "image_size": [32, 32], "augment": {"enabled": False}},
    "optim": {"lr": 3e-3, "warmup_epochs": 0, "schedule": "constant"},
    "train": {"epochs": 5, "val_every": 100},
}


def test_bf16_autocast_trains_on_cpu(make_config: Any) -> None:
    rec = _OutputDtypes()
    result = train(make_config(**{**OVERFIT, "train": {**OVERFIT["train"], "amp": "bf16"}}), callbacks=[rec])
    assert torch.bfloat16 in rec.dtypes  # the forward pass ran under bf16 autocast
    assert len(rec.losses) == 5 and all(math.isfinite(v) for v in rec.losses)
    assert rec.losses[-1] < 0.9 * rec.losses[0], rec.losses
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]


def test_fp16_on_cpu_is_a_config_error(make_config: Any) -> None:
    with pytest.raises(ConfigError, match=r"train\.amp.*CUDA.*bf16"):
        train(make_config(train={"amp": "fp16", "device": "cpu"}))


@pytest.mark.gpu
def test_fp16_gradscaler_on_cuda(make_config: Any) -> None:
    rec = _OutputDtypes()
    cfg = make_config(**{**OVERFIT, "train": {**OVERFIT["train"], "amp": "fp16", "device": "cuda", "epochs": 3}})
    result = train(cfg, callbacks=[rec])
    assert torch.float16 in rec.dtypes and all(math.isfinite(v) for v in rec.losses)
    assert rec.losses[-1] < rec.losses[0]
    state = torch.load(Path(result.run_dir) / "state.pt", weights_only=True)
    assert state["scaler"]["scale"] > 0  # the GradScaler state is saved for resuming
