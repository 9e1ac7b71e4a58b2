"""medseg: chest X-ray and CT lung segmentation with ImageNet-pretrained U-Nets.

The Python API in one place (imported lazily, so ``import medseg`` stays light)::

    import medseg
    image = medseg.read_image("study/ct_folder")            # Image (array z,y,x + LPS affine)
    pred = medseg.Predictor.from_checkpoint(task="ct").predict(image)
    medseg.predict(["studies/"], "out/")                      # batch: DICOM-SEG + overlays + summary.csv
    medseg.train(medseg.load_config("configs/cxr_lung.yaml"))
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "Image": ("medseg.image", "Image"),
    "load_config": ("medseg.config", "load_config"),
    "Config": ("medseg.config", "Config"),
    "read_image": ("medseg.io", "read_image"),
    "write_image": ("medseg.io", "write_image"),
    "build_model": ("medseg.models", "build_model"),
    "load_checkpoint": ("medseg.models", "load_checkpoint"),
    "Predictor": ("medseg.infer", "Predictor"),
    "predict": ("medseg.infer.batch", "predict"),
    "train": ("medseg.training", "train"),
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'medseg' has no attribute {name!r}")
