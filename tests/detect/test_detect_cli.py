"""``medseg evaluate-detection``: output and exit codes."""

from __future__ import annotations

from pathlib import Path

import pytest

from medseg.cli import main


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_evaluate_detection_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ann = _write(tmp_path / "ann.csv", "seriesuid,coordX,coordY,coordZ,diameter_mm\nA,0,0,0,10\nB,0,0,0,8\n")
    exc = _write(tmp_path / "exc.csv", "seriesuid,coordX,coordY,coordZ,diameter_mm\nA,0,50,0,-1\n")
    pred = _write(
        tmp_path / "pred.csv",
        "seriesuid,coordX,coordY,coordZ,probability\nA,1,0,0,0.9\nA,0,51,0,0.95\nA,80,0,0,0.7\nB,30,0,0,0.8\n",
    )
    uids = _write(tmp_path / "uids.csv", "seriesuid\nA\nB\n")
    plot = tmp_path / "froc.png"
    code = main(["evaluate-detection", "--pred", str(pred), "--annotations", str(ann), "--excluded", str(exc),
                 "--seriesuids", str(uids), "--plot", str(plot), "--bootstrap", "20"])
    out = capsys.readouterr().out
    assert code == 0
    # counted: 0.9 TP, 0.8 FP, 0.7 FP over 2 scans; B's nodule missed -> 1/2 at every rate
    assert "CPM" in out and "0.500" in out and "2 scans, 2 nodules, 1 detected, 2 FPs" in out
    assert plot.is_file() and plot.stat().st_size > 1000


def test_evaluate_detection_cli_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ann = _write(tmp_path / "ann.csv", "seriesuid,coordX,coordY,coordZ,diameter_mm\nA,0,0,0,10\n")
    code = main(["evaluate-detection", "--pred", str(tmp_path / "missing.csv"), "--annotations", str(ann)])
    err = capsys.readouterr().err
    assert code == 2 and "missing.csv" in err and "not found" in err
    bad = _write(tmp_path / "bad.csv", "seriesuid,x,y,z,p\nA,1,2,3,0.5\n")
    assert main(["evaluate-detection", "--pred", str(bad), "--annotations", str(ann)]) == 2
    assert "missing column" in capsys.readouterr().err
