"""Training datasets: cache keys, disk cache, seeded augmentation, training == inference preprocessing, CT slices."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from medseg.config import Config, config_from_dict
from medseg.data.datasets import (
    ImageSamples,
    SliceSamples,
    build_train_dataset,
    cache_folder,
    cache_key,
    file_fingerprint,
)
from medseg.data.manifest import ManifestEntry
from medseg.data.preprocess import prepare_inputs
from medseg.errors import InputError
from medseg.io import read_image

CXR_STEMS = ["kjr-21-e24-g001-l-a", "kjr-21-e24-g002-l-a", "kjr-21-e25-g001-l-a"]


@pytest.fixture(scope="module")
def cxr_entries(shared_data: Path) -> list[ManifestEntry]:
    d = shared_data / "cxr_lung_covid19_gb"
    return [ManifestEntry(d / "images" / f"{s}.jpg", d / "masks" / f"{s}_lungs.png", "train") for s in CXR_STEMS]


@pytest.fixture(scope="module")
def ct_entries(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> list[ManifestEntry]:
    """Two real CT crops (12 slices each across a lung base, every 4th pixel in-plane) as NIfTI cases."""
    out = tmp_path_factory.mktemp("ct_cases")
    entries = []
    for case, z0 in (("LUNG1-002", 90), ("LUNG1-003", 70)):
        src = shared_data / "ct_lung_nsclc_radiomics" / case
        (out / case).mkdir()
        for name, dst in (("ct.nii.gz", "ct.nii.gz"), ("lung_label.nii.gz", "label.nii.gz")):
            img = sitk.ReadImage(str(src / name))[::4, ::4, z0 : z0 + 12]
            sitk.WriteImage(img, str(out / case / dst))
        entries.append(ManifestEntry(out / case / "ct.nii.gz", out / case / "label.nii.gz", "train", case))
    return entries


def _cfg(**data: object) -> Config:
    base: dict[str, object] = {"image_size": [64, 64], "cache": "memory"}
    base.update(data)
    model = {"encoder_weights": "none", "in_channels": 3} if base.get("task") == "ct" else {"encoder_weights": "none"}
    return config_from_dict({"data": base, "model": model}).validate()


def test_cache_key_tracks_the_preprocessing_config() -> None:
    key = cache_key(_cfg())
    assert cache_key(_cfg()) == key
    assert cache_key(_cfg(image_size=[96, 64])) != key
    assert cache_key(_cfg(intensity_percentiles=[1.0, 99.0])) != key
    assert cache_key(_cfg(task="ct")) != key
    ct = cache_key(_cfg(task="ct"))
    assert cache_key(_cfg(task="ct", hu_window=[-1200.0, 600.0])) != ct
    assert cache_key(_cfg(task="ct", spacing_mm=1.5)) != ct
    # settings that do not change the cached tensors keep the cache
    assert cache_key(_cfg(batch_size=16, num_workers=2)) == key
    assert cache_key(_cfg(augment={"affine_prob": 0.9})) == key
    assert cache_key(_cfg(task="ct", image_size=[128, 128])) == ct  # CT crops are drawn after the cache


def test_file_fingerprint_follows_content(tmp_path: Path, shared_data: Path) -> None:
    src = shared_data / "cxr_lung_covid19_gb" / "masks" / f"{CXR_STEMS[0]}_lungs.png"
    f = tmp_path / "m.png"
    shutil.copyfile(src, f)
    st = f.stat()
    fp = file_fingerprint(f)
    assert file_fingerprint(f) == fp
    data = bytearray(f.read_bytes())
    data[100] ^= 0xFF
    f.write_bytes(bytes(data))
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size and mtime: the content still counts
    assert file_fingerprint(f) != fp


def test_training_samples_equal_inference_inputs_without_augmentation(cxr_entries: list[ManifestEntry]) -> None:
    cfg = _cfg(augment={"enabled": False})
    ds = build_train_dataset(cfg, cxr_entries)
    assert isinstance(ds, ImageSamples) and len(ds) == 3
    for i, e in enumerate(cxr_entries):
        sample = ds[i]
        assert sample["image"].shape == (1, 64, 64) and sample["label"].shape == (1, 64, 64)
        assert sample["label"].dtype == torch.int64 and set(sample["label"].unique().tolist()) == {0, 1, 2}
        expected = prepare_inputs(read_image(e.image), cfg).tensor[0]
        torch.testing.assert_close(sample["image"], expected)


def test_augmentation_is_seeded_per_sample_and_epoch(cxr_entries: list[ManifestEntry]) -> None:
    cfg = _cfg(augment={"affine_prob": 1.0, "intensity_prob": 1.0})
    ds = build_train_dataset(cfg, cxr_entries, seed=3)
    a = ds[1]
    torch.testing.assert_close(ds[2]["image"], ds[2]["image"])
    torch.testing.assert_close(ds[1]["image"], a["image"])  # same (seed, epoch, index): same sample
    torch.testing.assert_close(ds[1]["label"], a["label"])
    ds.set_epoch(1)
    assert not torch.equal(ds[1]["image"], a["image"])  # another epoch: another augmentation
    other = build_train_dataset(cfg, cxr_entries, seed=3)
    other.set_epoch(1)
    torch.testing.assert_close(other[1]["image"], ds[1]["image"])  # a fresh dataset (resume) agrees
    assert set(a["label"].unique().tolist()) <= {0, 1, 2}


def test_disk_cache_is_keyed_and_reused(cxr_entries: list[ManifestEntry], tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _cfg(cache="disk", cache_dir=str(tmp_path / "cache"), augment={"enabled": False})
    first = build_train_dataset(cfg, cxr_entries)
    ref = [first[i]["image"] for i in range(3)]
    folder = cache_folder(cfg)
    assert folder.parent == tmp_path / "cache" and folder.name == cache_key(cfg)
    assert len(list(folder.glob("*.pt"))) == 3

    import medseg.io

    def no_reading(*args: object, **kwargs: object) -> None:
        raise InputError("the cache should have been used")

    monkeypatch.setattr(medseg.io, "read_image", no_reading)
    again = build_train_dataset(cfg, cxr_entries)
    for i in range(3):
        torch.testing.assert_close(again[i]["image"], ref[i])
    # another preprocessing config never reads that cache: it needs the files again
    changed = _cfg(cache="disk", cache_dir=str(tmp_path / "cache"), image_size=[96, 96])
    with pytest.raises(InputError, match="cache should have been used"):
        build_train_dataset(changed, cxr_entries)[0]


def test_ct_slice_samples(ct_entries: list[ManifestEntry], tmp_path: Path) -> None:
    cfg = _cfg(task="ct", context_slices=3, foreground_fraction=1.0, augment={"enabled": False})
    ds = build_train_dataset(cfg, ct_entries)
    assert isinstance(ds, SliceSamples) and len(ds) == 24
    labels = {e.image: read_image(e.label, kind="label").array for e in ct_entries}
    for i in range(len(ds)):
        s = ds[i]
        assert s["image"].shape == (3, 64, 64) and s["label"].shape == (1, 64, 64)
        path, z = s["id"].split("#z")
        assert labels[Path(path)][int(z)].any()  # foreground_fraction=1: every slice has lung
    bg = build_train_dataset(_cfg(task="ct", foreground_fraction=0.0, augment={"enabled": False}), ct_entries)
    for i in range(len(bg)):
        path, z = bg[i]["id"].split("#z")
        assert not labels[Path(path)][int(z)].any()

    # the k channels of a sample are the neighbours of its slice, as prepare_inputs stacks them (the 128 px
    # slice is cropped to 64 px: compare against every 64 px window of the prepared slice)
    s = ds[0]
    path, z = s["id"].split("#z")
    full = prepare_inputs(read_image(path), cfg).tensor[int(z)]
    windows = full.unfold(1, 64, 1).unfold(2, 64, 1)  # (3, ny, nx, 64, 64)
    diff = (windows - s["image"][:, None, None]).abs().amax(dim=(0, 3, 4))
    assert float(diff.min()) < 1e-5

    # the disk cache (memory-mapped volumes) gives the same samples
    disk = build_train_dataset(_cfg(task="ct", foreground_fraction=1.0, augment={"enabled": False}, cache="disk",
                                    cache_dir=str(tmp_path / "c")), ct_entries)
    for i in (0, 5, 23):
        torch.testing.assert_close(disk[i]["image"], ds[i]["image"])
        assert disk[i]["id"] == ds[i]["id"]
    assert np.isclose(len(list(cache_folder(disk.cfg).glob("*.pt"))), 2)
