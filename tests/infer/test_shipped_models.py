"""The models shipped inside the package load offline and segment the shipped samples sensibly."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from medseg.cli import main
from medseg.infer import Predictor, shipped_checkpoint
from medseg.io import read_image
from medseg.metrics import dice

SAMPLES = Path(__file__).resolve().parents[2] / "sample_data"


@pytest.mark.parametrize("task", ["cxr", "ct"])
def test_shipped_checkpoints_have_cards_and_research_use_notice(task: str) -> None:
    folder = shipped_checkpoint(task)
    card = (folder / "MODEL_CARD.md").read_text()
    assert "Research use only" in card and "NC" in card
    assert (folder / "model.safetensors").stat().st_size < 20e6


def test_cxr_model_matches_the_radiologists_mask() -> None:
    # ARDSSevere is one of the 25 development images (a regression check, not a validation claim)
    pred = Predictor.from_checkpoint(task="cxr", device="cpu").predict(read_image(SAMPLES / "cxr" / "ARDSSevere.png"))
    ref = read_image(SAMPLES / "cxr" / "ARDSSevere_lungs.png", kind="label").array
    assert dice(pred.labels.array == 1, ref == 1) > 0.85
    assert dice(pred.labels.array == 2, ref == 2) > 0.85


def test_demo_runs_both_shipped_models(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["demo", "--out", str(tmp_path / "demo"), "--data", str(SAMPLES)])
    assert rc == 0
    assert "summary" in capsys.readouterr().out
    rows = {r["case"]: r for r in csv.DictReader((tmp_path / "demo" / "summary.csv").open())}
    assert {r["status"] for r in rows.values()} == {"ok"}
    ct = next(r for k, r in rows.items() if k.startswith("LIDC"))
    # 8 slices x 2.5 mm through the mid chest: each lung a few hundred mL of this slab, not zero, not absurd
    for side in ("right lung", "left lung"):
        assert 100 < float(ct[f"{side} volume_ml"]) < 400
        assert ct[f"{side} components"] == "1"
    cxr = rows["siim_cr_chest_pa"]
    for side in ("right lung", "left lung"):
        assert 20 < float(cxr[f"{side} area_cm2"]) < 150
    import highdicom as hd

    for case in rows:
        seg = hd.seg.segread(tmp_path / "demo" / case / "seg.dcm")
        assert {s.SegmentLabel for s in seg.SegmentSequence} == {"right lung", "left lung"}
        assert (tmp_path / "demo" / case / "overlay.png").is_file()


def test_ct_left_lung_is_on_the_patients_left() -> None:
    image = read_image(SAMPLES / "ct" / "LIDC-IDRI-0001")
    labels = Predictor.from_checkpoint(task="ct", device="cpu").predict(image).labels
    centres = {v: image.index_to_world(np.argwhere(labels.array == v).mean(0)[::-1])[0] for v in (1, 2)}
    assert centres[2] > centres[1] + 50  # LPS: +x is the patient's left


def test_ct_whole_slice_inference_agrees_with_the_sliding_windows_it_replaced() -> None:
    # issue #17: one forward per slice on the 1 mm grid instead of overlapping 256x256 windows
    image = read_image(SAMPLES / "ct" / "LIDC-IDRI-0001")
    fast = Predictor.from_checkpoint(task="ct", device="cpu")
    assert fast.config.infer.window == "auto" and fast._whole((360, 360))
    slow = Predictor.from_checkpoint(task="ct", device="cpu")
    slow.config.infer.window = "sliding"
    a, b = fast.predict(image).labels.array, slow.predict(image).labels.array
    for v in (1, 2):
        assert dice(a == v, b == v) > 0.98
