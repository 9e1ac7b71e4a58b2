"""``medseg detect``: nodules in a CT (CSV, DICOM-SEG, SR, PNG); ``medseg evaluate-detection``: LUNA16 FROC / CPM."""

from __future__ import annotations

from pathlib import Path

import typer

from medseg.cli._app import app


@app.command("evaluate-detection")
def evaluate_detection_cli(
    pred: Path = typer.Option(..., "--pred", help="Candidates CSV: seriesuid,coordX,coordY,coordZ,probability (mm, LPS)."),
    annotations: Path = typer.Option(..., "--annotations", help="LUNA16 annotations.csv (seriesuid,coordX,coordY,coordZ,diameter_mm)."),
    excluded: Path | None = typer.Option(None, "--excluded", help="annotations_excluded.csv: candidates on these findings are ignored."),
    seriesuids: Path | None = typer.Option(None, "--seriesuids", help="Scans to evaluate, one SeriesInstanceUID per line (default: all series in the files)."),
    plot: Path | None = typer.Option(None, "--plot", help="Write the FROC curve to this PNG."),
    bootstrap: int = typer.Option(1000, "--bootstrap", min=0, help="Bootstrap samples over scans for the 95% CI (0 = none)."),
    seed: int = typer.Option(0, "--seed", help="Bootstrap seed."),
) -> None:
    """Sensitivity at 1/8..8 false positives per scan, CPM and bootstrap 95% CI (LUNA16 protocol)."""
    from rich.table import Table

    from medseg.cli.helpers import console
    from medseg.detect import evaluate_detection, plot_froc

    r = evaluate_detection(pred, annotations, excluded, seriesuids=seriesuids, n_bootstrap=bootstrap, seed=seed)
    table = Table(title=f"FROC: {r.n_scans} scans, {r.n_nodules} nodules, {r.n_detected} detected, "
                        f"{r.n_false_positives} FPs")
    for col in ("FPs/scan", "sensitivity", f"{r.confidence:.0%} CI"):
        table.add_column(col, justify="right")
    for row in r.table_rows():
        table.add_row(*row)
    console().print(table)
    if plot is not None:
        console().print(f"FROC plot: {plot_froc(r, plot)}")


@app.command("detect")
def detect_cli(
    ct: Path = typer.Argument(..., help="Chest CT in HU: DICOM series folder or NIfTI/MHA/NRRD."),
    checkpoint: Path = typer.Option(..., "--model", "-m", "--checkpoint", help="Lung + nodule checkpoint folder or a file in it (configs/ct_nodule.yaml)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder: candidates.csv, seg.dcm + sr.dcm (DICOM input), overlay.png."),
    threshold: float | None = typer.Option(None, "--threshold", help="Nodule probability threshold (default: the checkpoint's detect.threshold)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
) -> None:
    """Detect lung nodules: LUNA16 candidates CSV, DICOM-SEG (lung + nodules), TID 1500 SR and an overlay."""
    from medseg.cli.helpers import console
    from medseg.detect.pipeline import detect

    result, files = detect(ct, checkpoint, out, threshold=threshold, device=device)
    for i, d in enumerate(result.detections[:10], start=1):
        x, y, z = d.center
        console().print(f"nodule {i}: ({x:.1f}, {y:.1f}, {z:.1f}) mm LPS, {d.diameter_mm:.1f} mm, score {d.score:.3f}")
    console().print(f"{len(result.detections)} candidate(s); wrote {', '.join(p.name for p in files.values())} in {out}")
