"""Data: manifests and patient-level splits, the shared preprocessing (inference contract), training datasets.

* :mod:`medseg.data.manifest`: ``read_manifest``, ``build_manifest``, ``split_entries``, ``load_entries``.
* :mod:`medseg.data.preprocess`: ``prepare_inputs(image, cfg) -> Prepared`` and
  ``restore_outputs(probs, prepared)`` used identically by training, validation and the Predictor.
* :mod:`medseg.data.transforms`: MONAI augmentation pipelines.
* :mod:`medseg.data.datasets`: cached datasets (``CacheDataset``/``PersistentDataset``) and the 2.5-D
  CT slice dataset.

Heavy modules are imported lazily.
"""

from __future__ import annotations

from typing import Any

from medseg.data.manifest import (
    ManifestEntry,
    build_manifest,
    load_entries,
    read_manifest,
    split_entries,
    write_manifest,
)

__all__ = [
    "ManifestEntry",
    "build_manifest",
    "load_entries",
    "read_manifest",
    "split_entries",
    "write_manifest",
    "Prepared",
    "prepare_inputs",
    "restore_outputs",
    "prepare_label",
    "build_train_dataset",
    "cache_key",
]

_LAZY = {
    "Prepared": "medseg.data.preprocess",
    "prepare_inputs": "medseg.data.preprocess",
    "restore_outputs": "medseg.data.preprocess",
    "prepare_label": "medseg.data.preprocess",
    "build_train_dataset": "medseg.data.datasets",
    "cache_key": "medseg.data.datasets",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'medseg.data' has no attribute {name!r}")
