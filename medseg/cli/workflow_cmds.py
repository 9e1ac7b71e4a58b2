"""``medseg prelabel`` and ``medseg al select`` (labelling workflow)."""

from __future__ import annotations

from pathlib import Path

import typer

from medseg.cli._app import app
from medseg.cli.helpers import console, parse_shard

al_app = typer.Typer(help="Active learning: pick the next cases to annotate.", no_args_is_help=True)
app.add_typer(al_app, name="al")


@app.command("prelabel")
def prelabel_cli(
    inputs: list[Path] = typer.Argument(..., help="Folder(s) of studies, DICOM folders or image files."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder: per-case SEG/overlay + worklist.csv."),
    checkpoint: Path | None = typer.Option(None, "--model", "-m", "--checkpoint", help="Checkpoint folder or a file in it (default: shipped, by modality)."),
    shard: str | None = typer.Option(None, "--shard", help="i/n for SLURM array jobs."),
    skip_existing: bool = typer.Option(False, "--skip-existing"),
    no_tta: bool = typer.Option(False, "--no-tta", help="No flip TTA (faster; uncertainty from entropy only)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    tools: str = typer.Option("", "--format", help="Also write import files for annotation tools: coco, cvat, labelstudio (comma-separated)."),
    tool_shape: str = typer.Option("polygon", "--shape", help="Tool pre-labels as polygon (editable outlines) or mask (pixel-exact)."),
) -> None:
    """Pre-label studies for review (DICOM-SEG + overlay + mask) and rank them in worklist.csv, most worth a look first."""
    from medseg.cli.helpers import case_progress, out_folder
    from medseg.labelling import prelabel

    with case_progress(None) as hooks:
        res = prelabel(inputs, out_folder(out), checkpoint=checkpoint, shard=parse_shard(shard),
                       skip_existing=skip_existing, tta_flip=not no_tta, device=device,
                       tools=[x.strip() for x in tools.split(",") if x.strip()], tool_shape=tool_shape,
                       on_start=hooks["on_start"], on_case=hooks["on_case"], progress=hooks["progress"])
    for i, row in enumerate(res.worklist[:10], 1):
        console().print(f"{i:3d}. {row['case']:30s} {row['status']:6s} flags={len(row['qc_flags'])} "
                   f"uncertainty={row['uncertainty']:.3f}")
    for note in res.notes:
        console().print(f"note: {note}", markup=False)
    console().print(f"worklist: {res.worklist_csv}" + "".join(f"; {k}: {v}" for k, v in res.tool_files.items()))
    raise typer.Exit(res.batch.exit_code)


@al_app.command("select")
def al_select_cli(
    pool: list[Path] = typer.Option(..., "--pool", help="Unlabelled studies (folders or files)."),
    k: int = typer.Option(..., "--k", help="How many cases to pick."),
    checkpoint: Path | None = typer.Option(None, "--model", "-m", "--checkpoint", help="Current model (default: shipped)."),
    diversity: float = typer.Option(0.0, "--diversity", help="0 = most uncertain; up to 1 = spread out picks."),
    exclude: list[Path] = typer.Option([], "--exclude", help="Already labelled: a manifest CSV or paths."),
    out: Path = typer.Option(Path("selection.csv"), "--out", "-o", help="CSV of picked cases."),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Rank the pool by model uncertainty (entropy + flip-TTA disagreement) and pick the next K to annotate."""
    from medseg.labelling import select_cases

    sel = select_cases(pool, k, checkpoint=checkpoint, diversity=diversity, exclude=exclude, seed=seed, out_csv=out)
    for i, row in enumerate(sel.selected, 1):
        console().print(f"{i:3d}. {row['case']:30s} uncertainty={row['uncertainty']:.3f}  {row['input']}")
    console().print(f"selected {len(sel.selected)} of {len(sel.pool)}: {sel.csv}")
