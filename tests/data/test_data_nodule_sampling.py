"""Positive sampling of small structures (``data.foreground_labels``) on the real LIDC-IDRI-0001 slices.

Labels: 1 = lung (HU < -400 inside the field of view, on every slice), 2 = the LUNA16 nodule sphere
(on 10 of the 16 slices). With the default (any label is foreground) every slice counts, so the
nodule is not over-sampled; with ``foreground_labels: [2]`` a ``foreground_fraction`` of the
samples come from nodule slices, each cropped around the nodule.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medseg.config import Config, config_from_dict
from medseg.data.datasets import SliceSamples, build_train_dataset
from medseg.data.manifest import ManifestEntry
from medseg.errors import ConfigError

EPOCHS = 6
N_SLICES = 16


@pytest.fixture(scope="module")
def lidc_case(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[ManifestEntry, np.ndarray]:
    """The LIDC slices at every 4th pixel in-plane (128 x 128, 2.8 mm) as NIfTI + label; and the label array."""

    from medseg.detect import nodule_mask, read_nodule_annotations
    from medseg.image import Image
    from medseg.io import read_image, write_image

    d = shared_data / "ct_lidc_nodules" / "LIDC-IDRI-0001"
    if not (d / "dicom").is_dir():
        pytest.skip(f"{d} not present")
    full = read_image(d / "dicom")
    ct = Image.from_sitk(full.to_sitk()[::4, ::4, :], modality="CT")
    labels = np.where(ct.array < -400, 1, 0).astype(np.uint8)
    labels[nodule_mask(ct, read_nodule_annotations(d / "luna16_annotations.csv")).array > 0] = 2
    out = tmp_path_factory.mktemp("lidc_case")
    img = write_image(ct, out / "ct.nii.gz")
    lab = write_image(ct.with_array(labels, kind="label"), out / "label.nii.gz")
    return ManifestEntry(img, lab, "train", "LIDC-IDRI-0001"), labels


def _cfg(**data: object) -> Config:
    base: dict[str, object] = {"task": "ct", "image_size": [64, 64], "cache": "memory", "context_slices": 3,
                               "augment": {"enabled": False}}
    base.update(data)
    return config_from_dict({"labels": {1: "lung", 2: "nodule"}, "data": base,
                             "model": {"encoder_weights": "none", "in_channels": 3, "num_classes": 3}}).validate()


def _draws(ds: SliceSamples) -> tuple[list[int], list[bool]]:
    """Slice index and "nodule in the cropped label" of every sample over EPOCHS epochs."""
    slices, in_crop = [], []
    for epoch in range(EPOCHS):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            s = ds[i]
            slices.append(int(s["id"].rsplit("#z", 1)[1]))
            in_crop.append(bool((s["label"] == 2).any()))
            assert s["image"].shape == (3, 64, 64) and s["label"].shape == (1, 64, 64)
    return slices, in_crop


def test_nodule_slices_drawn_at_foreground_fraction(lidc_case: tuple[ManifestEntry, np.ndarray]) -> None:
    entry, labels = lidc_case
    nodule_slices = {int(z) for z in np.flatnonzero((labels == 2).any(axis=(1, 2)))}
    assert len(nodule_slices) == 10 and (labels == 1).any(axis=(1, 2)).all()  # lung on every slice

    for fraction in (0.5, 0.75):
        ds = build_train_dataset(_cfg(foreground_fraction=fraction, foreground_labels=[2]), [entry])
        assert isinstance(ds, SliceSamples) and len(ds) == N_SLICES
        slices, in_crop = _draws(ds)
        positive = [z in nodule_slices for z in slices]
        assert np.mean(positive) == pytest.approx(fraction, abs=1 / N_SLICES)
        # every sample from a nodule slice is cropped around the nodule; the others come from slices without
        assert in_crop == positive

    # default: any label is foreground -> lung slices count, every epoch draws each slice once (no
    # over-sampling of the nodule), and crops are placed at random (some miss the nodule)
    ds = build_train_dataset(_cfg(foreground_fraction=0.75), [entry])
    slices, in_crop = _draws(ds)
    for epoch in range(EPOCHS):
        assert sorted(slices[epoch * N_SLICES:(epoch + 1) * N_SLICES]) == list(range(N_SLICES))
    positive = [z in nodule_slices for z in slices]
    assert np.mean(positive) == pytest.approx(len(nodule_slices) / N_SLICES)
    assert sum(in_crop) < sum(positive)
    assert all(p for p, c in zip(positive, in_crop, strict=True) if c)


def test_positive_crops_are_seeded_and_match_the_volume(lidc_case: tuple[ManifestEntry, np.ndarray]) -> None:
    entry, labels = lidc_case
    cfg = _cfg(foreground_fraction=1.0, foreground_labels=[2])
    a, b = build_train_dataset(cfg, [entry], seed=1), build_train_dataset(cfg, [entry], seed=1)
    for i in (0, 7):
        sa, sb = a[i], b[i]
        assert sa["id"] == sb["id"] and bool((sa["image"] == sb["image"]).all())
        # the cropped label is a 64 x 64 window of the slice's label map
        z = int(sa["id"].rsplit("#z", 1)[1])
        lab = sa["label"][0].numpy()
        windows = np.lib.stride_tricks.sliding_window_view(labels[z], (64, 64))
        assert (windows == lab).all(axis=(2, 3)).any()


def test_unknown_foreground_label_is_a_config_error(lidc_case: tuple[ManifestEntry, np.ndarray]) -> None:
    entry, _ = lidc_case
    with pytest.raises(ConfigError, match="foreground_labels"):
        build_train_dataset(_cfg(foreground_labels=[5]), [entry])
