"""The architecture registry: ``model.architecture`` name -> network class (segmentation_models_pytorch style).

A class registers itself with :func:`register_architecture`; :func:`medseg.models.build_model` and
checkpoint loading look the name up here, and every checkpoint's ``config.json`` records the class
(``module.QualName``) so a checkpoint built by another class is refused. Each registered class takes
a :class:`~medseg.config.ModelConfig` and maps ``(B, in_channels, H, W)`` to logits
``(B, num_classes, H, W)``. ``tests/models/test_architecture_contract.py`` runs the same contract
on every entry (any valid input size, backward, save -> load with equal outputs).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from medseg.errors import ConfigError

__all__ = ["Architecture", "ARCHITECTURES", "register_architecture", "get_architecture", "class_path"]

T = TypeVar("T", bound=type)


@dataclass(frozen=True)
class Architecture:
    name: str
    cls: type
    description: str


ARCHITECTURES: dict[str, Architecture] = {}


def class_path(cls: type) -> str:
    """``"medseg.models.unet.MedsegUNet"``: what checkpoints record."""
    return f"{cls.__module__}.{cls.__qualname__}"


def register_architecture(name: str, description: str = "") -> Callable[[T], T]:
    """Class decorator: make ``cls`` buildable as ``model.architecture: <name>``."""

    def deco(cls: T) -> T:
        ARCHITECTURES[name] = Architecture(name, cls, description or (cls.__doc__ or "").strip().split("\n")[0])
        return cls

    return deco


def get_architecture(name: str) -> Architecture:
    """The registered architecture ``name``.

    Raises:
        ConfigError: unknown name (naming ``model.architecture`` and the closest registered name).
    """
    if name in ARCHITECTURES:
        return ARCHITECTURES[name]
    close = difflib.get_close_matches(name, list(ARCHITECTURES), n=1)
    raise ConfigError(f"unknown architecture {name!r}", path="model.architecture",
                      hint=f"did you mean '{close[0]}'?" if close else f"one of {', '.join(ARCHITECTURES)}")


def build_registered(cfg: Any) -> Any:
    """Instantiate ``cfg.architecture`` with ``cfg`` (no weights loaded)."""
    return get_architecture(cfg.architecture).cls(cfg)
