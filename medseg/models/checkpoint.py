"""Self-describing checkpoint folders: ``config.json`` + ``model.safetensors``, never pickle.

A checkpoint folder holds everything needed to rebuild and use the network:

``config.json``
    ``format`` ("medseg.checkpoint"), ``format_version`` (1), ``medseg_version``, ``created_utc``,
    ``model`` (class, builder, parameter count), ``config`` (the full :class:`~medseg.config.Config`
    as a dict: the network is ``build_model(config.model)``), ``preprocessing`` (per-channel
    mean/std, input range, required size multiple), ``labels`` (``{"1": {"name": "right lung",
    "concept": {...}}}``, value 0 is background), ``weights`` (file name, sha256, tensor count)
    and ``training`` (a free-form summary from the trainer, or ``{}``).
``model.safetensors``
    the state dict of the unwrapped network.

The folder is written as a whole to a temporary sibling and renamed into place; an existing
checkpoint folder at the target is replaced only once the new one is complete.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

import medseg
from medseg.config import Config, config_from_dict, config_to_dict
from medseg.errors import CheckpointError, ConfigError, MedsegError
from medseg.models.encoders import Preprocessing, encoder_preprocessing
from medseg.models.finetune import unwrap_model
from medseg.models.registry import build_registered, class_path, get_architecture
from medseg.models.unet import MedsegUNet, build_model, required_multiple
from medseg.structures import concept_to_dict
from medseg.utils import default_permissions, resolve_device

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_FORMAT_VERSION",
    "CONFIG_FILE",
    "WEIGHTS_FILE",
    "LoadedCheckpoint",
    "save_checkpoint",
    "load_checkpoint",
    "is_checkpoint_dir",
]

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "medseg.checkpoint"
CHECKPOINT_FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


@dataclass
class LoadedCheckpoint:
    """A rebuilt network (eval mode, on the requested device), its Config and the parsed config.json."""

    model: MedsegUNet
    config: Config
    info: dict[str, Any]
    path: Path

    @property
    def preprocessing(self) -> Preprocessing:
        return Preprocessing.from_dict(self.info["preprocessing"])

    @property
    def labels(self) -> dict[int, str]:
        """Label value -> structure name (0 = background is implicit)."""
        return dict(self.config.labels)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _jsonable(value: Any, key: str) -> Any:
    """Plain JSON value (non-finite floats -> None, numpy/torch scalars -> numbers, paths -> str)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v, f"{key}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, f"{key}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise CheckpointError(
        f"cannot store a {type(value).__name__} in config.json",
        path=key,
        hint="pass plain numbers, strings, lists, dicts",
    )


def is_checkpoint_dir(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is a folder whose config.json declares a medseg checkpoint."""
    cfg = Path(path) / CONFIG_FILE
    try:
        return json.loads(cfg.read_text()).get("format") == CHECKPOINT_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def _check_matches(net: nn.Module, config: Config) -> None:
    # the architecture on the meta device costs no memory and no weight loading
    with torch.device("meta"):
        ref = build_registered(dataclasses.replace(config.model, encoder_weights="none"))
    want = {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    have = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    if want != have:
        diff = sorted(set(want.items()) ^ set(have.items()))[:4]
        raise CheckpointError(
            f"the model does not match config.model (first differences: {diff})",
            path="model",
            hint="save the model built by build_model(config.model)",
        )


def save_checkpoint(
    directory: str | os.PathLike[str],
    model: nn.Module,
    config: Config,
    *,
    training: dict[str, Any] | None = None,
) -> Path:
    """Write ``model`` (DDP/compile wrappers unwrapped) and ``config`` as a checkpoint folder.

    Returns the folder. Raises :class:`CheckpointError` if the model is not the one
    ``config.model`` describes, if ``training`` is not JSON-serialisable, or if ``directory``
    exists and is not a medseg checkpoint (it is never deleted then).
    """
    target = Path(directory)
    net = unwrap_model(model)
    config.validate()
    _check_matches(net, config)
    if target.exists() and (not target.is_dir() or (any(target.iterdir()) and not is_checkpoint_dir(target))):
        raise CheckpointError(
            "exists and is not a medseg checkpoint folder; refusing to replace it",
            path=target,
            hint="choose another folder or remove it yourself",
        )
    state = {k: v.detach().to("cpu").contiguous() for k, v in net.state_dict().items()}
    labels = {
        str(v): {"name": name, "concept": concept_to_dict(name)} for v, name in sorted(config.labels.items())
    }
    training_json = _jsonable(training or {}, "training")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        from safetensors.torch import save_file

        weights = tmp / WEIGHTS_FILE
        save_file(
            state,
            str(weights),
            metadata={"format": "pt", "medseg_checkpoint": str(CHECKPOINT_FORMAT_VERSION)},
        )
        info = {
            "format": CHECKPOINT_FORMAT,
            "format_version": CHECKPOINT_FORMAT_VERSION,
            "medseg_version": medseg.__version__,
            "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "model": {
                "class": class_path(get_architecture(config.model.architecture).cls),
                "builder": "medseg.models.build_model(config.model)",
                "num_parameters": int(sum(p.numel() for p in net.parameters())),
            },
            "config": config_to_dict(config),
            "preprocessing": {
                **encoder_preprocessing(config.model).to_dict(),
                "required_multiple": required_multiple(config.model),
            },
            "labels": labels,
            "weights": {"file": WEIGHTS_FILE, "sha256": _sha256(weights), "num_tensors": len(state)},
            "training": training_json,
        }
        (tmp / CONFIG_FILE).write_text(json.dumps(info, indent=2, allow_nan=False) + "\n")
        default_permissions(tmp)  # mkdtemp makes a 0700 folder; checkpoints are shared on clusters
        _swap_into_place(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("saved checkpoint %s", target)
    return target


def _swap_into_place(tmp: Path, target: Path) -> None:
    """Rename the finished folder ``tmp`` onto ``target``; an old ``target`` is removed only afterwards."""
    if not target.exists():
        os.rename(tmp, target)
        return
    old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
    os.rename(target, old)
    try:
        os.rename(tmp, target)
    except BaseException:
        os.rename(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _recover_swapped(target: Path) -> Path:
    """``target`` when a save was killed between the two renames of :func:`_swap_into_place`.

    The previous checkpoint then sits complete in ``.<name>.old-*``: it is the one to load (the new
    one was never in place). Returns ``target`` unchanged when there is nothing to recover.
    """
    olds = sorted(target.parent.glob(f".{target.name}.old-*"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in olds:
        if (old / CONFIG_FILE).is_file():
            logger.warning("%s: recovering the checkpoint of an interrupted save from %s", target, old.name)
            return old
    return target


def _read_info(cfg_file: Path) -> dict[str, Any]:
    if not cfg_file.is_file():
        raise CheckpointError(
            "missing", path=cfg_file, hint="point to a folder written by medseg (save_checkpoint)"
        )
    try:
        info = json.loads(cfg_file.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise CheckpointError(f"not valid JSON ({e})", path=cfg_file) from e
    if not isinstance(info, dict):
        raise CheckpointError("must hold a JSON object", path=cfg_file)
    if info.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"'format' is {info.get('format')!r}, expected {CHECKPOINT_FORMAT!r}", path=cfg_file
        )
    version = info.get("format_version")
    if version != CHECKPOINT_FORMAT_VERSION:
        raise CheckpointError(
            f"format_version {version!r} is not supported (this medseg {medseg.__version__} reads "
            f"version {CHECKPOINT_FORMAT_VERSION})",
            path=cfg_file,
            hint="use the medseg version that wrote the checkpoint",
        )
    for key in ("config", "preprocessing", "weights"):
        if not isinstance(info.get(key), dict):
            raise CheckpointError(f"the '{key}' section is missing or not an object", path=cfg_file)
    return info


#: bounds of the config values a checkpoint may hold (issue #13: refuse before allocating)
_MAX_CHANNELS = 4096
_MAX_BATCH = 4096


def _finite_walk(value: Any, key: str) -> str | None:
    """The key of the first non-finite number in a JSON-like ``value``, or None."""
    if isinstance(value, dict):
        for k, v in value.items():
            bad = _finite_walk(v, f"{key}.{k}")
            if bad:
                return bad
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            bad = _finite_walk(v, f"{key}[{i}]")
            if bad:
                return bad
    elif isinstance(value, float) and not math.isfinite(value):
        return key
    return None


def _check_values(config: Config, info: dict[str, Any], cfg_file: Path) -> None:
    """Bounds and finiteness of the config values used to build and run the network.

    Checked on load so that a corrupt or hostile config.json fails here, with the key named,
    instead of allocating absurd layers or failing at predict time.
    """
    bad = _finite_walk(config_to_dict(config), "config") or _finite_walk(info.get("preprocessing"), "preprocessing")
    if bad:
        raise CheckpointError(f"{bad} is not a finite number", path=cfg_file, hint="fix config.json")

    def refuse(key: str, value: Any, want: str) -> None:
        raise CheckpointError(f"{key} is {value!r}, expected {want}", path=cfg_file, hint="fix config.json")

    model, infer = config.model, config.infer
    channels = list(model.decoder_channels)
    if not channels or any(not isinstance(c, int) or not 1 <= c <= _MAX_CHANNELS for c in channels):
        refuse("config.model.decoder_channels", channels, f"whole numbers in 1..{_MAX_CHANNELS}")
    if not 1 <= model.in_channels <= 64:
        refuse("config.model.in_channels", model.in_channels, "1..64")
    if not 2 <= model.num_classes <= 1024:
        refuse("config.model.num_classes", model.num_classes, "2..1024")
    if not 1 <= infer.batch_size <= _MAX_BATCH:
        refuse("config.infer.batch_size", infer.batch_size, f"1..{_MAX_BATCH}")
    if not 0.0 <= infer.sliding_window_overlap < 1.0:
        refuse("config.infer.sliding_window_overlap", infer.sliding_window_overlap, "0 <= overlap < 1")
    for name in ("chunk_slices", "max_whole_px"):
        value = getattr(infer, name, 1)
        if not isinstance(value, int) or value < 1:
            refuse(f"config.infer.{name}", value, "a whole number >= 1")
    if getattr(infer, "spacing_mm", 0.0) < 0:
        refuse("config.infer.spacing_mm", infer.spacing_mm, ">= 0 (0 = the training grid)")
    pre = info.get("preprocessing") or {}
    std = pre.get("std")
    if isinstance(std, list) and any(not isinstance(v, (int, float)) or v <= 0 for v in std):
        refuse("preprocessing.std", std, "positive numbers")
    rng = pre.get("input_range")
    if isinstance(rng, list) and (len(rng) != 2 or not all(isinstance(v, (int, float)) for v in rng) or rng[0] >= rng[1]):
        refuse("preprocessing.input_range", rng, "[low, high] with low < high")
    multiple = pre.get("required_multiple", 1)
    if not isinstance(multiple, int) or not 1 <= multiple <= 1024:
        refuse("preprocessing.required_multiple", multiple, "a whole number in 1..1024")


def _weights_path(folder: Path, name: Any, cfg_file: Path) -> Path:
    """``weights.file`` of config.json: a file name inside the checkpoint folder, nothing else."""
    text = str(name)
    candidate = folder / text
    if text in ("", ".", "..") or "/" in text or "\\" in text or Path(text).name != text:
        raise CheckpointError(
            f"weights.file {text!r} must be a file name inside the checkpoint folder",
            path=cfg_file,
            hint=f"set weights.file to {WEIGHTS_FILE!r} and keep the weights beside config.json",
        )
    return candidate


def load_checkpoint(directory: str | os.PathLike[str], device: str = "cpu") -> LoadedCheckpoint:
    """Rebuild the network of a checkpoint folder (or its ``config.json``) with nothing else given.

    The model is built with ``encoder_weights="none"`` (no ImageNet file needed), loaded strictly
    from ``model.safetensors`` (never unpickled), moved to ``device`` ("cpu", "cuda", "auto", ...)
    and put in eval mode. Raises :class:`CheckpointError` naming the file and the problem when the
    folder or a file is missing, config.json is not valid JSON or of another format version, the
    weights are corrupt or their sha256 differs from config.json, or tensors are missing, extra or
    of another shape.
    """
    path = Path(directory)
    if path.is_file():  # config.json, model.safetensors or any file of the folder
        path = path.parent
    if not path.exists():
        path = _recover_swapped(path)
    if not path.is_dir():
        raise CheckpointError(
            "checkpoint folder not found", path=path, hint="pass the folder save_checkpoint wrote"
        )
    cfg_file = path / CONFIG_FILE
    info = _read_info(cfg_file)
    try:
        config: Config = config_from_dict(info["config"]).validate()
    except ConfigError as e:
        raise CheckpointError(f"invalid 'config' section: {e}", path=cfg_file) from e
    _check_values(config, info, cfg_file)
    weights_file = _weights_path(path, info["weights"].get("file", WEIGHTS_FILE), cfg_file)
    if not weights_file.is_file():
        raise CheckpointError("missing", path=weights_file, hint="the checkpoint folder is incomplete")
    expected = info["weights"].get("sha256")
    if expected is not None and _sha256(weights_file) != expected:
        raise CheckpointError(
            "contents differ from the sha256 recorded in config.json (corrupt or replaced)", path=weights_file
        )
    try:
        from safetensors.torch import load_file

        state = load_file(str(weights_file), device="cpu")
    except Exception as e:  # safetensors raises its own error types for corrupt files
        raise CheckpointError(
            f"cannot read safetensors file ({type(e).__name__}: {e})", path=weights_file
        ) from e
    recorded = (info.get("model") or {}).get("class") if isinstance(info, dict) else None
    try:
        expected_class = class_path(get_architecture(config.model.architecture).cls)
        if recorded and recorded != expected_class:
            raise CheckpointError(
                f"the checkpoint was saved from {recorded} but model.architecture "
                f"'{config.model.architecture}' builds {expected_class}", path=cfg_file,
                hint="load it with the medseg version that wrote it")
        model = build_model(dataclasses.replace(config.model, encoder_weights="none"))
    except CheckpointError:
        raise
    except MedsegError as e:
        raise CheckpointError(f"cannot rebuild the model from config.model: {e}", path=cfg_file) from e
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in own.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"missing tensors {missing[:4]}")
        if unexpected:
            parts.append(f"unexpected tensors {unexpected[:4]}")
        if mismatched:
            parts.append(f"shape mismatches (file vs model) {mismatched[:4]}")
        raise CheckpointError(
            "does not match the model described by config.json: " + "; ".join(parts), path=weights_file
        )
    try:
        pre = Preprocessing.from_dict(info["preprocessing"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"invalid 'preprocessing' section ({e!r})", path=cfg_file) from e
    if not len(pre.mean) == len(pre.std) == config.model.in_channels:
        raise CheckpointError(
            f"'preprocessing' needs one mean and std per input channel ({config.model.in_channels})",
            path=cfg_file,
        )
    model.load_state_dict(state, strict=True)
    dev = resolve_device(device)
    try:
        model.to(dev)
    except (RuntimeError, AssertionError) as e:
        raise CheckpointError(f"cannot move the model to device '{dev}' ({e})", path=path) from e
    model.eval()
    logger.info("loaded checkpoint %s (%s, device %s)", path, config.model.encoder, dev)
    return LoadedCheckpoint(model=model, config=config, info=info, path=path)
