"""The in-memory form every annotation-tool format reads into and writes from."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Literal

import numpy as np

from medseg.errors import ConfigError

__all__ = ["Region", "AnnotatedImage", "ShapeMode", "require"]


def require(module: str) -> ModuleType:
    """Import ``module`` of the annotation-tool extras, or say how to install them (ConfigError)."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ConfigError(f"annotation-tool formats need {module.split('.')[0]} ({e})", path=module,
                          hint="pip install 'medseg[annotations]' (pycocotools, scikit-image, label-studio-sdk)") from e

#: How an outline is written: ``"polygon"`` (editable vertices; holes are filled) or ``"mask"``
#: (pixel-exact: COCO RLE, CVAT ``<mask>``, Label Studio brush RLE).
ShapeMode = Literal["polygon", "mask"]


@dataclass(frozen=True, eq=False)
class Region:
    """One structure on one image.

    Attributes:
        label: the structure's name as the tool shows it (e.g. ``"right lung"``, ``"Lung_R"``).
        mask: ``(y, x)`` = ``(height, width)`` bool array, the whole image's size.
        score: the model's confidence in [0, 1] for pre-labels, ``None`` for human annotations.
    """

    label: str
    mask: np.ndarray
    score: float | None = None


@dataclass(frozen=True, eq=False)
class AnnotatedImage:
    """One image of an annotation file and its regions.

    Attributes:
        name: how the file refers to the image: a path relative to the image folder (COCO
            ``file_name``, CVAT ``name``) or a URL (Label Studio ``data.image``).
        width, height: the image size in pixels the tool annotated on.
        regions: the structures, in file order (several regions may carry the same label; readers
            merge them per label).
        score: a whole-image score (Label Studio prediction score), or None.
        meta: format-specific extras kept for reports (e.g. Label Studio task id).
    """

    name: str
    width: int
    height: int
    regions: tuple[Region, ...] = ()
    score: float | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)
