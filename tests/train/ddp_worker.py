"""Entry point for the 2-process DDP test (run by torchrun): train, then dump what this rank saw.

Usage: torchrun --standalone --nproc-per-node 2 ddp_worker.py CONFIG.yaml OUT_DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from medseg.config import load_config
from medseg.training import Callback, TrainState, train


class Record(Callback):
    def __init__(self, out: Path) -> None:
        self.out = out
        self.ids: list[list[str]] = []

    def on_step_end(self, state: TrainState) -> None:
        self.ids.append(list(state.batch_ids))

    def on_train_end(self, state: TrainState) -> None:
        torch.save(
            {
                "ids": self.ids,
                "weights": {k: v.detach().clone() for k, v in state.model.state_dict().items()},
                "metrics": dict(state.metrics),
                "world_size": state.world_size,
                "step": state.step,
            },
            self.out / f"rank{state.rank}.pt",
        )


if __name__ == "__main__":
    result = train(load_config(sys.argv[1]), callbacks=[Record(Path(sys.argv[2]))])
    print(f"rank done: {result.steps} steps")
