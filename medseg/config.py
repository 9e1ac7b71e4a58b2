"""Typed configuration: dataclasses loaded from YAML, with dotted command-line overrides.

``load_config("configs/cxr_lung.yaml", ["optim.lr=3e-4", "data.root=/data/cxr"])`` returns a
:class:`Config`. Unknown keys and wrong types raise :class:`~medseg.errors.ConfigError` naming the
key and suggesting the closest valid one. Paths are config fields, never environment variables.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import yaml

from medseg.errors import ConfigError

__all__ = [
    "Config",
    "ModelConfig",
    "DataConfig",
    "AugmentConfig",
    "OptimConfig",
    "TrainConfig",
    "InferConfig",
    "DetectConfig",
    "QCConfig",
    "AutolabelConfig",
    "load_config",
    "config_from_dict",
    "config_to_dict",
    "apply_overrides",
    "save_config",
]

T = TypeVar("T")


@dataclass
class ModelConfig:
    """The network. ``in_channels`` is 1 for radiographs and k (adjacent slices) for 2.5-D CT."""

    architecture: str = "flexible_unet"
    encoder: str = "efficientnet-lite0"
    #: ``"imagenet"`` (local file search: torch hub cache, then a weights package), a path to a
    #: ``.pth``/``.safetensors`` file, or ``"none"`` for random initialisation.
    encoder_weights: str = "imagenet"
    spatial_dims: int = 2
    in_channels: int = 1
    #: number of output classes including background (0)
    num_classes: int = 3
    decoder_channels: list[int] = field(default_factory=lambda: [256, 128, 64, 32, 16])
    dropout: float = 0.0
    norm: str = "batch"


@dataclass
class AugmentConfig:
    """Training-time augmentation (MONAI random transforms); probabilities per sample."""

    enabled: bool = True
    affine_prob: float = 0.5
    rotate_deg: float = 10.0
    scale: float = 0.1
    translate_frac: float = 0.05
    intensity_prob: float = 0.3
    elastic_prob: float = 0.0
    flip_lr: bool = False  # left/right flips swap the anatomy of left/right lungs: off by default
    # (medseg.data) when flip_lr is on, "left X"/"right X" label values are swapped with the flip
    #: (medseg.data) RandScaleIntensity factor range +-intensity_scale on the [0, 1] image
    intensity_scale: float = 0.1
    #: (medseg.data) RandAdjustContrast gamma range
    gamma: list[float] = field(default_factory=lambda: [0.8, 1.25])
    #: (medseg.data) RandGaussianNoise standard deviation on the [0, 1] image
    noise_std: float = 0.02
    #: (medseg.data) radiographs: probability of a simulated dense opacity (ARDS, effusion, white
    #: base) inside one lung, the label unchanged (:class:`medseg.data.transforms.RandLungOpacityd`)
    opacity_prob: float = 0.0


@dataclass
class DataConfig:
    """Where the data is and how it becomes tensors."""

    #: ``"cxr"`` (2-D radiographs) or ``"ct"`` (2.5-D axial slices of volumes)
    task: Literal["cxr", "ct"] = "cxr"
    #: CSV/JSON manifest with columns image, label[, split, patient_id]; relative paths are
    #: resolved against ``root`` (or the manifest's folder when root is empty)
    manifest: str = ""
    root: str = ""
    val_fraction: float = 0.2
    split_seed: int = 0
    #: 2-D training size (y, x) for radiographs; in-plane crop/resize for CT slices
    image_size: list[int] = field(default_factory=lambda: [256, 256])
    #: CT: number of adjacent axial slices given as channels (must equal model.in_channels)
    context_slices: int = 3
    #: CT: target in-plane spacing in mm (0 = keep)
    spacing_mm: float = 0.0
    #: CT: HU window clipped and scaled to [0, 1] before the encoder normalisation
    hu_window: list[float] = field(default_factory=lambda: [-1000.0, 400.0])
    #: CT: fraction of training slices drawn from slices with foreground
    foreground_fraction: float = 0.8
    #: (medseg.data) CT: the label values that make a slice "foreground" for foreground_fraction, and
    #: positive slices are then cropped in-plane around one of their voxels (e.g. [2] = nodule, so
    #: nodule slices are over-sampled even though lung is on almost every slice); [] = any label
    foreground_labels: list[int] = field(default_factory=list)
    #: "none", "memory" (MONAI CacheDataset) or "disk" (PersistentDataset keyed by transform config)
    cache: Literal["none", "memory", "disk"] = "memory"
    cache_dir: str = ""
    num_workers: int = 0
    batch_size: int = 4
    #: (medseg.data) radiographs: intensity percentiles (low, high) mapped to 0 and 1 per image
    intensity_percentiles: list[float] = field(default_factory=lambda: [0.5, 99.5])
    #: (medseg.data) CT: training slices drawn per volume per epoch (0 = as many as it has slices)
    slices_per_volume: int = 0
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass
class OptimConfig:
    lr: float = 1e-3
    #: encoder learning rate = lr * encoder_lr_mult (discriminative fine-tuning)
    encoder_lr_mult: float = 0.1
    weight_decay: float = 1e-4
    warmup_epochs: int = 1
    schedule: Literal["cosine", "constant"] = "cosine"
    grad_clip: float = 1.0


@dataclass
class TrainConfig:
    epochs: int = 50
    #: stop after this many optimiser steps (0 = no limit); for smoke tests and benchmarks
    max_steps: int = 0
    loss: Literal["dicece", "dice", "ce", "dicefocal"] = "dicece"
    #: "none" (fp32), "bf16" (CUDA and CPU) or "fp16" (CUDA with GradScaler)
    amp: Literal["none", "bf16", "fp16"] = "none"
    channels_last: bool = False
    compile: bool = False
    freeze_encoder_epochs: int = 0
    val_every: int = 1
    early_stop_patience: int = 0
    seed: int = 0
    deterministic: bool = False
    device: str = "auto"
    out_dir: str = "runs/medseg"
    log_every: int = 10
    progress: bool = True
    #: the validation metric that picks the best checkpoint ("dice" = mean foreground Dice)
    monitor: str = "dice"
    #: (medseg.train) also save the last checkpoint + resumable state every N steps (0 = epoch ends only)
    save_every_steps: int = 0
    #: start from the weights of this checkpoint folder (fine-tune a trained model on a grown data
    #: set, e.g. in the active-learning loop); "" = from the encoder weights in model.*
    init_checkpoint: str = ""


@dataclass
class InferConfig:
    """How :class:`medseg.infer.Predictor` runs a checkpoint (saved in it; any field may be overridden).

    Fields a checkpoint's ``config.json`` does not name take these defaults, so a new knob reaches
    the shipped models through its default here.
    """

    #: network inputs (slices or windows) per forward pass
    batch_size: int = 8
    tta_flip: bool = False
    #: "auto", "cpu", "cuda", "cuda:1", ...
    device: str = "auto"
    #: overlap of neighbouring windows when ``window`` is ``"sliding"``
    sliding_window_overlap: float = 0.25
    keep_largest: bool = True
    fill_holes: bool = True
    #: radiographs: cut gas below the diaphragm out of the lungs
    #: (:func:`medseg.infer.postprocess.remove_subdiaphragmatic_gas`); off for an annotation protocol
    #: whose lungs legitimately reach below the level of the domes (V7: the lung behind the heart)
    remove_gas: bool = True
    #: CT in-plane inference grid in mm; 0 = the training grid (``data.spacing_mm``)
    spacing_mm: float = 0.0
    #: ``"whole"``: one forward per slice/radiograph on its whole grid (padded to a multiple of 32);
    #: ``"sliding"``: windows of ``data.image_size`` with ``sliding_window_overlap`` and Gaussian
    #: blending (MONAI); ``"auto"``: whole when the grid has at most ``max_whole_px`` pixels
    window: Literal["auto", "whole", "sliding"] = "auto"
    max_whole_px: int = 1024 * 1024
    #: CT: axial slices prepared, inferred, restored and labelled together (bounds memory)
    chunk_slices: int = 16
    #: radiographs: labels are decided and post-processed on a grid of at most this many pixels on
    #: its longer side, then only the boundaries are refined at the input's full resolution
    #: (bilinear probabilities, restricted to the labels decided there); 0 = all at full resolution
    decision_px: int = 512
    #: CT, whole-slice windows: run the network only on the body's bounding box (voxels above
    #: ``body_hu``, + 16 px, per chunk of slices); outside it the output is background
    body_crop: bool = True
    body_hu: float = -500.0
    #: ``"auto"``: fp32 on CPU (bf16 autocast measured slower on CPUs without AMX/avx512_bf16),
    #: fp16 autocast on CUDA; or ``"fp32"``, ``"bf16"``, ``"fp16"`` (autocast)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    #: run the network in channels_last memory format
    channels_last: bool = True
    #: ``torch.compile`` the network (pays off only for long runs on a GPU)
    compile: bool = False


@dataclass
class DetectConfig:
    """Nodule candidates from the nodule probability (:func:`medseg.detect.detect_nodules`)."""

    #: probability threshold on the nodule channel, in (0, 1]
    threshold: float = 0.5
    #: smallest equivalent-sphere diameter kept (LUNA16: 3 mm)
    min_diameter_mm: float = 3.0
    #: a candidate is kept when one of its voxels lies this close to the predicted lung
    lung_margin_mm: float = 5.0
    #: non-maximum suppression distance; 0 = the sum of the two radii
    nms_distance_mm: float = 0.0


@dataclass
class QCConfig:
    """Plausibility limits of :func:`medseg.labelling.qc` (sources in :mod:`medseg.labelling.checks`)."""

    ct_lung_ml: list[float] = field(default_factory=lambda: [250.0, 5000.0])
    ct_lungs_ml: list[float] = field(default_factory=lambda: [500.0, 10000.0])
    cxr_lung_fraction: list[float] = field(default_factory=lambda: [0.03, 0.50])
    cxr_lungs_fraction: list[float] = field(default_factory=lambda: [0.06, 0.80])
    speck_fraction: float = 0.02
    max_gap_slices: int = 3
    cxr_border_fraction: float = 0.15
    ct_border_fraction: float = 0.001
    outside_body_fraction: float = 0.005
    air_hu: float = -500.0


@dataclass
class AutolabelConfig:
    """Thresholds (HU) and sizes (mm, ml) of the classic CT lung labeller; defaults suit adult chest CT."""

    body_hu: float = -500.0
    lung_hu: float = -320.0
    #: the trachea seed: darker than this, cross-section area and distance from the body midline
    trachea_seed_hu: float = -900.0
    trachea_area_mm2: list[float] = field(default_factory=lambda: [60.0, 900.0])
    trachea_midline_mm: float = 40.0
    #: region-growing thresholds tried in order; growth stops before the volume jumps
    airway_thresholds_hu: list[float] = field(
        default_factory=lambda: [-990.0, -975.0, -960.0, -950.0, -940.0, -930.0, -920.0, -910.0])
    airway_max_ml: float = 250.0
    airway_jump: float = 2.0
    airway_dilation_mm: float = 2.0
    #: air bridges thinner than about twice this are cut before the lungs are picked
    bridge_mm: float = 2.0
    #: separate air bodies at least this large (after the opening) are not lung (bowel gas)
    blocker_min_ml: float = 2.0
    #: a lung component smaller than this is not a lung
    min_lung_ml: float = 50.0
    closing_mm: float = 5.0
    #: holes (per axial slice) up to this area (mm^2) are filled; None = all holes
    max_hole_mm2: float | None = None


@dataclass
class Config:
    """Everything a training run needs; saved verbatim inside every checkpoint."""

    name: str = "medseg"
    #: label value -> structure name, e.g. {1: "right lung", 2: "left lung"}
    labels: dict[int, str] = field(default_factory=lambda: {1: "right lung", 2: "left lung"})
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    infer: InferConfig = field(default_factory=InferConfig)
    detect: DetectConfig = field(default_factory=DetectConfig)
    qc: QCConfig = field(default_factory=QCConfig)
    autolabel: AutolabelConfig = field(default_factory=AutolabelConfig)
    #: optional explicit codes per label value, overriding what the name means, e.g.
    #: {3: {category: {value: "91723000", scheme: SCT, meaning: Anatomical Structure},
    #:      type: {value: "44567001", scheme: SCT, meaning: Trachea}}}
    structures: dict[int, dict[str, Any]] = field(default_factory=dict)

    def label_map(self) -> Any:
        """The :class:`~medseg.structures.LabelMap` of ``labels`` (+ explicit ``structures`` codes)."""
        from medseg.structures import LabelMap

        return LabelMap.from_config(self.labels, self.structures)

    def validate(self) -> Config:
        """Cross-field checks; returns self."""
        if self.model.num_classes != len(self.labels) + 1:
            raise ConfigError(
                f"model.num_classes={self.model.num_classes} but {len(self.labels)} labels are named "
                f"({self.labels}); num_classes counts background too",
                path="model.num_classes",
                hint=f"set model.num_classes={len(self.labels) + 1} or name every label",
            )
        if self.data.task == "ct" and self.model.in_channels != self.data.context_slices:
            raise ConfigError(
                f"2.5-D CT feeds data.context_slices={self.data.context_slices} slices as channels, "
                f"but model.in_channels={self.model.in_channels}",
                path="model.in_channels",
                hint="make them equal",
            )
        if self.data.task == "ct" and self.data.context_slices % 2 != 1:
            raise ConfigError("data.context_slices must be odd (centre slice predicted)", path="data.context_slices")
        _check_ranges(self)
        self.label_map()  # names parse, no two values mean one structure, explicit codes well formed
        return self


def _check(key: str, value: Any, low: float | None = None, high: float | None = None, *,
           low_open: bool = False, high_open: bool = False, hint: str | None = None) -> None:
    import math

    values = value if isinstance(value, list) else [value]
    for v in values:
        if v is None:
            continue
        if isinstance(v, float) and not math.isfinite(v):
            raise ConfigError(f"must be a finite number, got {v}", path=key, hint=hint)
        bad_low = low is not None and (v <= low if low_open else v < low)
        bad_high = high is not None and (v >= high if high_open else v > high)
        if bad_low or bad_high:
            lo = "" if low is None else f"{'(' if low_open else '['}{low}"
            hi = "" if high is None else f"{high}{')' if high_open else ']'}"
            raise ConfigError(f"must be in {lo or '(-inf'}, {hi or 'inf)'}, got {value}", path=key, hint=hint)


def _check_pair(key: str, value: list[float]) -> None:
    if len(value) != 2 or value[0] > value[1]:
        raise ConfigError(f"must be [low, high] with low <= high, got {value}", path=key)


def _check_ranges(cfg: Config) -> None:
    """Every numeric setting in its valid range: the one place for range checks (ConfigError names the key)."""
    m, d, o, t, i = cfg.model, cfg.data, cfg.optim, cfg.train, cfg.infer
    _check("model.in_channels", m.in_channels, 1, 64)
    _check("model.num_classes", m.num_classes, 2, 1024, hint="background plus at least one structure")
    _check("model.spatial_dims", m.spatial_dims, 2, 2, hint="the networks are 2-D; CT is segmented 2.5-D")
    if len(m.decoder_channels) != 5:
        raise ConfigError(f"needs 5 numbers (one per encoder stage), got {m.decoder_channels}",
                          path="model.decoder_channels", hint="e.g. [256, 128, 64, 32, 16]")
    _check("model.decoder_channels", m.decoder_channels, 1, 4096)
    _check("model.dropout", m.dropout, 0.0, 1.0, high_open=True)
    _check("data.val_fraction", d.val_fraction, 0.0, 1.0, high_open=True)
    if len(d.image_size) != 2:
        raise ConfigError(f"must be [height, width], got {d.image_size}", path="data.image_size")
    _check("data.image_size", d.image_size, 32, 8192)
    _check("data.context_slices", d.context_slices, 1, 31)
    _check("data.spacing_mm", d.spacing_mm, 0.0, 100.0)
    _check_pair("data.hu_window", d.hu_window)
    _check("data.foreground_fraction", d.foreground_fraction, 0.0, 1.0)
    _check("data.batch_size", d.batch_size, 1)
    _check("data.num_workers", d.num_workers, 0, 256)
    _check_pair("data.intensity_percentiles", d.intensity_percentiles)
    _check("data.intensity_percentiles", d.intensity_percentiles, 0.0, 100.0)
    _check("data.slices_per_volume", d.slices_per_volume, 0)
    for k in ("affine_prob", "intensity_prob", "elastic_prob", "opacity_prob"):
        _check(f"data.augment.{k}", getattr(d.augment, k), 0.0, 1.0)
    _check("optim.lr", o.lr, 0.0, 10.0, low_open=True)
    _check("optim.encoder_lr_mult", o.encoder_lr_mult, 0.0, 100.0)
    _check("optim.weight_decay", o.weight_decay, 0.0, 10.0)
    _check("optim.warmup_epochs", o.warmup_epochs, 0)
    _check("optim.grad_clip", o.grad_clip, 0.0)
    _check("train.epochs", t.epochs, 1)
    _check("train.max_steps", t.max_steps, 0)
    _check("train.val_every", t.val_every, 1)
    _check("train.early_stop_patience", t.early_stop_patience, 0)
    _check("train.save_every_steps", t.save_every_steps, 0)
    _check("train.log_every", t.log_every, 0)  # 0 = no step logging
    _check("infer.batch_size", i.batch_size, 1, 4096)
    _check("infer.sliding_window_overlap", i.sliding_window_overlap, 0.0, 1.0, high_open=True)
    _check("infer.spacing_mm", i.spacing_mm, 0.0, 100.0, hint="0 = the training spacing data.spacing_mm")
    _check("infer.max_whole_px", i.max_whole_px, 1)
    _check("infer.chunk_slices", i.chunk_slices, 1)
    if i.decision_px != 0:
        _check("infer.decision_px", i.decision_px, 64, hint="0 = decide at full resolution")
    _check("detect.threshold", cfg.detect.threshold, 0.0, 1.0, low_open=True)
    _check("detect.min_diameter_mm", cfg.detect.min_diameter_mm, 0.0, 500.0)
    _check("detect.lung_margin_mm", cfg.detect.lung_margin_mm, 0.0, 500.0)
    _check("detect.nms_distance_mm", cfg.detect.nms_distance_mm, 0.0, 500.0)
    q = cfg.qc
    for k in ("ct_lung_ml", "ct_lungs_ml", "cxr_lung_fraction", "cxr_lungs_fraction"):
        _check_pair(f"qc.{k}", getattr(q, k))
        _check(f"qc.{k}", getattr(q, k), 0.0)
    for k in ("speck_fraction", "cxr_border_fraction", "ct_border_fraction", "outside_body_fraction"):
        _check(f"qc.{k}", getattr(q, k), 0.0, 1.0)
    _check("qc.max_gap_slices", q.max_gap_slices, 0)
    a = cfg.autolabel
    _check_pair("autolabel.trachea_area_mm2", a.trachea_area_mm2)
    if not a.airway_thresholds_hu:
        raise ConfigError("needs at least one threshold", path="autolabel.airway_thresholds_hu")
    for k in ("trachea_midline_mm", "airway_max_ml", "airway_dilation_mm", "bridge_mm", "blocker_min_ml",
              "min_lung_ml", "closing_mm"):
        _check(f"autolabel.{k}", getattr(a, k), 0.0)
    _check("autolabel.airway_jump", a.airway_jump, 1.0)
    _check("autolabel.max_hole_mm2", a.max_hole_mm2, 0.0)
    _check("autolabel.body_hu", [a.body_hu, a.lung_hu, a.trachea_seed_hu, *a.airway_thresholds_hu], -2000.0, 4000.0)


# ---------------------------------------------------------------------------------------------
# generic typed loading


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check/convert ``value`` to type ``tp`` (dataclass, list, dict, Literal, Union, scalars)."""
    origin = get_origin(tp)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"expected a mapping for section '{key}', got {value!r}", path=key)
        return _from_dict(tp, value, prefix=key + ".")
    if origin is Literal:
        choices = get_args(tp)
        if value not in choices:
            close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
            hint = f"did you mean '{close[0]}'?" if close else None
            raise ConfigError(f"must be one of {list(choices)}, got {value!r}", path=key, hint=hint)
        return value
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if value is None and len(args) < len(get_args(tp)):
            return None
        errors = []
        for a in args:
            try:
                return _coerce(value, a, key)
            except ConfigError as e:
                errors.append(e)
        raise errors[0]
    if origin is list:
        (item_tp,) = get_args(tp) or (Any,)
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list):
            raise ConfigError(f"expected a list, got {value!r}", path=key, hint="write it as [a, b, ...]")
        return [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        k_tp, v_tp = get_args(tp) or (Any, Any)
        if not isinstance(value, dict):
            raise ConfigError(f"expected a mapping, got {value!r}", path=key)
        return {_coerce(k, k_tp, key): _coerce(v, v_tp, f"{key}.{k}") for k, v in value.items()}
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ConfigError(f"expected true/false, got {value!r}", path=key)
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"expected an integer, got {value!r}", path=key)
        if isinstance(value, int):
            return value
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"expected an integer, got {value!r}", path=key)
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"expected a number, got {value!r}", path=key)
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"expected a number, got {value!r}", path=key)
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        if isinstance(value, PathLike):
            return str(value)
        raise ConfigError(f"expected a string, got {value!r}", path=key)
    raise ConfigError(f"unsupported config type {_type_name(tp)}", path=key)


def _from_dict(cls: type[T], data: dict[str, Any], prefix: str = "") -> T:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1, cutoff=0.5)
            hint = f"did you mean '{prefix}{close[0]}'?" if close else f"valid keys: {', '.join(names)}"
            raise ConfigError(f"unknown config key '{prefix}{key}'", path=f"{prefix}{key}", hint=hint)
        kwargs[key] = _coerce(value, hints[key], prefix + key)
    return cls(**kwargs)


def config_from_dict(data: dict[str, Any], cls: type[T] = Config) -> T:  # type: ignore[assignment]
    """Build a typed config (default :class:`Config`) from a plain mapping, checking every key."""
    if not isinstance(data, dict):
        raise ConfigError(f"a config must be a mapping, got {type(data).__name__}")
    return _from_dict(cls, data)


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """Plain (YAML/JSON-serialisable) mapping of a config dataclass."""
    return dataclasses.asdict(cfg)


def _parse_scalar(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_overrides(data: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides (values parsed as YAML) to a nested mapping copy."""
    import copy

    out = copy.deepcopy(data)
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value", hint="e.g. --set optim.lr=3e-4")
        key, text = item.split("=", 1)
        parts = key.strip().split(".")
        node = out
        for p in parts[:-1]:
            nxt = node.get(p)
            if nxt is None:
                nxt = node[p] = {}
            if not isinstance(nxt, dict):
                raise ConfigError(f"cannot set '{key}': '{p}' is not a section", path=key)
            node = nxt
        node[parts[-1]] = _parse_scalar(text)
    return out


def load_config(
    path: str | PathLike[str] | None = None, overrides: list[str] | None = None
) -> Config:
    """Load a YAML config (or the defaults when ``path`` is None), apply overrides, validate."""
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError("config file not found", path=p, hint="pass a YAML file such as configs/cxr_lung.yaml")
        try:
            loaded = yaml.safe_load(p.read_text())
        except yaml.YAMLError as e:
            raise ConfigError(f"not valid YAML ({e})", path=p) from e
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError("the YAML file must hold a mapping at the top level", path=p)
        data = loaded
    data = apply_overrides(data, overrides)
    return config_from_dict(data).validate()


def save_config(cfg: Config, path: str | PathLike[str]) -> None:
    """Write ``cfg`` as YAML atomically."""
    from medseg.utils import atomic_write_text

    atomic_write_text(Path(path), yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
