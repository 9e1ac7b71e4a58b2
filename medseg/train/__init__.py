"""Training: ``train(config, resume=..., callbacks=...) -> RunResult`` (also ``medseg.train``).

Config-driven fine-tuning of the U-Net (MONAI losses, AdamW with discriminative learning rates,
warm-up + cosine schedule), bf16/fp16 mixed precision, validation on the original image grid,
best/last checkpoints, resumable runs (also after SLURM pre-emption, exit code 75) and DDP under
``torchrun``. See :mod:`medseg.train.trainer` and ``docs/training.md``.
"""

from medseg.train.callbacks import Callback, TrainState
from medseg.train.preempt import EXIT_PREEMPTED, TrainingPreempted
from medseg.train.trainer import RunResult, train

__all__ = ["train", "RunResult", "Callback", "TrainState", "TrainingPreempted", "EXIT_PREEMPTED"]


def _make_package_callable() -> None:
    """Let ``medseg.train(config)`` call :func:`train` although ``medseg.train`` is this package.

    Importing the package binds ``medseg.train`` to the module, which would shadow the function the
    API promises; a module subclass with ``__call__`` keeps both spellings working.
    """
    import sys
    import types

    class _CallableModule(types.ModuleType):
        def __call__(self, *args: object, **kwargs: object) -> RunResult:
            return train(*args, **kwargs)  # type: ignore[arg-type]

    sys.modules[__name__].__class__ = _CallableModule


_make_package_callable()
