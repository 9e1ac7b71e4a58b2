"""``medseg info`` and ``medseg convert``: look at and convert image files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medseg.cli._app import app


@app.command("info")
def info_cli(
    path: Annotated[Path, typer.Argument(help="Image file, DICOM file or DICOM folder.")],
    series_uid: Annotated[
        str | None, typer.Option("--series-uid", help="SeriesInstanceUID to describe.")
    ] = None,
) -> None:
    """Show modality, shape, spacing, orientation, intensity range and (DICOM folders) the series."""
    from rich.markup import escape

    from medseg.cli.helpers import console
    from medseg.io import image_info

    info = image_info(path, series_uid=series_uid)
    for key, value in info.rows():
        console().print(f"[bold]{key:<16}[/bold] {escape(value)}")
    if info.image is None:
        console().print("several image series: pass --series-uid UID to describe one")


@app.command("convert")
def convert_cli(
    src: Annotated[Path, typer.Argument(help="Input image: file, DICOM file or DICOM folder.")],
    dst: Annotated[Path, typer.Argument(help="Output file: .nii.gz, .nii, .mha, .mhd, .nrrd or .png.")],
    series_uid: Annotated[str | None, typer.Option("--series-uid", help="SeriesInstanceUID to read.")] = None,
    label: Annotated[bool, typer.Option("--label", help="Read and write an integer label image.")] = False,
) -> None:
    """Convert an image between formats (geometry kept in LPS)."""
    from medseg.cli.helpers import console
    from medseg.errors import ExportError
    from medseg.io import read_image, suffix_of, write_image

    image = read_image(src, series_uid=series_uid, kind="label" if label else "intensity")
    if suffix_of(dst) == ".png" and image.ndim != 2:  # say it about the user's file, before any write
        raise ExportError(
            f"a PNG holds one 2-D picture, but {src.name} is a {image.ndim}-D volume {image.shape}",
            path=dst,
            hint="convert a volume to .nii.gz, .nii, .mha or .nrrd",
        )
    write_image(image, dst)
    spacing = ", ".join(f"{s:.4g}" for s in image.spacing)
    console().print(f"wrote {dst}: {image.kind} {image.shape}, spacing ({spacing}) mm, {image.orientation}")
