"""Manifests: pairing by folder convention, CSV/JSON round trip, patient-level split, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medseg.cli import main
from medseg.config import DataConfig
from medseg.data.manifest import (
    ManifestEntry,
    build_manifest,
    load_entries,
    read_manifest,
    split_entries,
    write_manifest,
)
from medseg.errors import ConfigError, InputError


def test_build_manifest_pairs_cxr_folder_with_patient_ids(shared_data: Path) -> None:
    folder = shared_data / "cxr_lung_covid19_gb"
    entries = build_manifest(folder)
    import csv

    with (folder / "index.csv").open() as f:
        index = {(folder / r["image"]).resolve(): r for r in csv.DictReader(f)}
    assert len(entries) == len(index) == 25
    for e in entries:
        row = index[e.image]
        assert e.label == (folder / row["mask"]).resolve()
        assert e.patient_id == row["patient_id"]
    # 25 images of 22 patients: the three "pneumococcal-pneumonia-day*" films share one patient
    assert len({e.patient for e in entries}) == 22


def test_build_manifest_pairs_ct_cases(shared_data: Path) -> None:
    folder = shared_data / "ct_lung_nsclc_radiomics"
    entries = build_manifest(folder)
    assert [e.patient for e in entries] == ["LUNG1-002", "LUNG1-003"]
    for e in entries:
        assert e.image.name == "ct.nii.gz" and e.label is not None and e.label.name == "lung_label.nii.gz"
        assert e.image.parent == e.label.parent


def test_manifest_round_trip_csv_and_json(tmp_path: Path, shared_data: Path) -> None:
    entries = build_manifest(shared_data / "ct_lung_nsclc_radiomics")
    entries = [ManifestEntry(e.image, e.label, "val" if i else "train", e.patient_id) for i, e in enumerate(entries)]
    for name in ("m.csv", "sub/m.json"):
        out = write_manifest(entries, tmp_path / name)
        assert read_manifest(out) == entries  # outside the manifest's folder: absolute paths
    rows = json.loads((tmp_path / "sub/m.json").read_text())
    assert set(rows[0]) == {"image", "label", "split", "patient_id"}
    # files inside the manifest's folder are stored relative to it, so the folder can move
    (tmp_path / "data/img").mkdir(parents=True)
    for n in ("a.png", "a_mask.png"):
        (tmp_path / "data/img" / n).write_bytes(b"x")
    local = [ManifestEntry((tmp_path / "data/img/a.png").resolve(), (tmp_path / "data/img/a_mask.png").resolve())]
    write_manifest(local, tmp_path / "data/m.csv")
    assert (tmp_path / "data/m.csv").read_text().splitlines()[1] == "img/a.png,img/a_mask.png,,"
    (tmp_path / "data").rename(tmp_path / "moved")
    assert read_manifest(tmp_path / "moved/m.csv")[0].image == tmp_path / "moved/img/a.png"


def test_read_manifest_names_the_bad_row(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(b"x")
    m = tmp_path / "m.csv"
    m.write_text("image,label\na.png,a.png\nb.png,a.png\n")
    with pytest.raises(InputError, match=r"row 3.*b\.png does not exist"):
        read_manifest(m)
    m.write_text("image,label,split\na.png,a.png,training\n")
    with pytest.raises(InputError, match="unknown split 'training'"):
        read_manifest(m)
    with pytest.raises(InputError, match="manifest not found"):
        read_manifest(tmp_path / "nope.csv")


def _entries(n_patients: int, per_patient: int = 2) -> list[ManifestEntry]:
    return [
        ManifestEntry(Path(f"/d/p{p}_{i}.png"), Path(f"/d/p{p}_{i}_mask.png"), None, f"P{p}")
        for p in range(n_patients)
        for i in range(per_patient)
    ]


def test_patient_split_has_no_overlap_and_is_stable() -> None:
    entries = _entries(30)
    a = split_entries(entries, 0.2, seed=7)
    b = split_entries(list(reversed(entries)), 0.2, seed=7)
    train = {e.patient for e in a if e.split == "train"}
    val = {e.patient for e in a if e.split == "val"}
    assert not train & val
    assert len(val) == 6 and len(train) == 24
    assert {e.image: e.split for e in a} == {e.image: e.split for e in b}  # order does not matter
    c = split_entries(entries, 0.2, seed=8)
    assert {e.patient for e in c if e.split == "val"} != val  # the seed matters
    # adding patients moves none of the existing ones into the other set
    more = split_entries(_entries(40), 0.2, seed=7)
    moved = [e for e in more if e.patient in train and e.split == "val"]
    assert len(moved) <= 2  # only the ranking cut-off moves (6 -> 8 validation patients)
    assert {e.patient for e in more if e.split == "val"} >= val


def test_explicit_split_wins_and_pulls_the_patient_along() -> None:
    entries = _entries(10)
    entries[0] = ManifestEntry(entries[0].image, entries[0].label, "val", entries[0].patient_id)
    out = split_entries(entries, 0.0, seed=0)
    assert out[0].split == "val" and out[1].split == "val"  # same patient P0 follows its explicit row
    assert all(e.split == "train" for e in out[2:])


def test_load_entries_errors_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="data.manifest"):
        load_entries(DataConfig(manifest=""))
    with pytest.raises(ConfigError, match="does not exist"):
        load_entries(DataConfig(manifest=str(tmp_path / "missing.csv")))


def test_manifest_cli(tmp_path: Path, shared_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cxr.csv"
    assert main(["manifest", str(shared_data / "cxr_lung_covid19_gb"), "--out", str(out)]) == 0
    assert "25 image/label pairs (22 patients)" in capsys.readouterr().out
    assert len(read_manifest(out)) == 25
    assert main(["manifest", str(tmp_path / "none"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("medseg: error:") and "data folder not found" in err and "\n" not in err
