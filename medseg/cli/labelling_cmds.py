"""``medseg agreement`` and ``medseg qc``."""

from __future__ import annotations

from pathlib import Path

import typer

from medseg.cli._app import app
from medseg.errors import ConfigError


def _parse_labels(text: str | None) -> dict[int, str] | None:
    """``"1=right lung,2=left lung"`` -> ``{1: "right lung", 2: "left lung"}``."""
    if not text:
        return None
    out: dict[int, str] = {}
    for part in text.split(","):
        value, sep, name = part.partition("=")
        if not sep or not value.strip().isdigit() or not name.strip():
            raise ConfigError(f"bad --labels entry {part!r}", hint='write it as "1=right lung,2=left lung"')
        out[int(value)] = name.strip()
    return out


def _console():  # -> rich.console.Console
    import sys

    from rich.console import Console

    # pipes and logs get a wide table instead of rich's 80-column default, so nothing is cut
    return Console(width=None if sys.stdout.isatty() else 200)


def _num(v: float | None, digits: int = 3) -> str:
    return "" if v is None or v != v else f"{v:.{digits}f}"


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
    from rich.table import Table

    from medseg.labelling import agreement
    from medseg.labelling.compare import check_consensus_path

    if method not in ("staple", "majority"):
        raise ConfigError(f"unknown --method {method!r}", hint="use staple or majority")
    names = _parse_labels(labels)
    if consensus_out is not None:  # fail before the work, not after it
        if len(masks) < 3:
            raise ConfigError(
                f"--consensus-out needs 3 or more masks, got {len(masks)}",
                hint="a STAPLE / majority consensus of two raters is not defined here; pass a third mask",
            )
        check_consensus_path(consensus_out, [*masks, *([image] if image else [])], source=image)
    report = agreement(masks, labels=names, method=method, source=image)  # type: ignore[arg-type]
    table = Table(
        "structure",
        "reference",
        "rater",
        "Dice",
        f"HD95 ({report.distance_unit})",
        f"size ref ({report.size_unit})",
        f"size rater ({report.size_unit})",
        "diff %",
    )
    size_digits = 0 if report.size_unit in ("px", "voxels") else 1
    for r in report.rows:
        ref, rater = ("pairwise mean", "") if r.comparison == "pairwise mean" else (r.reference, r.rater)
        table.add_row(
            r.structure,
            ref,
            rater,
            _num(r.dice),
            _num(r.hd95, 2),
            _num(r.size_reference, size_digits),
            _num(r.size_rater, size_digits),
            _num(r.size_diff_pct, 1),
        )
    console = _console()
    console.print(table)
    for note in report.notes:
        console.print(f"[yellow]note:[/] {note}")
    if out is not None:
        console.print(f"wrote {report.to_csv(out)}")
    if consensus_out is not None:
        console.print(f"wrote {report.save_consensus(consensus_out)} ({report.method} consensus)")


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
    from medseg.labelling import qc_files

    results = qc_files(masks, images=image or None, label_names=_parse_labels(labels))
    console = _console()
    for path, flags in results.items():
        console.print(f"[green]ok[/]      {path}" if not flags else f"[red]flagged[/] {path}")
        for f in flags:
            console.print(f"    {f.structure}: [bold]{f.check}[/]: {f.reason}")
    n = sum(1 for flags in results.values() if flags)
    console.print(f"{n}/{len(results)} masks flagged")
    if fail_on_flag and n:
        raise typer.Exit(1)
