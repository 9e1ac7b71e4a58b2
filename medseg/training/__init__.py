"""Training: ``train(config, resume=..., callbacks=...) -> RunResult`` (also ``medseg.train(config)``).

Config-driven fine-tuning of the U-Net (MONAI losses, AdamW with discriminative learning rates,
warm-up + cosine schedule), bf16/fp16 mixed precision, validation on the original image grid,
best/last checkpoints, resumable runs (also after SLURM pre-emption, exit code 75) and DDP under
``torchrun``. See :mod:`medseg.training.trainer` and ``docs/training.md``.
"""

from medseg.training.callbacks import Callback, TrainState
from medseg.training.preempt import EXIT_PREEMPTED, TrainingPreempted
from medseg.training.trainer import RunResult, train

__all__ = ["train", "RunResult", "Callback", "TrainState", "TrainingPreempted", "EXIT_PREEMPTED"]

