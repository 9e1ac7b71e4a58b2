"""The segmentation network: MONAI ``FlexibleUNet`` decoder over an ImageNet EfficientNet-Lite encoder.

2-D only. Radiographs: ``in_channels=1``. CT is segmented **2.5-D**: k adjacent axial slices
(k odd, the centre slice in the middle channel) are the k input channels and the network predicts
the centre slice; k=3 maps the slices onto the RGB stem unchanged. There is no 3-D variant: the
ImageNet encoder is 2-D and 2.5-D keeps its pretrained weights in use.

Input ``(B, in_channels, H, W)`` (normalised with :func:`medseg.models.encoder_preprocessing`),
H and W multiples of :func:`required_multiple` (32; the Predictor pads), output logits
``(B, num_classes, H, W)`` (class 0 = background, no softmax applied).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence

import torch
from monai.networks.nets import FlexibleUNet

from medseg.config import ModelConfig
from medseg.errors import ModelError
from medseg.models.encoders import get_encoder_spec, load_encoder_weights
from medseg.models.finetune import apply_frozen_bn_eval
from medseg.models.registry import build_registered, get_architecture, register_architecture

__all__ = ["MedsegUNet", "build_model", "required_multiple", "check_input_size"]

logger = logging.getLogger(__name__)

#: FlexibleUNet decoder normalisations selectable with ``ModelConfig.norm`` (the encoder keeps the
#: pretrained BatchNorm)
_DECODER_NORMS: dict[str, tuple[str, dict]] = {
    "batch": ("batch", {"eps": 1e-3, "momentum": 0.1}),
    "instance": ("instance", {"affine": True}),
    "group": ("group", {"num_groups": 8}),
}
_NUM_STAGES = 5  # the encoder downsamples 5 times by 2


def required_multiple(cfg: ModelConfig) -> int:
    """H and W of the input must be multiples of this (2**5 = 32 for every supported encoder)."""
    get_encoder_spec(cfg.encoder)
    return 2**_NUM_STAGES


def check_input_size(shape: Sequence[int], cfg: ModelConfig) -> None:
    """Raise :class:`ModelError` unless ``shape`` fits the network of ``cfg``.

    ``shape`` is ``(B, C, H, W)``, ``(C, H, W)`` or ``(H, W)``; C (when given) must equal
    ``cfg.in_channels`` and H, W must be positive multiples of :func:`required_multiple`.
    """
    # no int(): under torch.compile the sizes are symbolic and int() would specialise on them
    dims = list(shape)
    if len(dims) not in (2, 3, 4):
        raise ModelError(
            f"expected an input of shape (B, C, H, W), got {tuple(int(d) for d in dims)}",
            hint="the network is 2-D; feed CT as 2.5-D slabs of adjacent slices in the channel axis",
        )
    if len(dims) >= 3 and dims[-3] != cfg.in_channels:
        raise ModelError(
            f"the input has {int(dims[-3])} channels but the model expects in_channels={cfg.in_channels}",
            hint="radiographs have 1 channel; 2.5-D CT has data.context_slices channels",
        )
    m = required_multiple(cfg)
    h, w = dims[-2:]
    if h <= 0 or w <= 0 or h % m or w % m:
        h, w = int(h), int(w)
        ph, pw = max(m, -(-h // m) * m), max(m, -(-w // m) * m)
        raise ModelError(
            f"input size {h}x{w} (H x W) is not a multiple of {m}",
            hint=f"pad or resize to a multiple of {m}, e.g. {ph}x{pw} (the Predictor pads automatically)",
        )


@register_architecture("flexible_unet", "MONAI FlexibleUNet decoder over an ImageNet EfficientNet-Lite encoder")
class MedsegUNet(FlexibleUNet):
    """``FlexibleUNet`` over an EfficientNet-Lite encoder, described by a :class:`ModelConfig`.

    Same parameters and state-dict keys as ``FlexibleUNet`` (``encoder.*``, ``decoder.*``,
    ``segmentation_head.*``). Adds an input-size check in :meth:`forward` and keeps frozen
    BatchNorm layers in eval mode across :meth:`train` (see :func:`medseg.models.set_encoder_trainable`).
    Build it with :func:`build_model`, which also loads the encoder weights.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        _validate(cfg)
        super().__init__(
            in_channels=cfg.in_channels,
            out_channels=cfg.num_classes,
            backbone=cfg.encoder,
            pretrained=False,
            decoder_channels=tuple(cfg.decoder_channels),
            spatial_dims=2,
            norm=_DECODER_NORMS[cfg.norm],
            dropout=cfg.dropout,
        )
        #: a copy of the configuration the network was built from
        self.model_config: ModelConfig = copy.deepcopy(cfg)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """``(B, in_channels, H, W)`` -> logits ``(B, num_classes, H, W)``; H, W multiples of 32."""
        check_input_size(inputs.shape, self.model_config)
        return super().forward(inputs)

    def train(self, mode: bool = True) -> MedsegUNet:
        super().train(mode)
        if mode:
            apply_frozen_bn_eval(self)
        return self


def _validate(cfg: ModelConfig) -> None:
    get_architecture(cfg.architecture)
    get_encoder_spec(cfg.encoder)
    if cfg.spatial_dims != 2:
        raise ModelError(
            f"spatial_dims={cfg.spatial_dims} is not supported: the network is 2-D (no 3-D variant)",
            path="model.spatial_dims",
            hint="use spatial_dims=2; CT is segmented 2.5-D with k adjacent slices as in_channels",
        )
    if cfg.in_channels < 1:
        raise ModelError(f"in_channels must be >= 1, got {cfg.in_channels}", path="model.in_channels")
    if cfg.num_classes < 1:
        raise ModelError(f"num_classes must be >= 1, got {cfg.num_classes}", path="model.num_classes")
    if len(cfg.decoder_channels) != _NUM_STAGES or any(c < 1 for c in cfg.decoder_channels):
        raise ModelError(
            f"decoder_channels needs {_NUM_STAGES} positive numbers (one per encoder stage), got "
            f"{cfg.decoder_channels}",
            path="model.decoder_channels",
            hint="e.g. [256, 128, 64, 32, 16]",
        )
    if not 0.0 <= cfg.dropout < 1.0:
        raise ModelError(f"dropout must be in [0, 1), got {cfg.dropout}", path="model.dropout")
    if cfg.norm not in _DECODER_NORMS:
        raise ModelError(
            f"unknown decoder norm '{cfg.norm}'",
            path="model.norm",
            hint=f"one of {', '.join(_DECODER_NORMS)}",
        )
    if cfg.norm == "group" and any(c % 8 for c in cfg.decoder_channels):
        raise ModelError(
            "norm='group' uses 8 groups: every decoder channel count must be a multiple of 8",
            path="model.decoder_channels",
        )


def build_model(cfg: ModelConfig) -> MedsegUNet:
    """Build the U-Net of ``cfg`` and load its encoder weights offline (see ``medseg.models.encoders``).

    ``cfg.encoder_weights``: ``"imagenet"`` (torch hub cache, then the weights package),
    a ``.pth``/``.safetensors`` path, or ``"none"``. Raises :class:`ModelError` for an unknown
    encoder (suggesting the closest name), unsupported settings or unusable weights.
    The returned model is in training mode, on the CPU, float32.
    """
    model = build_registered(cfg)
    load_encoder_weights(model.encoder, cfg.encoder, cfg.encoder_weights)
    n = sum(p.numel() for p in model.parameters())
    logger.info(
        "built %s U-Net: %d input channels, %d classes, %.2f M parameters",
        cfg.encoder,
        cfg.in_channels,
        cfg.num_classes,
        n / 1e6,
    )
    return model
