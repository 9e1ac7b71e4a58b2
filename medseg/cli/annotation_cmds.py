"""``medseg import-annotations``: a tool's corrected annotations back into label maps + manifest."""

from __future__ import annotations

from pathlib import Path

import typer

from medseg.cli._app import app


@app.command("import-annotations")
def import_annotations_cli(
    export: Path = typer.Argument(..., help="The tool's export: COCO JSON, CVAT annotations.xml/.zip, Label Studio JSON."),
    fmt: str = typer.Option(..., "--format", help="coco, cvat or labelstudio."),
    images: Path = typer.Option(..., "--images", help="Folder holding the annotated images."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder: labels/, manifest.csv, import_report.json."),
) -> None:
    """Turn an annotation tool's export into label maps on the images' grids and a manifest for `medseg train`."""
    from medseg.cli.helpers import console
    from medseg.labelling.annotations import import_annotations

    res = import_annotations(export, fmt, images, out)
    console().print(f"{len(res.entries)} label map(s); manifest: {res.manifest}")
    for key, value in res.report().items():
        if key not in ("manifest", "n_labels") and value:
            console().print(f"{key}: {value}")
