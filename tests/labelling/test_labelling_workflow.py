"""prelabel (worklist) and al select (uncertainty + diversity) end to end with a tiny checkpoint."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from medseg.cli import main
from medseg.config import load_config
from medseg.labelling import prelabel, select_cases


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    from medseg.models import build_model, save_checkpoint

    torch.manual_seed(0)
    cfg = load_config(None, ["model.encoder_weights=none", "data.image_size=[64, 64]"])
    model = build_model(cfg.model).eval()
    with torch.no_grad():
        model.segmentation_head[0].bias.copy_(torch.tensor([0.0, 1.0, 0.5]))
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny", model, cfg)


@pytest.fixture()
def pool(tmp_path: Path, shared_data: Path) -> Path:
    src = shared_data / "cxr_lung_covid19_gb" / "images"
    root = tmp_path / "pool"
    root.mkdir()
    for i in range(3):  # three exact duplicates ...
        shutil.copy(src / "kjr-21-e24-g001-l-a.jpg", root / f"dup{i}.jpg")
    shutil.copy(src / "covid-19-pneumonia-evolution-over-a-week-1-day0-PA.jpg", root / "other.jpg")  # ... and one other
    return root


def test_prelabel_writes_seg_free_outputs_and_a_ranked_worklist(pool: Path, tmp_path: Path,
                                                               tiny_checkpoint: Path) -> None:
    (pool / "broken.png").write_bytes(b"\x89PNG broken")
    res = prelabel([pool], tmp_path / "out", checkpoint=tiny_checkpoint)
    rows = list(csv.DictReader(res.worklist_csv.open()))
    assert [r["rank"] for r in rows] == [str(i) for i in range(1, len(rows) + 1)]
    assert {r["case"] for r in rows} == {"dup0", "dup1", "dup2", "other", "broken"}
    # failed and QC-flagged cases come first, then by uncertainty (descending) among unflagged ones
    flagged = [int(r["n_flags"]) > 0 for r in rows]
    assert flagged == sorted(flagged, reverse=True)
    assert rows[0]["case"] == "broken" or int(rows[0]["n_flags"]) > 0
    unflagged = [float(r["uncertainty"]) for r in rows if r["n_flags"] == "0"]
    assert unflagged == sorted(unflagged, reverse=True)
    for r in rows:
        if r["status"] == "ok":
            assert Path(r["overlay"]).is_file()
            assert float(r["tta_disagreement"]) >= 0.0  # flip TTA ran
    broken = next(r for r in rows if r["case"] == "broken")
    assert broken["status"] == "error" and "error" in broken["qc_flags"]


def test_select_with_diversity_skips_duplicates(pool: Path, tmp_path: Path, tiny_checkpoint: Path) -> None:
    plain = select_cases([pool], 3, checkpoint=tiny_checkpoint)
    assert len(plain.selected) == 3 and len(plain.pool) == 4
    scores = [r["uncertainty"] for r in plain.selected]
    assert scores == sorted(scores, reverse=True)
    diverse = select_cases([pool], 2, checkpoint=tiny_checkpoint, diversity=1.0, out_csv=tmp_path / "sel.csv")
    picked = sorted(r["case"] for r in diverse.selected)
    assert "other" in picked and sum(p.startswith("dup") for p in picked) == 1
    assert len(list(csv.DictReader((tmp_path / "sel.csv").open()))) == 2
    # already-labelled cases are excluded
    rest = select_cases([pool], 5, checkpoint=tiny_checkpoint, exclude=[pool / "other.jpg"])
    assert "other" not in {r["case"] for r in rest.pool}


def test_cli(pool: Path, tmp_path: Path, tiny_checkpoint: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["al", "select", "--pool", str(pool), "--k", "2", "-m", str(tiny_checkpoint),
               "--out", str(tmp_path / "s.csv")])
    assert rc == 0 and (tmp_path / "s.csv").is_file()
    assert main(["al", "select", "--pool", str(pool), "--k", "0", "-m", str(tiny_checkpoint)]) == 2
    assert main(["prelabel", str(pool), "--out", str(tmp_path / "p"), "-m", str(tiny_checkpoint)]) == 0
    assert "worklist" in capsys.readouterr().out


def test_prelabel_writes_annotation_tool_files_that_import_back(tmp_path: Path, tiny_checkpoint: Path) -> None:
    """medseg prelabel --format coco,cvat,labelstudio on a DICOM radiograph and a PNG: the tools' files
    list both cases in worklist order, and importing each back gives the pre-label again."""
    import json

    import numpy as np

    from medseg.io import read_image
    from medseg.labelling import import_annotations

    repo = Path(__file__).resolve().parents[2]
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(repo / "sample_data" / "cxr" / "siim_cr_chest_pa.dcm", src / "dx.dcm")
    shutil.copy(repo / "sample_data" / "cxr" / "ARDSSevere.png", src / "film.png")
    out = tmp_path / "out"
    rc = main(["prelabel", str(src), "--out", str(out), "-m", str(tiny_checkpoint), "--format",
               "coco,cvat,labelstudio", "--shape", "mask"])
    assert rc == 0
    assert (out / "dx" / "image.png").is_file()  # the DICOM radiograph as a picture the tools can open
    worklist = [r["case"] for r in csv.DictReader((out / "worklist.csv").open())]
    for tool, name in (("coco", "coco.json"), ("cvat", "annotations.xml"), ("labelstudio", "labelstudio_tasks.json")):
        export = out / "annotations" / name
        assert export.is_file(), tool
        if tool == "labelstudio":  # an annotator accepts the pre-annotations: they become the annotations
            tasks = json.loads(export.read_text())
            for task in tasks:
                task["annotations"] = [{"result": task["predictions"][0]["result"]}]
            export = tmp_path / "ls_export.json"
            export.write_text(json.dumps(tasks))
        back = import_annotations(export, tool, out.parent, tmp_path / f"import_{tool}")
        assert len(back.entries) == 2, (tool, back.report())
        for entry in back.entries:
            case = "dx" if "dx" in str(entry.image) else "film"
            want = read_image(out / case / "labels.png", kind="label").array
            got = read_image(entry.label, kind="label").array
            assert np.array_equal(got, want), (tool, case)
    coco = json.loads((out / "annotations" / "coco.json").read_text())
    order = [Path(im["file_name"]).parts[-2] if "image.png" in im["file_name"] else Path(im["file_name"]).stem
             for im in coco["images"]]
    assert order == [c for c in worklist if c in ("dx", "film")]
