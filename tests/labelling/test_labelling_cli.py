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


def test_qc_refuses_an_intensity_image_with_one_line(lidc_nifti: Path, shared_data: Path, capsys) -> None:
    """Regression (#16): `medseg qc ct.nii.gz` exited 0 and printed 22 KB of 'unknown label' lines."""
    assert main(["qc", str(lidc_nifti)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "ct.nii.gz" in lines[0] and "not a label map" in lines[0] and "Fix:" in lines[0]
    xray = shared_data / "cxr_lung_covid19_gb" / "images" / "kjr-21-e25-g001-l-a.jpg"
    assert main(["qc", str(xray)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "distinct values" in err


@pytest.fixture()
def lidc_nifti(repo_root: Path, tmp_path: Path) -> Path:
    """The 8-slice LIDC sample CT as NIfTI (an intensity image in HU)."""
    from medseg.io import read_image, write_image

    return write_image(read_image(repo_root / "sample_data" / "ct" / "LIDC-IDRI-0001"), tmp_path / "ct.nii.gz")


def test_agreement_names_structures_for_png_masks(masks, capsys) -> None:
    """Regression (#16): PNG masks gave 'label 1/2' rows; now the default lung names, with a note."""
    real, rater2, _ = masks
    assert main(["agreement", str(real), str(rater2)]) == 0
    text = capsys.readouterr().out
    assert "right lung" in text and "left lung" in text and "label 1" not in text
    assert "default labels" in text
    assert main(["agreement", str(real), str(rater2), "--labels", "1=Lung_R,2=Lung_L"]) == 0
    text = capsys.readouterr().out
    assert "Lung_R" in text and "default labels" not in text


def test_agreement_consensus_out(masks, tmp_path: Path, capsys) -> None:
    from medseg.io import read_image
    from medseg.labelling import agreement

    real, rater2, swapped = masks
    out = tmp_path / "out" / "consensus.png"
    args = ["agreement", str(real), str(rater2), str(swapped), "--method", "majority"]
    assert main([*args, "--consensus-out", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out.replace("\n", "")
    expected = agreement([real, rater2, swapped], method="majority").consensus
    np.testing.assert_array_equal(read_image(out, kind="label").array, expected.array)
    assert sorted(p.name for p in out.parent.iterdir()) == ["consensus.png"]
    # usage errors come before the work, in one line, and write nothing
    before = real.read_bytes()
    for bad, message in (
        ([str(real), str(rater2), "--consensus-out", str(tmp_path / "c2.png")], "3 or more masks"),
        ([*args[1:], "--consensus-out", str(tmp_path / "c.dcm")], "--image"),
        ([*args[1:], "--consensus-out", str(tmp_path / "c.jpg")], ".jpg"),
        ([*args[1:], "--consensus-out", str(real)], "overwrite an input"),
    ):
        assert main(["agreement", *bad]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
    assert real.read_bytes() == before
    assert not (tmp_path / "c2.png").exists() and not (tmp_path / "c.dcm").exists()
