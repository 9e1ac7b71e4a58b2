"""The :class:`Predictor`: a checkpoint folder + an :class:`~medseg.image.Image` -> a :class:`Prediction`.

It uses the checkpoint's own preprocessing (:mod:`medseg.data.preprocess`, the very functions
training validates with) and costs little more than one network pass per slice:

* **Grid and windows** (``infer.*``, see :class:`~medseg.config.InferConfig`): a CT slice is
  resampled to ``infer.spacing_mm`` (0 = the training spacing ``data.spacing_mm``) and, by default,
  the whole slice goes through the network in one forward (padded to a multiple of 32; the U-Net is
  fully convolutional) instead of overlapping ``data.image_size`` windows with Gaussian blending
  (``infer.window="sliding"`` keeps MONAI's ``SlidingWindowInferer``); only the body's bounding box
  (``infer.body_crop``: voxels above ``infer.body_hu``, per chunk) goes through the network, the air
  around it is background. A radiograph is resized to ``data.image_size``, i.e. one window.
* **Streaming**: a CT volume goes through in chunks of ``infer.chunk_slices`` axial slices:
  prepare (:func:`~medseg.data.preprocess.prepare_slab`), infer (batches of ``infer.batch_size``),
  restore onto the input grid (bilinear, on the network's device), argmax to uint8 labels and
  accumulate the uncertainty summary. Full-resolution float32 probabilities of every class for the
  whole volume exist only when asked for (``predict(image, return_probabilities=True)``); memory
  does not grow with the number of slices beyond the uint8 label map.
* **Precision** (``infer.precision="auto"``): fp32 on CPU (bf16 autocast was measured ~2x slower
  on CPUs without AMX/avx512_bf16; see docs/benchmarks.md), fp16 autocast on CUDA; channels_last
  memory format; ``torch.inference_mode``; optional ``torch.compile`` (``infer.compile``).
* Optional left-right flip test-time augmentation, then post-processing of the labels
  (:mod:`medseg.infer.postprocess`).

Progress: ``Predictor(..., progress=fn)`` (or ``predict(..., progress=fn)``) calls
``fn(done_slices, total_slices)`` after every chunk (``(1, 1)`` for a radiograph), and the
``medseg.infer.predictor`` logger writes a line at every quarter of a large volume.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import resources
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from medseg.config import Config
from medseg.errors import CheckpointError, ConfigError, InputError
from medseg.image import Image
from medseg.infer.postprocess import decision_shape, postprocess_labels, refine_labels, summarise_labels
from medseg.structures import LabelMap
from medseg.utils import resolve_device

log = logging.getLogger(__name__)

__all__ = ["Prediction", "Predictor", "ProgressHook", "shipped_checkpoint", "SHIPPED_MODELS"]

#: shipped checkpoint folder (inside ``medseg/weights``) per task
SHIPPED_MODELS = {"cxr": "cxr_lung", "ct": "ct_lung"}

#: ``progress(done, total)``: axial slices done out of the volume's total (``(1, 1)`` for a radiograph)
ProgressHook = Callable[[int, int], None]


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


class Prediction:
    """The result of :meth:`Predictor.predict`.

    Attributes:
        labels: label ``Image`` on the input's exact geometry (same shape and affine).
        probabilities: float32 ``(K, *image.shape)`` class probabilities (K includes background).
            Computed during the prediction only with ``predict(..., return_probabilities=True)``;
            otherwise the first access runs the prediction again to produce them (logged), so
            callers that need them should ask up front.
        label_names: label value -> structure name.
        summary: per structure: ``voxels``, ``components`` and ``volume_ml`` (3-D) or ``area_cm2``
            (2-D with known spacing; ``area_px`` otherwise).
        uncertainty: the values of :func:`medseg.metrics.case_uncertainty` of the output (computed
            streaming, chunk by chunk): normalised mean entropy (``entropy``, ``entropy_fg``) and,
            with flip TTA, ``tta_disagreement`` (1 - Dice of the plain and the flipped prediction)
            and ``tta_prob_diff``; ``uncertainty`` is the ranking score in [0, 1].
        seconds: wall time of the prediction.
    """

    def __init__(
        self,
        labels: Image,
        probabilities: np.ndarray | None = None,
        label_names: dict[int, str] | None = None,
        summary: dict[str, dict[str, float]] | None = None,
        uncertainty: dict[str, float] | None = None,
        seconds: float = 0.0,
        *,
        compute_probabilities: Callable[[], np.ndarray] | None = None,
    ) -> None:
        self.labels = labels
        self._probabilities = probabilities
        self._compute_probabilities = compute_probabilities
        self.label_names = dict(label_names or {})
        self.summary = dict(summary or {})
        self.uncertainty = dict(uncertainty or {})
        self.seconds = seconds

    @property
    def has_probabilities(self) -> bool:
        """Whether the probabilities are already at hand (no second pass on access)."""
        return self._probabilities is not None

    @property
    def probabilities(self) -> np.ndarray:
        if self._probabilities is None:
            if self._compute_probabilities is None:
                raise InputError(
                    "this prediction holds no probabilities",
                    hint="call Predictor.predict(image, return_probabilities=True)",
                )
            log.info("probabilities were not kept: predicting again to produce them "
                     "(pass return_probabilities=True to avoid the second pass)")
            self._probabilities = self._compute_probabilities()
            self._compute_probabilities = None
        return self._probabilities

    @probabilities.setter
    def probabilities(self, value: np.ndarray) -> None:
        self._probabilities = value
        self._compute_probabilities = None

    def __repr__(self) -> str:
        return (f"Prediction(labels={self.labels!r}, label_names={self.label_names!r}, "
                f"uncertainty={self.uncertainty!r}, seconds={self.seconds:.3f})")


def _argmax_classes(probs: torch.Tensor) -> torch.Tensor:
    """uint8 argmax over the class axis of ``(n, K, y, x)`` -> ``(n, y, x)`` (ties: the lower class).

    Hand-written: torch's ``argmax`` over a short, strided class axis is ~5x slower on CPU than these
    K - 1 elementwise comparisons (1.6 s vs 0.3 s for a 3-class 2000x2000 radiograph).
    """
    best = probs[:, 0].clone()
    idx = torch.zeros(best.shape, dtype=torch.uint8, device=probs.device)
    for c in range(1, probs.shape[1]):
        better = probs[:, c] > best
        idx.masked_fill_(better, c)
        torch.maximum(best, probs[:, c], out=best)
    return idx


def _resized_radiograph(image: Image, grid: tuple[int, int], pixels: bool = True) -> Image:
    """``image`` (``(y, x)``) averaged down to ``grid`` (area interpolation), same field of view,
    provenance and orientation: what the post-processing looks at on the decision grid. With
    ``pixels=False`` only the geometry is kept (zeros: post-processing without the gas rule reads
    no pixel, and averaging a 2000 x 2000 film down costs a fifth of a forward pass)."""
    if tuple(image.shape) == tuple(grid):
        return image
    if pixels:
        arr = torch.from_numpy(np.array(image.array, dtype=np.float32))[None, None]
        small = torch.nn.functional.interpolate(arr, size=grid, mode="area")[0, 0].numpy()
    else:
        small = np.zeros(grid, np.float32)
    scale = np.array([image.shape[1] / grid[1], image.shape[0] / grid[0]])
    affine = np.array(image.affine, dtype=np.float64)
    affine[:2, 2] = affine[:2, 2] + affine[:2, :2] @ ((scale - 1.0) / 2.0)
    affine[:2, :2] = affine[:2, :2] * scale[None, :]
    return Image(small, affine, image.kind, image.modality, image.source)


def _fit32(lo: int, hi: int, n: int) -> tuple[int, int]:
    """Widen ``[lo, hi)`` to a length that is a multiple of 32 inside ``[0, n)`` (or all of it)."""
    length = -(-(hi - lo) // 32) * 32
    if length >= n:
        return 0, n
    start = min(max(0, lo - (length - (hi - lo)) // 2), n - length)
    return start, start + length


def _swap_left_right(probs: torch.Tensor, label_names: LabelMap | dict[int, str]) -> torch.Tensor:
    """Swap left/right channel pairs (a mirrored image turns the left lung into the right one)."""
    return probs[:, LabelMap.coerce(label_names).mirror_permutation(probs.shape[1])]


@dataclass
class _UncertaintyStats:
    """Streaming sums behind :func:`medseg.metrics.case_uncertainty` (same definitions, summed per chunk).

    Hand-written because ``case_uncertainty`` needs the whole ``(K, ...)`` probability volume at
    once; here each restored chunk ``(n, K, y, x)`` is added and dropped.
    """

    k: int
    tta: bool
    voxels: int = 0
    entropy: float = 0.0
    fg_voxels: int = 0
    fg_entropy: float = 0.0
    prob_diff: float = 0.0
    size_a: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    size_b: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    overlap: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def __post_init__(self) -> None:
        self.size_a, self.size_b, self.overlap = (np.zeros(self.k, np.int64) for _ in range(3))

    def add(
        self,
        probs: torch.Tensor,
        arg: torch.Tensor,
        flipped: torch.Tensor | None = None,
        arg_b: torch.Tensor | None = None,
    ) -> None:
        """``probs`` (and the flipped-back TTA ``flipped``): ``(n, K, y, x)`` probabilities; ``arg``,
        ``arg_b``: their argmax ``(n, y, x)``."""
        p = probs.float()
        ent = torch.special.xlogy(p, p).sum(dim=1)  # -entropy * log K, (n, y, x); 0 log 0 = 0
        fg = arg != 0
        scale = -1.0 / math.log(self.k)
        self.voxels += ent.numel()
        self.entropy += scale * float(ent.sum(dtype=torch.float64))
        self.fg_voxels += int(fg.sum())
        self.fg_entropy += scale * float(ent[fg].sum(dtype=torch.float64))
        if flipped is None or arg_b is None:
            return
        q = flipped.float()
        self.prob_diff += 0.5 * float((p - q).abs().sum(dtype=torch.float64))
        for c in range(1, self.k):
            a, b = arg == c, arg_b == c
            self.size_a[c] += int(a.sum())
            self.size_b[c] += int(b.sum())
            self.overlap[c] += int((a & b).sum())

    def result(self) -> dict[str, float]:
        out = {
            "entropy": self.entropy / max(1, self.voxels),
            "entropy_fg": self.fg_entropy / self.fg_voxels if self.fg_voxels else 0.0,
        }
        if not self.tta:
            out["uncertainty"] = out["entropy_fg"]
            return out
        present = [c for c in range(1, self.k) if self.size_a[c] + self.size_b[c] > 0]
        dices = [2.0 * self.overlap[c] / (self.size_a[c] + self.size_b[c]) for c in present]
        out["tta_disagreement"] = float(1.0 - np.mean(dices)) if dices else 0.0
        out["tta_prob_diff"] = self.prob_diff / max(1, self.voxels)
        out["uncertainty"] = 0.5 * (out["entropy_fg"] + out["tta_disagreement"])
        return out


class Predictor:
    """Segment images with a trained medseg checkpoint.

    Args:
        model: the network (``(B, C, H, W) -> (B, K, H, W)`` logits).
        config: the checkpoint's :class:`~medseg.config.Config` (preprocessing, labels, infer settings).
        device: "auto", "cpu", "cuda", ...
        batch_size: network inputs per forward pass (default: ``config.infer.batch_size``).
        tta_flip: average with the left-right flipped prediction (default: ``config.infer.tta_flip``).
        progress: ``progress(done_slices, total_slices)`` called after every chunk of every prediction.
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
        progress: ProgressHook | None = None,
    ) -> None:
        self.config = config
        self.device = torch.device(resolve_device(device))
        self.batch_size = max(1, int(batch_size or config.infer.batch_size))
        self.tta_flip = config.infer.tta_flip if tta_flip is None else tta_flip
        self.name = name
        self.progress = progress
        self.label_names = {int(k): v for k, v in config.labels.items()}
        infer = config.infer
        if infer.chunk_slices < 1:
            raise ConfigError(f"must be >= 1, got {infer.chunk_slices}", path="infer.chunk_slices")
        if infer.spacing_mm < 0:
            raise ConfigError(f"must be >= 0 (0 = training spacing), got {infer.spacing_mm}", path="infer.spacing_mm")
        self.amp_dtype = self._amp_dtype(infer.precision)
        self.channels_last = bool(infer.channels_last)
        model = model.to(self.device).eval()
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.model = model
        self._net: Callable[[torch.Tensor], torch.Tensor] = model
        if infer.compile:
            self._net = torch.compile(model, dynamic=True)  # type: ignore[assignment]

    def _amp_dtype(self, precision: str) -> torch.dtype | None:
        """Autocast dtype for ``infer.precision`` on this device (None = fp32)."""
        if precision == "auto":
            return torch.float16 if self.device.type == "cuda" else None
        if precision == "fp32":
            return None
        if precision == "bf16":
            return torch.bfloat16
        if precision == "fp16":
            if self.device.type == "cpu":
                raise ConfigError("fp16 autocast is for GPUs", path="infer.precision", hint="use fp32 or bf16 on CPU")
            return torch.float16
        raise ConfigError(f"unknown precision {precision!r}", path="infer.precision",
                          hint="one of auto, fp32, bf16, fp16")

    @classmethod
    def from_checkpoint(
        cls,
        path: str | PathLike[str] | None = None,
        *,
        task: str = "cxr",
        device: str = "auto",
        infer: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Predictor:
        """Load a checkpoint folder; ``path=None`` loads the model shipped for ``task``.

        ``infer`` overrides the checkpoint's ``infer.*`` settings (e.g. ``{"spacing_mm": 1.5,
        "window": "sliding"}``); they are validated like any config (``ConfigError`` naming the key).
        """
        from medseg.models import load_checkpoint

        folder = Path(path) if path is not None else shipped_checkpoint(task)
        loaded = load_checkpoint(folder, device="cpu")
        config = loaded.config
        if infer:
            from medseg.config import config_from_dict, config_to_dict

            data = config_to_dict(config)
            data["infer"] = {**data["infer"], **infer}
            config = config_from_dict(data).validate()
        return cls(loaded.model, config, device=device, name=folder.name, **kwargs)

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
        if min(image.shape) < 1:
            raise InputError(f"empty image {image.shape}", path=src)
        if np.issubdtype(image.array.dtype, np.floating) and not np.isfinite(image.array).all():
            raise InputError("the image contains NaN or infinite values", path=src, hint="fix or mask them first")

    # -- the network --------------------------------------------------------------------------

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def _whole(self, grid: tuple[int, int]) -> bool:
        window = self.config.infer.window
        if window == "whole":
            return True
        if window == "sliding":
            return False
        if window != "auto":
            raise ConfigError(f"unknown window {window!r}", path="infer.window", hint="one of auto, whole, sliding")
        return grid[0] * grid[1] <= self.config.infer.max_whole_px

    def _softmax_net(self, t: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            t = t.contiguous(memory_format=torch.channels_last)
        with self._autocast():
            logits = self._net(t)
        return torch.softmax(logits.float(), dim=1)

    def _forward_whole(self, x: torch.Tensor, box: tuple[int, int, int, int] | None = None) -> torch.Tensor:
        """``(n, C, H, W)`` on the device -> ``(n, K, H, W)`` probabilities, one forward per input.

        The grid is padded (edge replicated: air around a CT field of view) to a multiple of 32,
        the U-Net's total downsampling, and the output cropped back. With a ``box`` ``(r0, r1, c0, c1)``
        (the body, see :meth:`_body_box`) only that part of the grid, widened to multiples of 32, goes
        through the network; outside it the probabilities are background (1, 0, ...).
        """
        if box is not None:
            h, w = x.shape[-2:]
            r0, r1 = _fit32(box[0], box[1], h)
            c0, c1 = _fit32(box[2], box[3], w)
            if (r1 - r0) * (c1 - c0) < h * w:
                inner = self._forward_whole(x[..., r0:r1, c0:c1])
                probs = inner.new_zeros((x.shape[0], inner.shape[1], h, w))
                probs[:, 0] = 1.0
                probs[..., r0:r1, c0:c1] = inner
                return probs
        h, w = x.shape[-2:]
        ph, pw = -h % 32, -w % 32
        if ph or pw:
            top, left = ph // 2, pw // 2
            x = torch.nn.functional.pad(x, (left, pw - left, top, ph - top), mode="replicate")
        bs = self._whole_batch((h + ph, w + pw))
        outs = [self._softmax_net(x[s : s + bs]) for s in range(0, x.shape[0], bs)]
        probs = torch.cat(outs)
        if ph or pw:
            probs = probs[..., top : top + h, left : left + w]
        return probs

    def _whole_batch(self, padded: tuple[int, int]) -> int:
        """Inputs per forward for whole-slice windows: ``batch_size`` windows of ``data.image_size``
        worth of pixels (a 512x512 slice counts as four 256x256 windows), so activation memory stays
        what ``batch_size`` means for the sliding windows."""
        window = int(self.config.data.image_size[0]) * int(self.config.data.image_size[1])
        return max(1, (self.batch_size * window) // (padded[0] * padded[1]))

    def _forward_sliding(self, x: torch.Tensor) -> torch.Tensor:
        from monai.inferers import SlidingWindowInferer

        inferer = SlidingWindowInferer(
            roi_size=tuple(int(s) for s in self.config.data.image_size),
            sw_batch_size=self.batch_size,
            overlap=self.config.infer.sliding_window_overlap,
            mode="gaussian",
            padding_mode="constant",
        )
        probs = inferer(x, self._softmax_net)
        assert isinstance(probs, torch.Tensor)
        return torch.Tensor.as_subclass(probs, torch.Tensor) if type(probs) is not torch.Tensor else probs

    def _infer(
        self, x: torch.Tensor, whole: bool, box: tuple[int, int, int, int] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Probabilities ``(n, K, H, W)`` for inputs ``(n, C, H, W)``, and the flipped-back TTA ones."""
        x = x.to(self.device, non_blocking=True)
        if not whole:
            if not self.tta_flip:
                return self._forward_sliding(x), None
            both = self._forward_sliding(torch.cat([x, torch.flip(x, dims=[-1])]))
            n = x.shape[0]
            return both[:n], _swap_left_right(torch.flip(both[n:], dims=[-1]), self.label_names)
        probs = self._forward_whole(x, box)
        if not self.tta_flip:
            return probs, None
        w = x.shape[-1]
        mirrored = None if box is None else (box[0], box[1], w - box[3], w - box[2])
        flipped = self._forward_whole(torch.flip(x, dims=[-1]), mirrored)
        return probs, _swap_left_right(torch.flip(flipped, dims=[-1]), self.label_names)

    def _body_box(self, image: Image, z0: int, z1: int, grid: tuple[int, int]) -> tuple[int, int, int, int] | None:
        """Grid rows/columns ``(r0, r1, c0, c1)`` holding the body (> ``infer.body_hu``) in slices
        ``z0:z1``, with a margin of 16 grid pixels; None when cropping is off or finds nothing.
        Separate smaller components of the slab's projection (the couch, a positioning board) are
        left out when under a quarter of the largest one's area."""
        if not self.config.infer.body_crop:
            return None
        body: np.ndarray = np.any(np.asarray(image.array[z0:z1]) > self.config.infer.body_hu, axis=0)
        # the couch is not the body: of the separate components of the chunk's projection keep those of
        # at least a quarter of the largest one's area (the trunk; the couch only when as large as it)
        comps, n = ndimage.label(body, structure=np.ones((3, 3), bool))
        if n > 1:
            sizes = np.bincount(comps.ravel())[1:]
            body = np.isin(comps, 1 + np.flatnonzero(sizes >= 0.25 * sizes.max()))
        rows = np.flatnonzero(body.any(axis=1))
        cols = np.flatnonzero(body.any(axis=0))
        if rows.size == 0 or cols.size == 0:
            return None
        sy, sx = grid[0] / image.shape[1], grid[1] / image.shape[2]
        margin = 16
        return (
            max(0, math.floor(rows[0] * sy) - margin),
            min(grid[0], math.ceil((rows[-1] + 1) * sy) + margin),
            max(0, math.floor(cols[0] * sx) - margin),
            min(grid[1], math.ceil((cols[-1] + 1) * sx) + margin),
        )

    # -- prediction ---------------------------------------------------------------------------

    def predict(
        self,
        image: Image,
        *,
        return_probabilities: bool = False,
        progress: ProgressHook | None = None,
    ) -> Prediction:
        """Segment one image; the result lies on the input's exact geometry.

        Args:
            image: a radiograph ``(y, x)`` or a CT volume ``(z, y, x)`` in HU.
            return_probabilities: also keep float32 ``(K, *image.shape)`` probabilities (memory:
                ``4 K`` bytes per voxel); otherwise only uint8 labels and summaries are kept.
            progress: ``progress(done_slices, total_slices)`` after every chunk (default: the
                Predictor's ``progress``).
        """
        t0 = time.perf_counter()
        self._check_input(image)
        hook = progress if progress is not None else self.progress
        with torch.inference_mode():
            if self.task == "cxr":
                labels_arr, probs, uncertainty = self._predict_radiograph(image, return_probabilities, hook)
            else:
                raw, probs, uncertainty = self._predict_volume(image, return_probabilities, hook)
                labels_arr = self._postprocess(raw, image)
        labels = Image(labels_arr.astype(np.uint8, copy=False), image.affine, "label", image.modality, image.source)
        seconds = time.perf_counter() - t0
        log.info("predicted %s %s in %.2f s", image.source.path or "image", image.shape, seconds)

        def again() -> np.ndarray:
            return self.predict(image, return_probabilities=True).probabilities

        return Prediction(
            labels=labels,
            probabilities=probs,
            label_names=self.label_names,
            summary=summarise_labels(labels, self.label_names),
            uncertainty=uncertainty,
            seconds=seconds,
            compute_probabilities=None if probs is not None else again,
        )

    def _restore(
        self, probs: torch.Tensor, flipped: torch.Tensor | None, size: tuple[int, int], stats: _UncertaintyStats
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Probabilities on the network grid -> ``(n, K, *size)`` on the input grid and their uint8
        argmax ``(n, *size)``; the uncertainty sums are added to ``stats``."""
        from medseg.data.preprocess import upsample_probabilities

        full = upsample_probabilities(probs, size)
        arg = _argmax_classes(full)
        if flipped is None:
            stats.add(full, arg)
            return full, arg
        full_flipped = upsample_probabilities(flipped, size)
        stats.add(full, arg, full_flipped, _argmax_classes(full_flipped))
        full.add_(full_flipped).mul_(0.5)
        return full, _argmax_classes(full)

    def _postprocess(self, raw: np.ndarray, image: Image) -> np.ndarray:
        return postprocess_labels(
            raw,
            image,
            self.label_names,
            keep_largest=self.config.infer.keep_largest,
            fill_holes=self.config.infer.fill_holes,
            anatomy=self.config.infer.remove_gas,
        )

    def _predict_radiograph(
        self, image: Image, keep: bool, hook: ProgressHook | None
    ) -> tuple[np.ndarray, np.ndarray | None, dict[str, float]]:
        """Labels ``(y, x)`` on the input grid, optional probabilities ``(K, y, x)``, uncertainty.

        Labels are decided, post-processed and summarised for uncertainty on the decision grid
        (:func:`~medseg.infer.postprocess.decision_shape`, ``infer.decision_px``); only the
        boundary band is then restored at full resolution (:func:`refine_labels`): a 2000 x 2000
        film never gets ``K`` full-resolution probability maps unless they are asked for.
        """
        from medseg.data.preprocess import prepare_inputs, upsample_probabilities

        prepared = prepare_inputs(image, self.config)
        probs, flipped = self._infer(prepared.tensor, self._whole(prepared.grid_shape))
        size = (image.shape[0], image.shape[1])
        grid = decision_shape(size, int(self.config.infer.decision_px))
        stats = _UncertaintyStats(probs.shape[1], flipped is not None)
        decided_probs, arg = self._restore(probs, flipped, grid, stats)
        raw = arg[0].cpu().numpy()
        labels = self._postprocess(raw, _resized_radiograph(image, grid, pixels=self.config.infer.remove_gas))
        net = probs if flipped is None else (probs + flipped) * 0.5
        if grid != size:
            labels = refine_labels(labels, net[0].float().cpu().numpy(), size)
        kept = None
        if keep:  # bilinear restoring is linear: restoring the TTA mean = the mean of the restored
            full = decided_probs if grid == size else upsample_probabilities(net, size)
            kept = full[0].cpu().numpy().astype(np.float32, copy=False)
        if hook is not None:
            hook(1, 1)
        return labels, kept, stats.result()

    def _predict_volume(
        self, image: Image, keep: bool, hook: ProgressHook | None
    ) -> tuple[np.ndarray, np.ndarray | None, dict[str, float]]:
        from medseg.data.preprocess import ct_grid_shape, prepare_slab

        cfg = self.config
        spacing = cfg.infer.spacing_mm if cfg.infer.spacing_mm > 0 else None
        grid = ct_grid_shape(image, cfg, spacing)
        whole = self._whole(grid)
        z_count, size = image.shape[0], (image.shape[1], image.shape[2])
        k = cfg.model.num_classes
        raw = np.empty(image.shape, np.uint8)
        kept = np.empty((k, *image.shape), np.float32) if keep else None
        stats = _UncertaintyStats(k, self.tta_flip)
        chunk = int(cfg.infer.chunk_slices)
        log.debug("%s: %d slices on a %dx%d grid (%s), chunks of %d", image.source.path or "image", z_count,
                  *grid, "one window per slice" if whole else "sliding windows", chunk)
        quarter = 0
        starts = list(range(0, z_count, chunk))

        def prepare(z0: int) -> torch.Tensor:
            x = prepare_slab(image, cfg, z0, min(z_count, z0 + chunk), grid=grid, check=False)
            return x.pin_memory() if self.device.type == "cuda" else x

        # on a GPU the next chunk is prepared on the CPU while the GPU works on this one
        pool = ThreadPoolExecutor(1) if self.device.type == "cuda" and len(starts) > 1 else None
        try:
            upcoming = pool.submit(prepare, starts[0]) if pool is not None else None
            for i, z0 in enumerate(starts):
                z1 = min(z_count, z0 + chunk)
                if upcoming is not None and pool is not None:
                    x = upcoming.result()
                    upcoming = pool.submit(prepare, starts[i + 1]) if i + 1 < len(starts) else None
                else:
                    x = prepare(z0)
                quarter = self._chunk(image, x, z0, z1, whole, size, stats, raw, kept, hook, quarter)
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
        return raw, kept, stats.result()

    def _chunk(
        self,
        image: Image,
        x: torch.Tensor,
        z0: int,
        z1: int,
        whole: bool,
        size: tuple[int, int],
        stats: _UncertaintyStats,
        raw: np.ndarray,
        kept: np.ndarray | None,
        hook: ProgressHook | None,
        quarter: int,
    ) -> int:
        """Infer, restore and label slices ``z0:z1`` (inputs ``x``); returns the last quarter logged."""
        z_count = image.shape[0]
        box = self._body_box(image, z0, z1, (x.shape[-2], x.shape[-1])) if whole else None
        probs, flipped = self._infer(x, whole, box)
        full, arg = self._restore(probs, flipped, size, stats)
        raw[z0:z1] = arg.cpu().numpy()
        if kept is not None:
            kept[:, z0:z1] = full.transpose(0, 1).float().cpu().numpy()
        del x, probs, flipped, full, arg
        if hook is not None:
            hook(z1, z_count)
        if z_count > self.config.infer.chunk_slices and 4 * z1 // z_count > quarter:
            quarter = 4 * z1 // z_count
            log.info("%s: %d/%d slices", image.source.path or "image", z1, z_count)
        return quarter
