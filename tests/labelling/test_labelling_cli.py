"""``medseg agreement`` and ``medseg qc``: output, CSV and exit codes."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from medseg.cli import main

MASK = "kjr-21-e24-g001-l-a_lungs.png"  # 237 x 328


@pytest.fixture()
def masks(shared_data: Path, tmp_path: Path) -> tuple[Path, Path, Path]:
    """The real mask, a copy shifted 2 px (second rater) and a copy with left/right swapped."""
    real = shared_data / "cxr_lung_covid19_gb" / "masks" / MASK
    arr = np.array(PILImage.open(real))
    shifted = np.zeros_like(arr)
    shifted[:, 2:] = arr[:, :-2]
    swapped = np.select([arr == 1, arr == 2], [2, 1], 0).astype(np.uint8)
    PILImage.fromarray(shifted).save(tmp_path / "rater2.png")
    PILImage.fromarray(swapped).save(tmp_path / "swapped.png")
    return real, tmp_path / "rater2.png", tmp_path / "swapped.png"


def test_agreement_prints_table_and_writes_csv(masks, tmp_path: Path, capsys) -> None:
    real, rater2, _ = masks
    out = tmp_path / "agree.csv"
    rc = main(
        ["agreement", str(real), str(rater2), "--out", str(out), "--labels", "1=right lung,2=left lung"]
    )
    text = capsys.readouterr().out
    assert rc == 0
    assert "right lung" in text and "left lung" in text and "HD95 (px)" in text and "pixels" in text
    rows = list(csv.DictReader(out.open()))
    assert [r["structure"] for r in rows] == ["right lung", "left lung"]
    assert all(float(r["hausdorff"]) == pytest.approx(2.0) for r in rows)


def test_agreement_three_raters_majority(masks, capsys) -> None:
    real, rater2, _ = masks
    assert main(["agreement", str(real), str(rater2), str(real), "--method", "majority"]) == 0
    text = capsys.readouterr().out
    assert "consensus (majority)" in text and "pairwise mean" in text and f"{MASK} " in text


def test_agreement_errors_exit_2(masks, tmp_path: Path, capsys) -> None:
    real, _, _ = masks
    small = tmp_path / "small.png"
    PILImage.fromarray(np.zeros((10, 10), np.uint8)).save(small)
    assert main(["agreement", str(real), str(small)]) == 2
    err = capsys.readouterr().err
    assert "small.png" in err and "shape" in err
    assert main(["agreement", str(real)]) == 2
    assert main(["agreement", str(real), str(real), str(real), "--method", "vote"]) == 2
    assert main(["agreement", str(real), str(tmp_path / "missing.png")]) == 2


def test_qc_exit_codes(masks, capsys) -> None:
    real, _, swapped = masks
    assert main(["qc", str(real)]) == 0
    assert "0/1 masks flagged" in capsys.readouterr().out
    assert main(["qc", str(real), str(swapped)]) == 0  # flags alone do not fail
    text = capsys.readouterr().out
    assert "swapped" in text and "1/2 masks flagged" in text
    assert main(["qc", str(real), str(swapped), "--fail-on-flag"]) == 1
    assert main(["qc", str(real), "--fail-on-flag"]) == 0
    assert main(["qc", str(real), "--labels", "1=right lung,two=left"]) == 2
    assert "--labels" in capsys.readouterr().err


def test_qc_with_ct_image(shared_data: Path, capsys) -> None:
    folder = shared_data / "ct_lung_nsclc_radiomics" / "LUNG1-003"
    rc = main(
        ["qc", str(folder / "lung_label.nii.gz"), "--image", str(folder / "ct.nii.gz"), "--fail-on-flag"]
    )
    assert rc == 0 and "0/1 masks flagged" in capsys.readouterr().out
