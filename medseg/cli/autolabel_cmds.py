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
    from rich.console import Console

    from medseg.labelling.autolabel import LUNG_LABELS, autolabel_ct_lungs
    from medseg.errors import ExportError
    from medseg.io import write_dicom_seg
    from medseg.export import write_mask
    from medseg.export.masks import MASK_SUFFIXES
    from medseg.io import read_image

    seg = out.name.lower().endswith(".dcm")
    if not seg and not out.name.lower().endswith(MASK_SUFFIXES):  # fail before the labelling, not after
        raise ExportError(
            "unsupported output format", path=out, hint=f"use .dcm or one of {', '.join(MASK_SUFFIXES)}"
        )
    ct = read_image(input, modality="CT")
    if seg and not ct.source.is_dicom:
        raise ExportError(
            "a DICOM-SEG needs a DICOM CT as input", path=out, hint="pass the DICOM folder or write .nii.gz"
        )
    labels = autolabel_ct_lungs(ct)
    if seg:
        write_dicom_seg(labels, ct, out, label_names=LUNG_LABELS, algorithm_name="medseg autolabel ct-lungs")
    else:
        write_mask(labels, out)
    ml = labels.voxel_volume / 1000.0
    sizes = ", ".join(f"{n} {int((labels.array == v).sum()) * ml:.0f} ml" for v, n in LUNG_LABELS.items())
    Console(highlight=False).print(f"wrote {out} ({sizes})")
