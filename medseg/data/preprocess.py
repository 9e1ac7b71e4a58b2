"""The inference contract: the one preprocessing that training, validation and the Predictor share.

``prepare_inputs(image, cfg) -> Prepared`` turns an :class:`~medseg.image.Image` into network input,
``restore_outputs(probs, prepared)`` maps class probabilities back onto the image's exact grid.

Radiographs (``data.task == "cxr"``, 2-D image ``(y, x)``):

1. intensities -> [0, 1] by robust percentile scaling per image (``data.intensity_percentiles``,
   default 0.5 and 99.5, clipped; MONAI ``ScaleIntensityRangePercentiles``);
2. resize to ``data.image_size`` ``(H, W)`` (MONAI ``Resize``: area averaging when shrinking,
   bilinear when enlarging);
3. encoder normalisation ``(x - mean[c]) / std[c]`` (:func:`medseg.models.encoder_preprocessing`).

``Prepared.tensor`` is ``(1, 1, H, W)`` float32 (batch, channel, y, x).

CT (``data.task == "ct"``, 3-D image ``(z, y, x)`` in HU), 2.5-D:

1. clip to ``data.hu_window`` and scale to [0, 1] (MONAI ``ScaleIntensityRange``);
2. in-plane resample to ``data.spacing_mm`` when > 0: each axial slice is resized to
   ``(H', W') = round((y, x) * spacing_yx / spacing_mm)`` (area/bilinear as above), so the field of
   view is kept exactly and the effective spacing is ``y * spacing_y / H'`` (~ ``spacing_mm``);
   native grid when 0;
3. for every axial slice z, its k = ``data.context_slices`` neighbours ``z - k//2 ... z + k//2`` (array
   slice order, edge-replicated at the ends) become the channels: ``(Z, k, H', W')``; channel
   ``k//2`` is slice z itself;
4. encoder normalisation per channel.

``Prepared.tensor`` is ``(Z, k, H', W')`` float32: one 2-D network input per slice. No padding is
added: the network is applied with a sliding window of ``data.image_size`` (which pads).

``restore_outputs`` takes probabilities ``(N, K, H, W)`` (N = 1 radiograph or N = Z slices, K classes
including background) on the prepared grid and returns float32 ``(K, y, x)`` for a radiograph or
``(K, z, y, x)`` for CT on the input grid (linear interpolation; MONAI ``Resize``).

Streaming (the Predictor): :func:`prepare_slab` builds the CT inputs of slices ``z0:z1`` only, equal to
``prepare_inputs(image, cfg).tensor[z0:z1]`` (every step works per axial slice), on an optional
inference grid (``infer.spacing_mm``); :func:`upsample_probabilities` is the per-slab
``restore_outputs`` (same bilinear interpolation, on any device).

Training uses the same steps: :func:`unit_inputs` (steps before normalisation) is cached, random
augmentation happens on the [0, 1] image, and :func:`normalize` is applied last.
:func:`prepare_label` brings a label map onto the prepared grid (nearest neighbour).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch

from medseg.config import Config
from medseg.errors import ConfigError, GeometryError, InputError
from medseg.image import Image
from medseg.utils import percentiles

if TYPE_CHECKING:  # pragma: no cover
    from medseg.models.encoders import Preprocessing

__all__ = [
    "Prepared",
    "prepare_inputs",
    "restore_outputs",
    "unit_inputs",
    "normalize",
    "context_stack",
    "prepare_label",
    "ct_grid_shape",
    "prepare_slab",
    "upsample_probabilities",
]


@dataclass(frozen=True, eq=False)
class Prepared:
    """Network input made from one image, plus what :func:`restore_outputs` needs to undo it.

    Attributes:
        tensor: float32 ``(N, C, H, W)``: ``(1, 1, H, W)`` for a radiograph, ``(Z, k, H', W')`` for CT
            (one input per axial slice, k adjacent slices as channels).
        task: ``"cxr"`` or ``"ct"``.
        input_shape: shape of the original image array, ``(y, x)`` or ``(z, y, x)``.
        grid_shape: in-plane shape ``(H, W)`` of ``tensor``.
    """

    tensor: torch.Tensor
    task: Literal["cxr", "ct"]
    input_shape: tuple[int, ...]
    grid_shape: tuple[int, int]


def _encoder_preprocessing(cfg: Config) -> Preprocessing:
    # lazy: medseg.models is a sibling package (layer 3) that never imports medseg.data
    from medseg.models import encoder_preprocessing

    return encoder_preprocessing(cfg.model)


def _check_image(image: Image, cfg: Config) -> None:
    src = image.source.path or "image"
    want = 2 if cfg.data.task == "cxr" else 3
    if image.ndim != want:
        kind = "a 2-D radiograph (y, x)" if want == 2 else "a 3-D CT volume (z, y, x)"
        raise InputError(
            f"data.task={cfg.data.task!r} expects {kind}, got shape {image.shape}",
            path=src,
            hint="use a model/config made for this kind of image",
        )
    if image.kind != "intensity":
        raise InputError("expected an intensity image, got a label map", path=src, hint="pass the scan, not a mask")
    if min(image.shape) < 1 or image.array.size == 0:
        raise InputError(f"empty image {image.shape}", path=src)
    if np.issubdtype(image.array.dtype, np.floating) and not np.isfinite(image.array).all():
        raise InputError("the image contains NaN or infinite values", path=src, hint="fix or mask them first")


def _image_size(cfg: Config) -> tuple[int, int]:
    size = cfg.data.image_size
    if len(size) != 2 or min(size) < 8:
        raise ConfigError(f"must be [H, W] with H, W >= 8, got {size}", path="data.image_size")
    if size[0] % 32 or size[1] % 32:
        raise ConfigError(
            f"must be multiples of 32 (the U-Net downsamples 5 times), got {size}",
            path="data.image_size",
            hint=f"use e.g. {[max(32, round(s / 32) * 32) for s in size]}",
        )
    return int(size[0]), int(size[1])


def ct_grid_shape(image: Image, cfg: Config, spacing_mm: float | None = None) -> tuple[int, int]:
    """In-plane shape ``(H', W')`` of a CT volume after resampling to ``spacing_mm``.

    ``spacing_mm=None`` uses ``data.spacing_mm`` (the training grid); 0 keeps the native grid.
    """
    y, x = image.shape[1], image.shape[2]
    target = float(cfg.data.spacing_mm if spacing_mm is None else spacing_mm)
    if target <= 0:
        return y, x
    sx, sy = image.spacing[0], image.spacing[1]
    return max(1, int(round(y * sy / target))), max(1, int(round(x * sx / target)))


def _resize(t: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    """Resize ``(C, h, w)`` to ``(C, *size)`` with MONAI ``Resize``.

    Intensities (``mode="bilinear"``) are anti-aliased when shrinking: area averaging when both axes
    shrink (as good as Gaussian anti-aliasing here and ~100x faster on a 3000 px radiograph),
    otherwise bilinear with MONAI's Gaussian anti-aliasing on the shrinking axis. Labels use
    ``"nearest-exact"`` (pixel-centre aligned, unlike torch's legacy ``"nearest"``).
    """
    if tuple(t.shape[-2:]) == tuple(size):
        return t
    from monai.transforms import Resize

    shrink = (size[0] < t.shape[-2], size[1] < t.shape[-1])
    if mode == "bilinear" and all(shrink):
        return _plain(Resize(spatial_size=size, mode="area", dtype=torch.float32)(t))
    anti = mode == "bilinear" and any(shrink)
    return _plain(Resize(spatial_size=size, mode=mode, anti_aliasing=anti, dtype=torch.float32)(t))


def _plain(t: object) -> torch.Tensor:
    """A plain float32 ``torch.Tensor`` (MONAI transforms may return a ``MetaTensor``)."""
    from monai.utils import convert_to_tensor

    out = convert_to_tensor(t, dtype=torch.float32, track_meta=False)
    return torch.Tensor.as_subclass(out, torch.Tensor) if type(out) is not torch.Tensor else out


def unit_inputs(image: Image, cfg: Config) -> tuple[torch.Tensor, tuple[int, int]]:
    """Steps 1-2: the image in [0, 1] on the network grid, before encoder normalisation.

    Returns:
        ``(tensor, grid_shape)`` with tensor ``(1, H, W)`` for a radiograph or ``(Z, H', W')`` for CT
        (axial slices in array order), float32 in [0, 1].
    """
    _check_image(image, cfg)
    if cfg.data.task == "cxr":
        lo, hi = (float(v) for v in cfg.data.intensity_percentiles)
        if not 0.0 <= lo < hi <= 100.0:
            raise ConfigError(f"must be [low, high] with 0 <= low < high <= 100, got {[lo, hi]}",
                              path="data.intensity_percentiles")
        # = MONAI's ScaleIntensityRangePercentiles(lo, hi, 0, 1, clip=True), bit for bit, in place on one
        # float32 copy with both percentiles from one pass: MONAI's partitions the film once per
        # percentile and makes a copy per arithmetic step (together ~2x the network's forward on 4 MP)
        a_min, a_max = percentiles(image.array, (lo, hi))
        scaled = np.array(image.array, dtype=np.float32)
        scaled -= np.float32(a_min)
        if a_max != a_min:
            scaled /= np.float32(a_max - a_min)
        np.clip(scaled, 0.0, 1.0, out=scaled)
        size = _image_size(cfg)
        return _resize(torch.from_numpy(scaled)[None], size, "bilinear"), size
    arr = torch.from_numpy(np.asarray(image.array, dtype=np.float32).copy())
    grid = ct_grid_shape(image, cfg)
    return _ct_unit(arr, cfg, grid), grid


def _ct_unit(arr: torch.Tensor, cfg: Config, grid: tuple[int, int]) -> torch.Tensor:
    """CT steps 1-2 on slices ``(n, y, x)`` (HU, float32) -> ``(n, H', W')`` in [0, 1]; per slice."""
    from monai.transforms import ScaleIntensityRange

    lo, hi = (float(v) for v in cfg.data.hu_window)
    if not hi > lo:
        raise ConfigError(f"must be [low, high] HU with high > low, got {[lo, hi]}", path="data.hu_window")
    unit = _plain(ScaleIntensityRange(a_min=lo, a_max=hi, b_min=0.0, b_max=1.0, clip=True)(arr))
    return _resize(unit, grid, "bilinear")


def normalize(x: torch.Tensor, cfg: Config) -> torch.Tensor:
    """Step 4: encoder normalisation per channel of ``x`` ``(N, C, H, W)`` or ``(C, H, W)`` in [0, 1]."""
    pre = _encoder_preprocessing(cfg)
    channels = x.shape[-3]
    if len(pre.mean) != channels:
        raise ConfigError(
            f"the encoder expects {len(pre.mean)} input channels, the data gives {channels}",
            path="model.in_channels",
            hint="set model.in_channels to 1 for radiographs or data.context_slices for CT",
        )
    return pre.normalize(x)


def context_stack(volume: torch.Tensor, k: int, indices: torch.Tensor | list[int] | None = None) -> torch.Tensor:
    """2.5-D inputs: for each slice index z, slices ``z - k//2 ... z + k//2`` as channels.

    Args:
        volume: ``(Z, H, W)``.
        k: odd number of slices per input.
        indices: slice indices to build (default: all ``0..Z-1``).

    Returns:
        ``(len(indices), k, H, W)``; neighbours outside the volume repeat the edge slice.
    """
    if k < 1 or k % 2 != 1:
        raise ConfigError(f"must be odd and >= 1, got {k}", path="data.context_slices")
    z_count = volume.shape[0]
    idx = torch.arange(z_count) if indices is None else torch.as_tensor(indices, dtype=torch.long).reshape(-1)
    offsets = torch.arange(k) - k // 2
    neighbours = (idx[:, None] + offsets[None, :]).clamp(0, z_count - 1)
    return volume[neighbours]


def prepare_inputs(image: Image, cfg: Config) -> Prepared:
    """Network input for ``image`` (see the module docstring for shapes and steps)."""
    unit, grid = unit_inputs(image, cfg)
    if cfg.data.task == "cxr":
        x = unit[None]
    else:
        x = context_stack(unit, int(cfg.data.context_slices))
    tensor = normalize(x, cfg).contiguous()
    return Prepared(tensor=tensor, task=cfg.data.task, input_shape=image.shape, grid_shape=grid)


def prepare_slab(
    image: Image,
    cfg: Config,
    z0: int,
    z1: int,
    *,
    grid: tuple[int, int] | None = None,
    check: bool = True,
) -> torch.Tensor:
    """CT network inputs of axial slices ``z0 .. z1-1`` only: float32 ``(z1 - z0, k, H', W')``.

    Equal to ``prepare_inputs(image, cfg).tensor[z0:z1]`` when ``grid`` is the training grid
    (:func:`ct_grid_shape`): every step works per slice, so only the slab and its ``k // 2``
    neighbours on each side are converted (edge slices replicated at the volume's ends, as in
    :func:`context_stack`). ``grid`` ``(H', W')`` sets another in-plane inference grid; the Predictor
    streams a volume through this in chunks so memory does not grow with the number of slices.
    ``check=False`` skips the whole-volume input checks (done once by the caller).
    """
    if cfg.data.task != "ct":
        raise ConfigError("prepare_slab is for CT volumes", path="data.task", hint="use prepare_inputs")
    if check:
        _check_image(image, cfg)
    z_count = image.shape[0]
    if not 0 <= z0 < z1 <= z_count:
        raise InputError(f"slab {z0}:{z1} outside the volume's {z_count} slices")
    k = int(cfg.data.context_slices)
    if k < 1 or k % 2 != 1:
        raise ConfigError(f"must be odd and >= 1, got {k}", path="data.context_slices")
    lo, hi = max(0, z0 - k // 2), min(z_count, z1 + k // 2)
    arr = torch.from_numpy(np.asarray(image.array[lo:hi], dtype=np.float32))
    unit = _ct_unit(arr, cfg, grid or ct_grid_shape(image, cfg))
    offsets = torch.arange(k) - k // 2
    neighbours = (torch.arange(z0, z1)[:, None] + offsets[None, :]).clamp(0, z_count - 1) - lo
    return normalize(unit[neighbours], cfg).contiguous()


def upsample_probabilities(probs: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Class probabilities ``(N, K, H, W)`` -> ``(N, K, *size)``, on their own device and dtype.

    The interpolation of :func:`restore_outputs` (bilinear, ``align_corners=False``, no
    anti-aliasing: identical to MONAI ``Resize(mode="bilinear")``), without the copy to the CPU,
    so a GPU restores on the GPU.
    """
    if tuple(probs.shape[-2:]) == tuple(size):
        return probs
    return torch.nn.functional.interpolate(probs, size=size, mode="bilinear", align_corners=False)


def prepare_label(label: Image, prepared: Prepared) -> torch.Tensor:
    """A label map on the prepared grid (nearest neighbour): uint8 ``(1, H, W)`` or ``(Z, H', W')``.

    Raises:
        GeometryError: the label's shape differs from the image's.
    """
    if label.shape != prepared.input_shape:
        raise GeometryError(
            f"label shape {label.shape} differs from image shape {prepared.input_shape}",
            path=label.source.path or "label",
            hint="the label map must be on the image's grid",
        )
    arr = np.asarray(label.array)
    if arr.min() < 0 or arr.max() > 255:
        raise InputError(f"label values must be 0..255, got {arr.min()}..{arr.max()}", path=label.source.path or "label")
    t = torch.from_numpy(arr.astype(np.float32))
    if prepared.task == "cxr":
        t = t[None]
    out = _resize(t, prepared.grid_shape, "nearest-exact")
    return out.round().to(torch.uint8)


def restore_outputs(probs: np.ndarray | torch.Tensor, prepared: Prepared) -> np.ndarray:
    """Map class probabilities on the prepared grid back onto the input image grid.

    Args:
        probs: ``(N, K, H, W)`` with N = 1 (radiograph) or N = Z (CT slices), H, W = ``prepared.grid_shape``.
        prepared: what :func:`prepare_inputs` returned for the image.

    Returns:
        float32 ``(K, y, x)`` for a radiograph, ``(K, z, y, x)`` for CT (linear interpolation).
    """
    t = torch.as_tensor(probs).detach().to("cpu", torch.float32)
    if t.ndim != 4:
        raise InputError(f"expected probabilities (N, K, H, W), got shape {tuple(t.shape)}")
    n, k = t.shape[0], t.shape[1]
    expected_n = 1 if prepared.task == "cxr" else prepared.input_shape[0]
    if n != expected_n or tuple(t.shape[-2:]) != tuple(prepared.grid_shape):
        raise GeometryError(
            f"probabilities of shape {tuple(t.shape)} do not match the prepared input "
            f"({expected_n}, K, {prepared.grid_shape[0]}, {prepared.grid_shape[1]})",
            hint="pass the model output for this Prepared, unchanged",
        )
    size = (prepared.input_shape[-2], prepared.input_shape[-1])
    if prepared.task == "cxr":
        return _linear(t[0], size).numpy()
    out = np.empty((k, n, *size), dtype=np.float32)
    chunk = max(1, int(2**26 // max(1, k * size[0] * size[1])))  # bound the temporary to ~256 MB
    for z0 in range(0, n, chunk):
        part = t[z0 : z0 + chunk]
        res = _linear(part.reshape(-1, *part.shape[-2:]), size).reshape(part.shape[0], k, *size)
        out[:, z0 : z0 + part.shape[0]] = res.permute(1, 0, 2, 3).numpy()
    return out


def _linear(t: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of ``(C, h, w)`` probabilities to ``(C, *size)`` without anti-aliasing."""
    if tuple(t.shape[-2:]) == tuple(size):
        return t.contiguous()
    from monai.transforms import Resize

    return _plain(Resize(spatial_size=size, mode="bilinear", dtype=torch.float32)(t))
