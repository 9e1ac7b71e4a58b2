"""The ``medseg`` command line.

Each command lives in a module of this package as ``<verb>_cli`` and is a thin wrapper over a public
library function (spaCy style); heavy imports happen inside the command. :func:`main` turns any
:class:`~medseg.errors.MedsegError` into one line on stderr and a non-zero exit code.
"""

from __future__ import annotations

import logging
import os
import sys

import typer

try:  # recent typer vendors click
    from typer._click.exceptions import ClickException
except ImportError:  # pragma: no cover - older typer depends on click
    from click.exceptions import ClickException  # type: ignore[assignment,no-redef]

from medseg.cli._app import app
from medseg.errors import MedsegError

# Importing the command modules registers their commands on ``app``.
from medseg.cli import commands  # noqa: E402,F401  isort: skip

__all__ = ["app", "main"]


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the process exit code (0 ok, 2 medseg error, 1 unexpected)."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # OpenMP threads that spin while waiting made inference ~3x slower on a loaded machine (measured,
    # docs/benchmarks.md); must be set before torch starts, so here rather than in the library
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        rc = app(args=argv, prog_name="medseg", standalone_mode=False)
    except MedsegError as e:
        print(f"medseg: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("medseg: interrupted", file=sys.stderr)
        return 130
    except typer.Exit as e:
        return int(e.exit_code)
    except typer.Abort:
        return 1
    except SystemExit as e:
        return int(e.code or 0)
    except ClickException as e:  # usage errors: click's own message, exit code 2
        e.show()
        return int(e.exit_code)
    return rc if isinstance(rc, int) else 0
