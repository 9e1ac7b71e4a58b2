"""``medseg predict``, ``medseg summary`` and ``medseg demo``."""

from __future__ import annotations

from pathlib import Path

import typer

from medseg.cli._app import app
from medseg.errors import ConfigError

_FORMATS_HELP = "Comma-separated outputs: seg (DICOM-SEG), mask (NIfTI / PNG label map), overlay (PNG)."


def run_predict(inputs: list[Path], out: Path | None, **options: object) -> int:
    """Shared by predict and demo: discovery, progress, per-case lines, one summary line; exit code."""
    from medseg.cli.helpers import case_progress, console, err_console, out_folder
    from medseg.infer.batch import discover, predict

    if out is None:  # lungmask-style `medseg predict IN OUT`: OUT is the last argument when it does not exist yet
        if len(inputs) < 2 or inputs[-1].exists():
            raise ConfigError("no output folder given", path="--out", hint="add --out DIR (or `medseg predict IN OUT`)")
        inputs, out = inputs[:-1], inputs[-1]
    found = discover(inputs, out_dir=out_folder(out), naming=options.get("naming", "stem"))  # type: ignore[arg-type]
    for note in found.notes:
        err_console().print(f"note: {note}", markup=False)
    if not found.cases:
        raise ConfigError("no images or DICOM series found", path=", ".join(map(str, inputs)),
                          hint="point at image files, DICOM folders or folders of studies")
    with case_progress(len(found.cases)) as hooks:
        result = predict(inputs, out, cases=found.cases, **options, **hooks)  # type: ignore[arg-type]
    done = sum(r.status in ("ok", "empty", "skipped") for r in result.results)
    console().print(f"{done}/{len(result.results)} cases done, {result.n_failed} failed; outputs in {out}; "
                    f"summary: {result.summary_csv}", markup=False)
    return result.exit_code


@app.command("predict")
def predict_cli(
    inputs: list[Path] = typer.Argument(..., help="Image files, DICOM folders, folders of studies [then OUT if --out is not given]."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Output folder (per case files + summary.csv)."),
    checkpoint: Path | None = typer.Option(None, "--model", "-m", "--checkpoint", help="Checkpoint folder, a file in it, or a shipped model name (cxr_lung, cxr_lung_v7, ct_lung); default: shipped model by modality."),
    formats: str = typer.Option("seg,mask,overlay", "--format", help=_FORMATS_HELP),
    layout: str = typer.Option("folder", "--layout", help="folder: OUT/<case>/seg.dcm; flat: OUT/<case>.nii.gz, OUT/<case>_seg.dcm."),
    naming: str = typer.Option("stem", "--naming", help="Case names: stem (file/folder name) or dicom (PatientID_StudyDate_S<n>)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    shard: str | None = typer.Option(None, "--shard", help="i/n: process every n-th case from i (SLURM arrays); merge with `medseg summary OUT`."),
    skip_existing: bool = typer.Option(False, "--skip-existing", help="Skip cases finished before with all requested outputs."),
    dicom_source: Path | None = typer.Option(None, "--dicom-source", help="DICOM series a NIfTI input came from (for its SEG)."),
    spacing_mm: float | None = typer.Option(None, "--spacing-mm", help="CT in-plane inference spacing in mm (default: the model's training spacing)."),
    window: str | None = typer.Option(None, "--window", help="auto (one pass per slice where it fits), whole or sliding (overlapping windows)."),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Network inputs per forward pass."),
    precision: str | None = typer.Option(None, "--precision", help="auto (fp32 on CPU, fp16 on CUDA), fp32, bf16 or fp16."),
    no_body_crop: bool = typer.Option(False, "--no-body-crop", help="Run the network on the whole slice, not just the body's box."),
) -> None:
    """Segment lungs in every study found in INPUTS. Exit 0: all cases ok; 1: some cases failed (see summary.csv); 2: usage or input error."""
    from medseg.cli.helpers import infer_options, parse_formats, parse_shard

    infer = infer_options(spacing_mm=spacing_mm, window=window, batch_size=batch_size, precision=precision,
                          body_crop=False if no_body_crop else None)
    raise typer.Exit(run_predict(inputs, out, checkpoint=checkpoint, formats=parse_formats(formats), layout=layout,
                                 naming=naming, device=device, shard=parse_shard(shard), skip_existing=skip_existing,
                                 dicom_source=dicom_source, infer=infer))


@app.command("summary")
def summary_cli(out: Path = typer.Argument(..., help="The --out folder of one or more (sharded) predict runs.")) -> None:
    """Merge the results of every run and shard in OUT into OUT/summary.csv (one row per case)."""
    from medseg.cli.helpers import console
    from medseg.infer.batch import merge_summaries

    console().print(f"summary: {merge_summaries(out)}", markup=False)


@app.command("demo")
def demo_cli(
    out: Path = typer.Option(Path("medseg_demo"), "--out", "-o", help="Output folder."),
    data: Path = typer.Option(Path("sample_data"), "--data", help="Folder with the shipped samples."),
) -> None:
    """Run the shipped models on sample_data/ (a CXR DICOM and a CT series): DICOM-SEG + masks + overlays + summary.csv."""
    if not data.is_dir():
        raise ConfigError("sample data folder not found", path=data, hint="run from the medseg checkout or pass --data")
    inputs = [p for p in (data / "cxr" / "siim_cr_chest_pa.dcm", data / "ct" / "LIDC-IDRI-0001") if p.exists()]
    raise typer.Exit(run_predict(inputs, out))
