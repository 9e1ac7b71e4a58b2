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


def _version(value: bool) -> None:
    if value:
        from medseg import __version__

        print(f"medseg {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """Chest X-ray and CT lung segmentation, nodule detection and labelling automation.

    Exit codes: 0 success; 1 a batch finished but some cases failed (see summary.csv); 2 usage or
    input error (one line on stderr, naming the file and the fix).
    """
