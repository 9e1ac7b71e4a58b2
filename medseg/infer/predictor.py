"""The :class:`Predictor`: a checkpoint folder + an :class:`~medseg.image.Image` -> a :class:`Prediction`.

It uses the checkpoint's own preprocessing (:func:`medseg.data.preprocess.prepare_inputs`, the very
function training validates with), runs the network with MONAI's ``SlidingWindowInferer`` (windows
of the training size; an image smaller than that is padded, a larger one tiled), optionally
averages a left-right flip (test-time augmentation), maps probabilities back onto the input's exact
grid and post-processes the labels (:mod:`medseg.infer.postprocess`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from importlib import resources
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medseg.config import Config
from medseg.errors import CheckpointError, InputError
from medseg.structures import LabelMap
from medseg.image import Image
from medseg.infer.postprocess import postprocess_labels, summarise_labels
from medseg.metrics import case_uncertainty
from medseg.utils import resolve_device

log = logging.getLogger(__name__)

__all__ = ["Prediction", "Predictor", "shipped_checkpoint", "SHIPPED_MODELS"]

#: shipped checkpoint folder (inside ``medseg/weights``) per task
SHIPPED_MODELS = {"cxr": "cxr_lung", "ct": "ct_lung"}


def shipped_checkpoint(task: str) -> Path:
    """Folder of the model shipped with medseg for ``task`` ("cxr" or "ct")."""
    name = SHIPPED_MODELS.get(task)
    if name is None:
        raise CheckpointError(f"no shipped model for task {task!r}", hint=f"use one of {sorted(SHIPPED_MODELS)}")
    folder = Path(str(resources.files("medseg") / "weights" / name))
    if not (folder / "config.json").is_file():
        raise CheckpointError(
            "the shipped model is not installed",
            path=folder,
            hint="reinstall medseg, or pass --checkpoint with a trained checkpoint folder",
        )
    return folder


def task_for_image(image: Image) -> str:
    """"ct" for volumes, "cxr" for 2-D radiographs/pictures."""
    return "ct" if image.ndim == 3 else "cxr"


@dataclass
class Prediction:
    """The result of :meth:`Predictor.predict`.

    Attributes:
        labels: label ``Image`` on the input's exact geometry (same shape and affine).
        probabilities: float32 ``(K, *image.shape)`` class probabilities (K includes background).
        label_names: label value -> structure name.
        summary: per structure: ``voxels``, ``components`` and ``volume_ml`` (3-D) or ``area_cm2``
            (2-D with known spacing; ``area_px`` otherwise).
        uncertainty: :func:`medseg.metrics.case_uncertainty` of the output: normalised mean
            entropy (``entropy``, ``entropy_fg``) and, with flip TTA, ``tta_disagreement`` (1 - Dice
            of the plain and the flipped prediction); ``uncertainty`` is the ranking score in [0, 1].
        seconds: wall time of the prediction.
    """

    labels: Image
    probabilities: np.ndarray
    label_names: dict[int, str]
    summary: dict[str, dict[str, float]]
    uncertainty: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0


def _swap_left_right(probs: torch.Tensor, label_names: LabelMap | dict[int, str]) -> torch.Tensor:
    """Swap left/right channel pairs (a mirrored image turns the left lung into the right one)."""
    return probs[:, LabelMap.coerce(label_names).mirror_permutation(probs.shape[1])]


class Predictor:
    """Segment images with a trained medseg checkpoint.

    Args:
        model: the network (``(B, C, H, W) -> (B, K, H, W)`` logits).
        config: the checkpoint's :class:`~medseg.config.Config` (preprocessing, labels, infer defaults).
        device: "auto", "cpu", "cuda", ...
        batch_size: windows per forward pass (default: ``config.infer.batch_size``).
        tta_flip: average with the left-right flipped prediction (default: ``config.infer.tta_flip``).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        config: Config,
        *,
        device: str = "auto",
        batch_size: int | None = None,
        tta_flip: bool | None = None,
        name: str = "medseg",
    ) -> None:
        self.config = config
        self.device = torch.device(resolve_device(device))
        self.model = model.to(self.device).eval()
        self.batch_size = batch_size or config.infer.batch_size
        self.tta_flip = config.infer.tta_flip if tta_flip is None else tta_flip
        self.name = name
        self.label_names = {int(k): v for k, v in config.labels.items()}

    @classmethod
    def from_checkpoint(
        cls,
        path: str | PathLike[str] | None = None,
        *,
        task: str = "cxr",
        device: str = "auto",
        **kwargs: Any,
    ) -> Predictor:
        """Load a checkpoint folder; ``path=None`` loads the model shipped for ``task``."""
        from medseg.models import load_checkpoint

        folder = Path(path) if path is not None else shipped_checkpoint(task)
        loaded = load_checkpoint(folder, device="cpu")
        return cls(loaded.model, loaded.config, device=device, name=folder.name, **kwargs)

    @property
    def task(self) -> str:
        return self.config.data.task

    def _check_input(self, image: Image) -> None:
        src = image.source.path or "image"
        if image.kind != "intensity":
            raise InputError("expected an intensity image, got a label map", path=src, hint="pass the scan, not a mask")
        if self.task == "cxr" and image.ndim != 2:
            raise InputError(
                f"this model segments 2-D radiographs, got a {image.ndim}-D image {image.shape}",
                path=src,
                hint="use a CT model (e.g. the shipped 'ct' model) for volumes",
            )
        if self.task == "ct" and image.ndim != 3:
            raise InputError(
                f"this model segments CT volumes, got a {image.ndim}-D image",
                path=src,
                hint="use a chest X-ray model for radiographs",
            )
        if np.issubdtype(image.array.dtype, np.floating) and not np.isfinite(image.array).all():
            raise InputError("the image contains NaN or infinite values", path=src, hint="fix or mask them first")

    @torch.no_grad()
    def _infer(self, x: torch.Tensor) -> torch.Tensor:
        """Softmax probabilities for a batch of prepared inputs ``(N, C, H, W)`` -> ``(N, K, H, W)``."""
        from monai.inferers import SlidingWindowInferer

        roi = tuple(int(s) for s in self.config.data.image_size)
        inferer = SlidingWindowInferer(
            roi_size=roi,
            sw_batch_size=self.batch_size,
            overlap=self.config.infer.sliding_window_overlap,
            mode="gaussian",
            padding_mode="constant",
        )

        def net(t: torch.Tensor) -> torch.Tensor:
            return torch.softmax(self.model(t).float(), dim=1)

        outs = []
        for start in range(0, x.shape[0], self.batch_size):
            chunk = x[start : start + self.batch_size].to(self.device)
            probs = inferer(chunk, net)
            assert isinstance(probs, torch.Tensor)
            if self.tta_flip:
                flipped = inferer(torch.flip(chunk, dims=[-1]), net)
                assert isinstance(flipped, torch.Tensor)
                flipped = _swap_left_right(torch.flip(flipped, dims=[-1]), self.label_names)
                probs = torch.stack([probs, flipped])  # averaged by the caller
            outs.append(probs.cpu())
        return torch.cat(outs, dim=-4)

    def predict(self, image: Image) -> Prediction:
        """Segment one image; the result lies on the input's exact geometry."""
        from medseg.data.preprocess import prepare_inputs, restore_outputs

        t0 = time.perf_counter()
        self._check_input(image)
        prepared = prepare_inputs(image, self.config)
        probs_t = self._infer(torch.as_tensor(prepared.tensor, dtype=torch.float32))
        if self.tta_flip:
            plain = np.asarray(restore_outputs(probs_t[0], prepared), dtype=np.float32)
            flipped = np.asarray(restore_outputs(probs_t[1], prepared), dtype=np.float32)
            uncertainty = case_uncertainty(plain, flipped)
            probs = 0.5 * (plain + flipped)
            del plain, flipped
        else:
            probs = np.asarray(restore_outputs(probs_t, prepared), dtype=np.float32)
            uncertainty = case_uncertainty(probs)
        raw = probs.argmax(axis=0).astype(np.uint8)
        labels_arr = postprocess_labels(
            raw,
            image,
            self.label_names,
            keep_largest=self.config.infer.keep_largest,
            fill_holes=self.config.infer.fill_holes,
        )
        labels = Image(labels_arr.astype(np.uint8), image.affine, "label", image.modality, image.source)
        seconds = time.perf_counter() - t0
        log.info("predicted %s in %.2f s", image.source.path or "image", seconds)
        return Prediction(
            labels=labels,
            probabilities=probs,
            label_names=self.label_names,
            summary=summarise_labels(labels, self.label_names),
            uncertainty=uncertainty,
            seconds=seconds,
        )
