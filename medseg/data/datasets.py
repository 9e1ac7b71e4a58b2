"""Training datasets: cached deterministic preprocessing + per-sample seeded MONAI augmentation.

The deterministic part (read the files, :func:`~medseg.data.preprocess.unit_inputs`,
:func:`~medseg.data.preprocess.prepare_label`) is cached by MONAI: ``CacheDataset`` in memory
(``data.cache: memory``) or ``PersistentDataset`` on disk (``data.cache: disk``) under
``<cache_dir>/<cache_key(cfg)>``. :func:`cache_key` hashes the preprocessing settings, so a changed
config never reads a stale cache; each item's file name is MONAI's hash of its paths *and* file
fingerprints (:func:`file_fingerprint`), so a changed file is re-read too.

Random augmentation (:func:`~medseg.data.transforms.train_transforms`) is seeded per sample from
``(train.seed, epoch, index)``: a sample is augmented identically whatever the number of workers or
ranks and after a resume. The encoder normalisation is applied last.

* :class:`ImageSamples` (radiographs): one sample per image, ``image (1, H, W)``, ``label (1, H, W)``.
* :class:`SliceSamples` (CT, 2.5-D): indexes ``(volume, slice)``; per epoch it draws
  ``data.slices_per_volume`` slices per volume (all slices when 0), a ``data.foreground_fraction``
  of them from slices with foreground; each sample is the k-slice stack around the slice
  (``image (k, H, W)``) and the centre slice's label (``label (1, H, W)``), cropped/padded to
  ``data.image_size`` by the transforms. A slice has foreground when it holds any label, or, with
  ``data.foreground_labels`` (e.g. ``[2]`` = nodule), one of those labels; such a slice is then
  cropped around one of those voxels (:func:`~medseg.data.transforms.positive_crop`), so the
  small structure is in every positive sample.
"""

from __future__ import annotations

import abc
import contextlib
import hashlib
import json
import logging
import os
from collections.abc import Hashable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.transforms import MapTransform
from torch.utils.data import Dataset, DistributedSampler

from medseg.config import Config
from medseg.data.manifest import ManifestEntry
from medseg.data.preprocess import Prepared, context_stack, normalize, prepare_label, unit_inputs
from medseg.data.transforms import positive_crop, seed_for, train_transforms
from medseg.errors import ConfigError, InputError, MedsegError

__all__ = [
    "CACHE_VERSION",
    "cache_key",
    "file_fingerprint",
    "LoadPreparedd",
    "AugmentedSamples",
    "ImageSamples",
    "SliceSamples",
    "ShardSampler",
    "build_train_dataset",
    "cache_folder",
    "medseg_errors",
]

log = logging.getLogger(__name__)

#: bump when the cached content changes meaning (new preprocessing code)
CACHE_VERSION = 1
_FINGERPRINT_BYTES = 1 << 20


def file_fingerprint(path: str | os.PathLike[str]) -> str:
    """Cheap content fingerprint of a file (or DICOM folder): sha256 of size, mtime and the first and
    last MiB of every file. Hand-written: hashing whole CT series at every start would take minutes."""
    p = Path(path)
    files = sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p]
    h = hashlib.sha256()
    for f in files:
        st = f.stat()
        h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns};".encode())
        with open(f, "rb") as fh:
            h.update(fh.read(_FINGERPRINT_BYTES))
            if st.st_size > 2 * _FINGERPRINT_BYTES:
                fh.seek(-_FINGERPRINT_BYTES, os.SEEK_END)
                h.update(fh.read())
    return h.hexdigest()


def cache_key(cfg: Config) -> str:
    """Hash of every setting that changes the cached (deterministic) preprocessing output."""
    d = cfg.data
    settings: dict[str, Any] = {"version": CACHE_VERSION, "task": d.task}
    if d.task == "cxr":
        settings.update(image_size=list(d.image_size), intensity_percentiles=list(d.intensity_percentiles))
    else:
        settings.update(hu_window=list(d.hu_window), spacing_mm=d.spacing_mm)
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def cache_folder(cfg: Config) -> Path:
    """``<data.cache_dir or ~/.cache/medseg/datasets>/<cache_key(cfg)>``."""
    base = Path(os.path.expanduser(cfg.data.cache_dir)) if cfg.data.cache_dir else Path.home() / ".cache" / "medseg" / "datasets"
    return base / cache_key(cfg)


class LoadPreparedd(MapTransform):
    """``{"image": path, "label": path, ...}`` -> cached tensors on the network grid, in [0, 1].

    Output keys: ``image`` float32 ``(1, H, W)`` (radiograph) or ``(Z, H', W')`` (CT); ``label``
    uint8 of the same shape; ``id`` (the image path); for CT ``foreground`` bool ``(Z,)``.
    """

    def __init__(self, cfg: Config) -> None:
        super().__init__(keys=["image", "label"])
        self.cfg = cfg

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        from medseg.io import read_image

        image = read_image(data["image"], kind="intensity")
        label = read_image(data["label"], kind="label")
        unit, grid = unit_inputs(image, self.cfg)
        prepared = Prepared(tensor=unit, task=self.cfg.data.task, input_shape=image.shape, grid_shape=grid)
        lab = prepare_label(label, prepared)
        n_classes = self.cfg.model.num_classes
        if int(lab.max()) >= n_classes:
            raise InputError(
                f"label value {int(lab.max())} but model.num_classes={n_classes} (labels {self.cfg.labels})",
                path=data["label"],
                hint="name every label value in 'labels' or fix the label map",
            )
        out: dict[Hashable, Any] = {"image": unit, "label": lab, "id": str(data["image"])}
        if self.cfg.data.task == "ct":
            out["foreground"] = lab.reshape(lab.shape[0], -1).amax(dim=1) > 0
        return out


@contextlib.contextmanager
def medseg_errors() -> Iterator[None]:
    """Re-raise a medseg error that MONAI wrapped in ``RuntimeError("applying transform ...")``, so the
    user sees the one-line message naming the file instead of a transform traceback."""
    try:
        yield
    except RuntimeError as e:
        cause: BaseException | None = e
        while cause is not None and not isinstance(cause, MedsegError):
            cause = cause.__cause__
        if isinstance(cause, MedsegError):
            raise cause from None
        raise


def _items(entries: Sequence[ManifestEntry]) -> list[dict[str, str]]:
    items = []
    for e in entries:
        if e.label is None:
            raise InputError("a training image has no label", path=e.image, hint="add a label column to the manifest")
        items.append(
            {
                "image": str(e.image),
                "label": str(e.label),
                "fingerprint": file_fingerprint(e.image) + file_fingerprint(e.label),
            }
        )
    return items


def _base_dataset(items: list[dict[str, str]], cfg: Config) -> Any:
    from monai.data import CacheDataset, PersistentDataset
    from monai.data import Dataset as MonaiDataset

    loader = LoadPreparedd(cfg)
    workers = max(1, int(cfg.data.num_workers))
    if cfg.data.cache == "memory":
        with medseg_errors():
            return CacheDataset(items, transform=loader, cache_rate=1.0, num_workers=workers, progress=False,
                                copy_cache=False)
    if cfg.data.cache == "disk":
        folder = cache_folder(cfg)
        folder.mkdir(parents=True, exist_ok=True)
        log.info("disk cache %s", folder)
        return PersistentDataset(items, transform=loader, cache_dir=folder)
    return MonaiDataset(items, transform=loader)


class AugmentedSamples(Dataset, abc.ABC):
    """Shared part: epoch-aware, per-sample seeded augmentation then encoder normalisation."""

    def __init__(self, cfg: Config, seed: int) -> None:
        self.cfg = cfg
        self.seed = int(seed)
        self.epoch = 0
        self.transform = train_transforms(cfg)

    @abc.abstractmethod
    def __len__(self) -> int:
        """Number of samples per epoch."""

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch (the augmentation seeds, and for CT the slices drawn)."""
        self.epoch = int(epoch)

    def _finish(self, image: torch.Tensor, label: torch.Tensor, index: int, sample_id: str) -> dict[str, Any]:
        self.transform.set_random_state(seed=seed_for(self.seed, self.epoch, index))
        out = self.transform({"image": image, "label": label.to(torch.float32)})
        from monai.utils import convert_to_tensor

        img = convert_to_tensor(out["image"], dtype=torch.float32, track_meta=False)
        lab = convert_to_tensor(out["label"], track_meta=False)
        return {
            "image": normalize(img.contiguous(), self.cfg),
            "label": torch.round(lab).to(torch.long),
            "index": index,
            "id": sample_id,
        }


class ImageSamples(AugmentedSamples):
    """Radiograph training samples: ``image`` float32 ``(1, H, W)`` normalised, ``label`` int64 ``(1, H, W)``."""

    def __init__(self, base: Any, cfg: Config, seed: int) -> None:
        super().__init__(cfg, seed)
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> dict[str, Any]:
        with medseg_errors():
            d = self.base[index]
        return self._finish(d["image"], d["label"], index, d["id"])


class SliceSamples(AugmentedSamples):
    """CT 2.5-D training samples indexed by ``(volume, slice)``.

    ``image`` float32 ``(k, H, W)`` (slices z-k//2..z+k//2, normalised), ``label`` int64 ``(1, H, W)``
    (slice z), with H, W = ``data.image_size`` (random crop, zero-padded when the slice is smaller).
    """

    def __init__(self, volumes: Sequence[Mapping[str, Any]], cfg: Config, seed: int) -> None:
        super().__init__(cfg, seed)
        self.volumes = volumes
        self.k = int(cfg.data.context_slices)
        wanted = [int(v) for v in cfg.data.foreground_labels]
        unknown = [v for v in wanted if v not in cfg.labels]
        if unknown:
            raise ConfigError(
                f"label values {unknown} are not named in 'labels' ({cfg.labels})",
                path="data.foreground_labels",
                hint="list label values of the config, e.g. [2] for the nodule, or [] for any label",
            )
        # positive sampling on chosen labels: which slices hold them, and a crop around them
        self._positive = torch.as_tensor(wanted, dtype=torch.uint8) if wanted else None
        self._crop = positive_crop(cfg) if wanted else None
        fg_pairs, bg_pairs, counts = [], [], []
        for v, vol in enumerate(volumes):
            if self._positive is None:
                fg = torch.as_tensor(vol["foreground"]).numpy()
            else:
                lab = torch.as_tensor(vol["label"])
                fg = torch.isin(lab, self._positive.to(lab.dtype)).flatten(1).any(dim=1).numpy()
            counts.append(len(fg))
            fg_pairs += [(v, int(z)) for z in np.flatnonzero(fg)]
            bg_pairs += [(v, int(z)) for z in np.flatnonzero(~fg)]
        self._fg = np.asarray(fg_pairs, dtype=np.int64).reshape(-1, 2)
        self._bg = np.asarray(bg_pairs, dtype=np.int64).reshape(-1, 2)
        per = int(cfg.data.slices_per_volume)
        self._n = sum(min(c, per) if per > 0 else c for c in counts)
        if not 0.0 <= cfg.data.foreground_fraction <= 1.0:
            raise ConfigError(f"must be in [0, 1], got {cfg.data.foreground_fraction}", path="data.foreground_fraction")
        self._pairs = self._draw(0)

    def _draw(self, epoch: int) -> np.ndarray:
        """The ``(volume, slice)`` pairs of an epoch (depends only on seed and epoch)."""
        rng = np.random.default_rng([self.seed & 0xFFFFFFFF, epoch, 0x51CE])
        n_fg = int(round(self.cfg.data.foreground_fraction * self._n)) if len(self._fg) else 0
        if not len(self._bg):
            n_fg = self._n
        parts = []
        for pool, n in ((self._fg, n_fg), (self._bg, self._n - n_fg)):
            if n:
                parts.append(pool[rng.choice(len(pool), size=n, replace=n > len(pool))])
        pairs = np.concatenate(parts) if parts else np.zeros((0, 2), dtype=np.int64)
        return pairs[rng.permutation(len(pairs))]

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        self._pairs = self._draw(epoch)

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, index: int) -> dict[str, Any]:
        v, z = (int(a) for a in self._pairs[index])
        vol = self.volumes[v]
        image = context_stack(torch.as_tensor(vol["image"]), self.k, [z])[0]
        label = torch.as_tensor(vol["label"])[z][None]
        if self._crop is not None and self._positive is not None:
            positive = torch.isin(label, self._positive.to(label.dtype))
            if bool(positive.any()):
                self._crop.set_random_state(seed=seed_for(self.seed, self.epoch, index) ^ 0x5A5A5A5A)
                out = self._crop({"image": image, "label": label, "positive": positive})[0]
                image, label = out["image"], out["label"]
        return self._finish(image, label, index, f"{vol['id']}#z{z}")


class _MappedVolumes(Sequence):
    """CT volumes of a ``PersistentDataset`` opened memory-mapped (``torch.load(mmap=True)``).

    Hand-written because ``PersistentDataset[i]`` unpickles the whole volume on every access, i.e.
    once per training slice; memory-mapping reads only the slices used.
    """

    def __init__(self, ds: Any, items: list[dict[str, str]]) -> None:
        self._vols = []
        for i, item in enumerate(items):
            path = Path(ds.cache_dir) / f"{ds.hash_func(item).decode('utf-8')}{ds.transform_hash}.pt"
            with medseg_errors():
                if not path.is_file():
                    ds[i]  # let MONAI compute and write the cache file
                if path.is_file():
                    self._vols.append(torch.load(path, mmap=True, weights_only=True))
                else:  # cache not writable: keep it in memory
                    self._vols.append(ds[i])

    def __len__(self) -> int:
        return len(self._vols)

    def __getitem__(self, i: Any) -> Any:
        return self._vols[i]


def build_train_dataset(cfg: Config, entries: Sequence[ManifestEntry], *, seed: int | None = None) -> AugmentedSamples:
    """The training dataset of ``cfg`` for ``entries`` (radiographs or CT slices, see the module docstring)."""
    if not entries:
        raise ConfigError(
            "no training images (every manifest row is in the validation/test split)",
            path="data.manifest",
            hint="lower data.val_fraction or add images",
        )
    items = _items(entries)
    seed = cfg.train.seed if seed is None else seed
    if cfg.data.task == "cxr":
        return ImageSamples(_base_dataset(items, cfg), cfg, seed)
    if cfg.data.cache == "none":
        raise ConfigError(
            "CT training needs a cache (a whole volume would be re-read for every slice)",
            path="data.cache",
            hint="use 'memory' or 'disk'",
        )
    base = _base_dataset(items, cfg)
    volumes: Sequence[Mapping[str, Any]]
    if cfg.data.cache == "disk":
        volumes = _MappedVolumes(base, items)
    else:
        with medseg_errors():
            volumes = [base[i] for i in range(len(base))]
    return SliceSamples(volumes, cfg, seed)


class ShardSampler(DistributedSampler):
    """``DistributedSampler`` (this rank's shard, shuffled by seed + epoch) that can skip the first
    ``skip`` samples of the epoch: a run resumed mid-epoch sees exactly the remaining batches."""

    def __init__(self, dataset: Any, *, num_replicas: int = 1, rank: int = 0, seed: int = 0,
                 shuffle: bool = True, drop_last: bool = False) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed,
                         drop_last=drop_last)
        self.skip = 0

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        return iter(indices[self.skip :])

    def __len__(self) -> int:
        return max(0, self.num_samples - self.skip)
