"""``medseg predict`` and ``medseg demo``."""

from __future__ import annotations

from pathlib import Path

import typer

from medseg.cli._app import app
from medseg.errors import ConfigError


def _parse_shard(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError as e:
        raise ConfigError(f"bad --shard {text!r}", hint="write it as i/n, e.g. 0/4") from e
    return i, n


def _run_predict(inputs: list[Path], out: Path, checkpoint: Path | None, formats: str, shard: str | None,
                 skip_existing: bool, dicom_source: Path | None = None) -> int:
    from rich.console import Console
    from rich.progress import Progress

    from medseg.infer.batch import discover_cases, predict

    console = Console(stderr=True)
    cases = discover_cases(inputs)
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("predicting", total=len(cases) if shard is None else None)
        result = predict(inputs, out, checkpoint=checkpoint, formats=[f.strip() for f in formats.split(",") if f],
                         shard=_parse_shard(shard), skip_existing=skip_existing, cases=cases,
                         on_case=lambda r: bar.advance(task), dicom_source=dicom_source)
    for r in result.results:
        colour = {"ok": "green", "skipped": "yellow"}.get(r.status, "red")
        console.print(f"[{colour}]{r.status:7}[/] {r.case} {r.message}")
    typer.echo(f"{len(result.results) - result.n_failed}/{len(result.results)} cases done; outputs in {out}; "
               f"summary: {result.summary_csv}")
    return 1 if result.n_failed else 0


@app.command("predict")
def predict_cli(
    inputs: list[Path] = typer.Argument(..., help="Image files, DICOM folders, or folders of studies."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (one sub-folder per case + summary.csv)."),
    checkpoint: Path | None = typer.Option(None, "--checkpoint", "-c", help="Checkpoint folder (default: shipped model by modality)."),
    formats: str = typer.Option("seg,nifti,png", "--format", "-f", help="Comma-separated: seg, nifti, png."),
    shard: str | None = typer.Option(None, "--shard", help="i/n: process every n-th case from i (SLURM arrays)."),
    skip_existing: bool = typer.Option(False, "--skip-existing", help="Skip cases whose outputs exist."),
    dicom_source: Path | None = typer.Option(None, "--dicom-source", help="DICOM series a NIfTI input came from (for its SEG)."),
) -> None:
    """Segment lungs in every study found in INPUTS and write DICOM-SEG, masks and overlays."""
    raise typer.Exit(_run_predict(inputs, out, checkpoint, formats, shard, skip_existing, dicom_source))


@app.command("demo")
def demo_cli(
    out: Path = typer.Option(Path("medseg_demo"), "--out", "-o", help="Output folder."),
    data: Path = typer.Option(Path("sample_data"), "--data", help="Folder with the shipped samples."),
) -> None:
    """Run the shipped models on sample_data/ (a CXR DICOM and a CT series): DICOM-SEG + overlays + summary.csv."""
    if not data.is_dir():
        raise ConfigError("sample data folder not found", path=data, hint="run from the medseg checkout or pass --data")
    inputs = [p for p in (data / "cxr" / "siim_cr_chest_pa.dcm", data / "ct" / "LIDC-IDRI-0001") if p.exists()]
    raise typer.Exit(_run_predict(inputs, out, None, "seg,png", None, False))
