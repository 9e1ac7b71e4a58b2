"""The one CLI helper module: the output console, argument parsing shared by commands, progress.

Every command prints through :func:`console` (stdout) or :func:`err_console` (stderr), so output
looks the same everywhere and behaves outside a terminal (no colour codes, no wrapping of paths).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medseg.errors import ConfigError

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["console", "err_console", "parse_shard", "parse_formats", "parse_labels", "case_progress", "out_folder",
           "agreement_table", "infer_options"]


@cache
def console() -> Console:
    """The stdout console (soft wrap: long paths and UIDs stay whole for copying)."""
    from rich.console import Console

    # pipes and logs get wide tables instead of rich's 80-column default, so nothing is cut
    return Console(soft_wrap=True, highlight=False, width=None if sys.stdout.isatty() else 200)


@cache
def err_console() -> Console:
    """The stderr console for progress, warnings and per-case status."""
    from rich.console import Console

    return Console(stderr=True, soft_wrap=True, highlight=False)


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"i/n"`` -> ``(i, n)``; None stays None."""
    if not text:
        return None
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError as e:
        raise ConfigError(f"bad --shard {text!r}", path="--shard", hint="write it as i/n, e.g. 0/4") from e
    return i, n


def parse_formats(text: str) -> list[str]:
    """``"seg,mask"`` -> canonical output names (checked against the table of case outputs)."""
    from medseg.export.outputs import resolve_formats

    return resolve_formats(text.split(","))


@contextmanager
def case_progress(total: int | None, *, every_slices: int = 50) -> Iterator[dict[str, Callable[..., Any]]]:
    """Progress for a batch: a live bar in a terminal, timestamped lines otherwise (SLURM logs, pipes).

    Yields callbacks for :func:`medseg.infer.batch.predict`: ``on_start``, ``on_case`` and
    ``progress`` (slices within a large case, one log line per ``every_slices``).
    """
    err = err_console()
    colours = {"ok": "green", "skipped": "yellow", "empty": "yellow"}

    def stamp() -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S")

    def line(result: Any) -> None:
        colour = colours.get(result.status, "red")
        msg = f" {result.message}" if result.message and result.status != "skipped" else ""
        err.print(f"[{colour}]{result.status:7}[/] {result.case}{msg}", markup=True)

    if err.is_terminal:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=err, transient=True) as bar:
            cases = bar.add_task("cases", total=total)
            within = bar.add_task("", total=None, visible=False)

            def on_start(case: Any, index: int, n: int) -> None:
                bar.update(cases, description=f"case {case.name}")
                bar.update(within, visible=False, completed=0)

            def progress(case: Any, done: int, n: int) -> None:
                bar.update(within, total=n, completed=done, visible=True, description="  slices")

            def on_case(result: Any) -> None:
                bar.advance(cases)
                line(result)

            yield {"on_start": on_start, "on_case": on_case, "progress": progress}
        return

    last: dict[str, int] = {}

    def on_start_log(case: Any, index: int, n: int) -> None:
        err.print(f"{stamp()} case {index + 1}/{n} {case.name}: started ({case.path})", markup=False)

    def progress_log(case: Any, done: int, n: int) -> None:
        if n > 1 and (done == n or done - last.get(case.name, 0) >= every_slices):
            last[case.name] = done
            err.print(f"{stamp()} case {case.name}: {done}/{n} slices", markup=False)

    def on_case_log(result: Any) -> None:
        err.print(f"{stamp()} case {result.case}: {result.status} in {result.seconds:.1f} s"
                  + (f" - {result.message}" if result.message else ""), markup=False)

    yield {"on_start": on_start_log, "on_case": on_case_log, "progress": progress_log}


def out_folder(path: Path) -> Path:
    """Refuse an ``--out`` that looks like a file name (``x.nii.gz``): a usage error, up front."""
    from medseg.io.formats import suffix_of, writable_suffixes

    if suffix_of(path) in writable_suffixes(labels=True) or path.is_file():
        raise ConfigError("--out must be a folder, not a file name", path=path,
                          hint="give a folder; each case writes its files inside it")
    return path


def parse_labels(text: str | None) -> dict[int, str] | None:
    """``"1=right lung,2=left lung"`` -> ``{1: "right lung", 2: "left lung"}`` (None stays None)."""
    if not text:
        return None
    out: dict[int, str] = {}
    for part in text.split(","):
        value, sep, name = part.partition("=")
        if not sep or not value.strip().isdigit() or not name.strip():
            raise ConfigError(f"bad --labels entry {part!r}", path="--labels", hint='write it as "1=right lung,2=left lung"')
        out[int(value)] = name.strip()
    return out


def _num(v: float | None, digits: int = 3) -> str:
    return "" if v is None or v != v else f"{v:.{digits}f}"


def agreement_table(report: Any) -> Any:
    """A rich table of a :class:`medseg.labelling.AgreementReport` (one row per structure and rater pair)."""
    from rich.table import Table

    table = Table("structure", "reference", "rater", "Dice", f"HD95 ({report.distance_unit})",
                  f"size ref ({report.size_unit})", f"size rater ({report.size_unit})", "diff %")
    size_digits = 0 if report.size_unit in ("px", "voxels") else 1
    for r in report.rows:
        ref, rater = ("pairwise mean", "") if r.comparison == "pairwise mean" else (r.reference, r.rater)
        table.add_row(r.structure, ref, rater, _num(r.dice), _num(r.hd95, 2), _num(r.size_reference, size_digits),
                      _num(r.size_rater, size_digits), _num(r.size_diff_pct, 1))
    return table


def infer_options(**given: Any) -> dict[str, Any] | None:
    """The ``infer.*`` overrides the user gave on the command line (None values left out)."""
    out = {k: v for k, v in given.items() if v is not None}
    return out or None
