"""``medseg autolabel ct-lungs``: model-free lung labels for a chest CT."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medseg.cli._app import app

autolabel_app = typer.Typer(
    help="Model-free auto-labellers (pre-labels for annotators).", no_args_is_help=True
)
app.add_typer(autolabel_app, name="autolabel")


@autolabel_app.command("ct-lungs")
def ct_lungs_cli(
    input: Annotated[Path, typer.Argument(help="Chest CT in HU: DICOM folder/file or NIfTI/MHA/NRRD.")],
    out: Annotated[
        Path,
        typer.Option(
            "--out", "-o", help="Label map: .nii.gz/.nii/.mha/.nrrd, or .dcm (DICOM-SEG; DICOM input)."
        ),
    ],
) -> None:
    """Label the lungs (1 right, 2 left) by HU thresholds and morphology; writes a label map or DICOM-SEG."""
    from medseg.cli.helpers import console
    from medseg.labelling.autolabel import LUNG_LABELS, autolabel

    labels, written = autolabel(input, out)
    ml = labels.voxel_volume / 1000.0
    sizes = ", ".join(f"{n} {int((labels.array == v).sum()) * ml:.0f} ml" for v, n in LUNG_LABELS.items())
    console().print(f"wrote {written} ({sizes})")
