"""``medseg evaluate-detection``: LUNA16 FROC / CPM of nodule candidates."""

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
    from rich.console import Console
    from rich.table import Table

    from medseg.detect import evaluate_detection, plot_froc

    r = evaluate_detection(pred, annotations, excluded, seriesuids=seriesuids, n_bootstrap=bootstrap, seed=seed)
    table = Table(title=f"FROC: {r.n_scans} scans, {r.n_nodules} nodules, {r.n_detected} detected, "
                        f"{r.n_false_positives} FPs")
    for col in ("FPs/scan", "sensitivity", f"{r.confidence:.0%} CI"):
        table.add_column(col, justify="right")
    for row in r.table_rows():
        table.add_row(*row)
    Console().print(table)
    if plot is not None:
        typer.echo(f"FROC plot: {plot_froc(r, plot)}")
