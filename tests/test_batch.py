"""Batch prediction: discovery, outputs per case, summary.csv, bad studies skipped, shards, skip-existing."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from medseg.cli import main
from medseg.infer.batch import discover_cases, predict

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "sample_data"


@pytest.fixture(scope="module")
def cxr_checkpoint(tiny_cxr_checkpoint: Path) -> Path:
    return tiny_cxr_checkpoint


@pytest.fixture()
def studies(tmp_path: Path) -> Path:
    root = tmp_path / "studies"
    (root / "a").mkdir(parents=True)
    shutil.copy(SAMPLES / "cxr" / "siim_cr_chest_pa.dcm", root / "a" / "cxr.dcm")
    shutil.copy(SAMPLES / "cxr" / "ARDSSevere.png", root / "b.png")
    (root / "broken.nii.gz").write_bytes(b"not a nifti at all")
    return root


def test_discovery_finds_each_study(studies: Path) -> None:
    names = sorted(c.name for c in discover_cases([studies]))
    assert names == ["b", "broken", "cxr"]
    ct = discover_cases([SAMPLES / "ct" / "LIDC-IDRI-0001"])
    assert len(ct) == 1 and ct[0].series_uid is not None


def test_batch_writes_outputs_and_summary_and_survives_a_bad_case(studies: Path, tmp_path: Path,
                                                                   cxr_checkpoint: Path) -> None:
    before = {p: p.read_bytes() for p in studies.rglob("*") if p.is_file()}
    out = tmp_path / "out"
    res = predict([studies], out, checkpoint=cxr_checkpoint)
    status = {r.case: r.status for r in res.results}
    assert status == {"b": "ok", "broken": "error", "cxr": "ok"}
    assert (out / "cxr" / "seg.dcm").is_file() and (out / "cxr" / "overlay.png").is_file()
    assert (out / "cxr" / "labels.png").is_file()
    # a PNG input has no DICOM to refer to: NIfTI/PNG mask instead of a SEG, and the summary says so
    assert not (out / "b" / "seg.dcm").exists() and (out / "b" / "labels.png").is_file()
    rows = list(csv.DictReader(res.summary_csv.open()))
    by_case = {r["case"]: r for r in rows}
    assert "no DICOM" in by_case["b"]["message"]
    assert "broken.nii.gz" in by_case["broken"]["message"]
    assert float(by_case["cxr"]["right lung area_cm2"]) > 0
    # inputs untouched, nothing written next to them
    assert {p: p.read_bytes() for p in studies.rglob("*") if p.is_file()} == before

    import highdicom as hd

    seg = hd.seg.segread(out / "cxr" / "seg.dcm")
    assert seg.SeriesDescription and seg.ContentCreatorName


def test_shards_partition_the_cases_and_skip_existing(studies: Path, tmp_path: Path, cxr_checkpoint: Path) -> None:
    out = tmp_path / "out"
    parts = [predict([studies], out, checkpoint=cxr_checkpoint, formats=["png"], shard=(i, 2)) for i in range(2)]
    seen = [r.case for p in parts for r in p.results]
    assert sorted(seen) == ["b", "broken", "cxr"]
    assert (out / "summary-0-of-2.csv").is_file() and (out / "summary-1-of-2.csv").is_file()
    again = predict([studies], out, checkpoint=cxr_checkpoint, formats=["png"], skip_existing=True)
    assert {r.case: r.status for r in again.results}["cxr"] == "skipped"


def test_cli_predict_exit_codes(studies: Path, tmp_path: Path, cxr_checkpoint: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    ok = main(["predict", str(studies / "b.png"), "--out", str(tmp_path / "o1"), "-m", str(cxr_checkpoint),
               "--format", "png"])
    assert ok == 0
    assert "summary" in capsys.readouterr().out
    bad = main(["predict", str(studies), "--out", str(tmp_path / "o2"), "-m", str(cxr_checkpoint)])
    assert bad == 1  # one case failed, the others were written
    assert (tmp_path / "o2" / "cxr" / "seg.dcm").is_file()
    assert main(["predict", str(studies), "--out", str(tmp_path / "o3"), "--format", "jpeg"]) == 2
    assert main(["predict", str(studies), "--out", str(tmp_path / "o3"), "--shard", "3/2"]) == 2


def test_nifti_input_gets_a_seg_when_pointed_at_its_dicom_series(tmp_path: Path, cxr_checkpoint: Path) -> None:
    import highdicom as hd
    import numpy as np

    from medseg.io import read_image, write_image

    dicom = SAMPLES / "cxr" / "siim_cr_chest_pa.dcm"
    nii = write_image(read_image(dicom), tmp_path / "cxr.nii.gz")
    out = tmp_path / "out"
    plain = predict([nii], out, checkpoint=cxr_checkpoint, formats=["seg"])
    assert "no DICOM" in plain.results[0].message and not (out / "cxr" / "seg.dcm").exists()
    linked = predict([nii], tmp_path / "out2", checkpoint=cxr_checkpoint, formats=["seg"], dicom_source=dicom)
    assert linked.results[0].status == "ok", linked.results[0].message
    seg = hd.seg.segread(tmp_path / "out2" / "cxr" / "seg.dcm")
    src = read_image(dicom).source.datasets[0]
    assert seg.StudyInstanceUID == src.StudyInstanceUID
    ref = seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID
    assert ref == src.SOPInstanceUID
    assert np.asarray(seg.pixel_array).any()
