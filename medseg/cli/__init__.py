"""The ``medseg`` command line.

Each command lives in a module of this package as ``<verb>_cli`` and is a thin wrapper over a public
library function (spaCy style); heavy imports happen inside the command. :func:`main` turns any
:class:`~medseg.errors.MedsegError` into one line on stderr and a non-zero exit code.
"""

from __future__ import annotations

import logging
import sys

from medseg.cli._app import app
from medseg.errors import MedsegError

# Importing the command modules registers their commands on ``app``.
from medseg.cli import commands  # noqa: E402,F401  isort: skip

__all__ = ["app", "main"]


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the process exit code (0 ok, 2 medseg error, 1 unexpected)."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        app(args=argv, prog_name="medseg", standalone_mode=False)
    except MedsegError as e:
        print(f"medseg: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("medseg: interrupted", file=sys.stderr)
        return 130
    except SystemExit as e:  # typer/click exits (e.g. --help) pass through
        return int(e.code or 0)
    except Exception as e:  # click usage errors and friends
        import click

        if isinstance(e, click.exceptions.ClickException):
            e.show()
            return e.exit_code
        if isinstance(e, click.exceptions.Abort):
            return 1
        raise
    return 0
