"""The typer application object shared by the command modules."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="medseg",
    help="Chest X-ray and CT lung segmentation, nodule detection and labelling automation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
