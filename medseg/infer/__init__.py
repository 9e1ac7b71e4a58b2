"""Inference: :class:`Predictor` turns a checkpoint and an :class:`~medseg.image.Image` into a :class:`Prediction`."""

from medseg.infer.postprocess import postprocess_labels, summarise_labels
from medseg.infer.predictor import SHIPPED_MODELS, Prediction, Predictor, shipped_checkpoint, task_for_image

__all__ = [
    "Prediction",
    "Predictor",
    "SHIPPED_MODELS",
    "postprocess_labels",
    "shipped_checkpoint",
    "summarise_labels",
    "task_for_image",
]
