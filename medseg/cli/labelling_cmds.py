"""``medseg agreement`` and ``medseg qc``."""

from __future__ import annotations

from pathlib import Path

import typer

from medseg.cli._app import app


@app.command("agreement")
def agreement_cli(
    masks: list[Path] = typer.Argument(
        ..., help="Two or more label maps of the same image (PNG, NIfTI, DICOM-SEG, ...)."
    ),
    out: Path | None = typer.Option(None, "--out", "-o", help="Write the table as CSV here."),
    method: str = typer.Option("staple", "--method", help="Consensus for 3+ raters: staple or majority."),
    labels: str | None = typer.Option(
        None, "--labels", help='Structures to compare, e.g. "1=right lung,2=left lung".'
    ),
    image: Path | None = typer.Option(
        None, "--image", help="The annotated image: puts DICOM-SEGs on its grid; all masks must match it."
    ),
    consensus_out: Path | None = typer.Option(
        None,
        "--consensus-out",
        help="Save the consensus mask (3+ masks; .nii.gz, .nrrd, .mha, .png, or .dcm with a DICOM --image).",
    ),
) -> None:
    """Agreement between annotators: Dice, HD95 and size difference per structure (+ consensus for 3+)."""
    from medseg.cli.helpers import agreement_table, console, parse_labels
    from medseg.labelling import agreement
    from medseg.labelling.compare import check_consensus_path

    if consensus_out is not None:  # fail before the work, not after it
        check_consensus_path(consensus_out, [*masks, *([image] if image else [])], source=image, n_masks=len(masks))
    report = agreement(masks, labels=parse_labels(labels), method=method, source=image)  # type: ignore[arg-type]
    console().print(agreement_table(report))
    for note in report.notes:
        console().print(f"[yellow]note:[/] {note}")
    if out is not None:
        console().print(f"wrote {report.to_csv(out)}")
    if consensus_out is not None:
        console().print(f"wrote {report.save_consensus(consensus_out)} ({report.method} consensus)")


@app.command("qc")
def qc_cli(
    masks: list[Path] = typer.Argument(
        ..., help="Lung label maps to check (PNG, NIfTI, DICOM-SEG, ...), not the images themselves."
    ),
    image: list[Path] = typer.Option(
        [], "--image", help="CT image of each mask (repeat, same order) for the outside-body check."
    ),
    labels: str | None = typer.Option(
        None, "--labels", help='Label names, default "1=right lung,2=left lung".'
    ),
    fail_on_flag: bool = typer.Option(
        False, "--fail-on-flag", help="Exit with code 1 when any mask is flagged."
    ),
) -> None:
    """Flag implausible lung masks (empty, tiny/huge, extra components, L/R swapped, border, outside body)."""
    from medseg.cli.helpers import console, parse_labels
    from medseg.labelling import qc_files

    results = qc_files(masks, images=image or None, label_names=parse_labels(labels))
    for path, flags in results.items():
        console().print(f"[green]ok[/]      {path}" if not flags else f"[red]flagged[/] {path}")
        for f in flags:
            console().print(f"    {f.structure}: [bold]{f.check}[/]: {f.reason}")
    n = sum(1 for flags in results.values() if flags)
    console().print(f"{n}/{len(results)} masks flagged")
    if fail_on_flag and n:
        raise typer.Exit(1)
