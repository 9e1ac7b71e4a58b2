"""The one table of case outputs: what a case writes, where, and when a case is complete.

``predict``, ``prelabel``, ``detect`` and the annotation-tool exports all write through this table,
so a new output is one :func:`register_output` call, and ``--skip-existing`` knows exactly what a
complete case is: a case is complete when its record (``OUT/.medseg/cases/<case>.json``, written
last, atomically) lists every requested output and each listed file exists.

Outputs (``--format`` names; old names ``nifti`` = mask and ``png`` = overlay are still accepted):

=========== ======================== ============================ ===============================
name        folder layout            flat layout                  written when
=========== ======================== ============================ ===============================
seg         ``<case>/seg.dcm``       ``<case>_seg.dcm``           DICOM source and any label
mask        ``<case>/labels.nii.gz`` ``<case>.nii.gz``            always (``.png`` for 2-D)
overlay     ``<case>/overlay.png``   ``<case>_overlay.png``       always
picture     ``<case>/image.png``     ``<case>_image.png``         radiographs (for annotation tools)
=========== ======================== ============================ ===============================

A ``seg`` requested for a case without a DICOM source (NIfTI, PNG input) is replaced by ``mask``
(one warning per case); detection registers ``candidates`` and ``sr`` (see :mod:`medseg.detect`).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any, Literal

from medseg.errors import ConfigError
from medseg.image import Image
from medseg.io.formats import label_map_suffix
from medseg.utils import atomic_write_text

log = logging.getLogger(__name__)

__all__ = [
    "Layout",
    "CaseKind",
    "CaseContext",
    "OutputSpec",
    "OUTPUTS",
    "DEFAULT_FORMATS",
    "register_output",
    "resolve_formats",
    "plan_outputs",
    "output_path",
    "write_case_outputs",
    "CaseRecord",
    "record_path",
    "read_record",
    "write_record",
    "read_records",
    "is_complete",
    "write_summary",
    "summary_header",
    "RECORD_DIR",
]

#: "folder": OUT/<case>/file; "flat": OUT/<case>_file; "case": OUT is the case folder itself (one case)
Layout = Literal["folder", "flat", "case"]
#: where per-case records live under the output folder
RECORD_DIR = Path(".medseg") / "cases"


@dataclass(frozen=True)
class CaseKind:
    """What a case turned out to be once read: ``ndim`` 2 (radiograph/picture) or 3 (volume), and
    whether a DICOM source exists for DICOM outputs to refer to."""

    ndim: int
    dicom: bool


@dataclass
class CaseContext:
    """Everything an output writer may need for one case.

    Attributes:
        image: the input image (``(z, y, x)`` or ``(y, x)``).
        labels: the label map on the image grid.
        label_names: ``{value: name}``; structures decided by :mod:`medseg.structures`.
        model_name: name written into DICOM algorithm identification.
        dicom_source: the DICOM image the outputs refer to (the input itself or ``--dicom-source``).
        protect: input files that must never be overwritten.
        extra: output-specific data (e.g. ``detections`` for the SR, ``overlay_view`` for detection).
        written: outputs written so far, by name (later outputs may refer to earlier ones).
    """

    image: Image
    labels: Image
    label_names: Mapping[int, str]
    model_name: str = "medseg"
    dicom_source: Image | None = None
    protect: tuple[Path, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)
    written: dict[str, Path] = field(default_factory=dict)

    @property
    def kind(self) -> CaseKind:
        return CaseKind(self.labels.ndim, self.dicom_source is not None)


@dataclass(frozen=True)
class OutputSpec:
    """One kind of case output.

    Attributes:
        name: the ``--format`` name.
        description: one line for help texts.
        file_name: ``kind -> file name`` in the folder layout (``None``: not written for this kind).
        write: ``(context, path) -> path`` or ``None`` when there was nothing to write.
        flat_is_case_name: in the flat layout the file is ``<case><suffix>`` (the mask, as nnU-Net
            and TotalSegmentator name theirs) instead of ``<case>_<file name>``.
        fallback: output written instead when ``file_name`` is None for a kind (``seg`` -> ``mask``).
        aliases: old or alternative names accepted in ``--format``.
    """

    name: str
    description: str
    file_name: Callable[[CaseKind], str | None]
    write: Callable[[CaseContext, Path], Path | None]
    flat_is_case_name: bool = False
    fallback: str | None = None
    aliases: tuple[str, ...] = ()


OUTPUTS: dict[str, OutputSpec] = {}
DEFAULT_FORMATS: tuple[str, ...] = ("seg", "mask", "overlay")


def register_output(spec: OutputSpec) -> OutputSpec:
    """Add (or replace) an output in the table; returns it."""
    OUTPUTS[spec.name] = spec
    return spec


def _write_seg(ctx: CaseContext, path: Path) -> Path | None:
    from medseg.io import write_dicom_seg

    if ctx.dicom_source is None or not ctx.labels.array.any():
        return None
    return write_dicom_seg(ctx.labels, ctx.dicom_source, path, label_names=dict(ctx.label_names),
                           model_name=ctx.model_name, **ctx.extra.get("seg_options", {}))


def _write_mask(ctx: CaseContext, path: Path) -> Path | None:
    from medseg.io import write_image

    _check_not_input(path, ctx)
    return write_image(ctx.labels, path)


def _write_overlay(ctx: CaseContext, path: Path) -> Path | None:
    from medseg.export.overlay import overlay_png

    _check_not_input(path, ctx)
    image, labels = ctx.extra.get("overlay_view", (ctx.image, ctx.labels))
    return overlay_png(image, labels, path, label_names=ctx.label_names)


def _check_not_input(path: Path, ctx: CaseContext) -> None:
    from medseg.errors import ExportError

    resolved = path.resolve()
    if any(Path(p).resolve() == resolved for p in ctx.protect):
        raise ExportError("the output would overwrite an input file", path=path,
                          hint="choose an --out folder apart from the inputs")


register_output(OutputSpec(
    "seg", "DICOM-SEG referring to the DICOM source (3D Slicer, OHIF)",
    lambda k: "seg.dcm" if k.dicom else None, _write_seg, fallback="mask"))
register_output(OutputSpec(
    "mask", "label map: NIfTI for volumes, PNG (0 bg, 1, 2, ...) for radiographs",
    lambda k: "labels" + label_map_suffix(k.ndim), _write_mask, flat_is_case_name=True, aliases=("nifti",)))
register_output(OutputSpec(
    "overlay", "PNG: contours over the radiograph, or axial montage + coronal view of a CT",
    lambda k: "overlay.png", _write_overlay, aliases=("png",)))


def _write_picture(ctx: CaseContext, path: Path) -> Path | None:
    from medseg.io import write_image

    _check_not_input(path, ctx)
    return write_image(ctx.image, path)


register_output(OutputSpec(
    "picture", "8-bit PNG of a radiograph (what image-annotation tools open; DICOM/NIfTI inputs only need it)",
    lambda k: "image.png" if k.ndim == 2 else None, _write_picture))


def resolve_formats(names: Iterable[str]) -> list[str]:
    """Canonical output names for ``--format`` values (aliases resolved, duplicates dropped, order kept).

    Raises:
        ConfigError: an unknown name (with the valid ones).
    """
    by_alias = {a: s.name for s in OUTPUTS.values() for a in (s.name, *s.aliases)}
    out: list[str] = []
    for raw in names:
        n = str(raw).strip().lower()
        if not n:
            continue
        if n not in by_alias:
            raise ConfigError(f"unknown output format {n!r}", path="--format",
                              hint=f"choose from {', '.join(OUTPUTS)}")
        if by_alias[n] not in out:
            out.append(by_alias[n])
    return out


def plan_outputs(formats: Sequence[str], kind: CaseKind) -> dict[str, str]:
    """``{output name: folder-layout file name}`` a case of ``kind`` writes for ``formats``.

    Fallbacks apply: ``seg`` without a DICOM source becomes ``mask``.
    """
    plan: dict[str, str] = {}
    for name in resolve_formats(formats):
        spec = OUTPUTS[name]
        file = spec.file_name(kind)
        if file is None and spec.fallback:
            name, spec = spec.fallback, OUTPUTS[spec.fallback]
            file = spec.file_name(kind)
        if file is not None and name not in plan:
            plan[name] = file
    return plan


def output_path(out_dir: Path, case: str, name: str, file: str, layout: Layout = "folder") -> Path:
    """Where output ``name`` (file ``file``) of ``case`` goes under ``out_dir``."""
    if layout == "case":
        return out_dir / file
    if layout == "folder":
        return out_dir / case / file
    spec = OUTPUTS[name]
    if spec.flat_is_case_name:
        suffix = file[file.index("."):] if "." in file else ""
        return out_dir / f"{case}{suffix}"
    return out_dir / f"{case}_{file}"


def write_case_outputs(
    ctx: CaseContext, out_dir: Path, case: str, formats: Sequence[str], layout: Layout = "folder"
) -> dict[str, Path]:
    """Write every planned output of one case (in table order); returns ``{name: path}`` written."""
    plan = plan_outputs(formats, ctx.kind)
    for name in OUTPUTS:
        if name not in plan:
            continue
        path = output_path(out_dir, case, name, plan[name], layout)
        path.parent.mkdir(parents=True, exist_ok=True)
        written = OUTPUTS[name].write(ctx, path)
        if written is not None:
            ctx.written[name] = Path(written)
    return dict(ctx.written)


# -- per-case records and the summary table -----------------------------------------------------


@dataclass
class CaseRecord:
    """What one case's last run produced (``OUT/.medseg/cases/<case>.json``).

    ``outputs`` holds paths relative to the output folder; ``formats`` the outputs asked for.
    """

    case: str
    input: str
    status: str  # "ok", "empty" or "error"
    message: str = ""
    seconds: float = 0.0
    formats: list[str] = field(default_factory=list)
    outputs: dict[str, str] = field(default_factory=dict)
    summary: dict[str, dict[str, float]] = field(default_factory=dict)
    uncertainty: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    finished: str = ""


def record_path(out_dir: Path, case: str) -> Path:
    return out_dir / RECORD_DIR / f"{case}.json"


def write_record(out_dir: Path, record: CaseRecord) -> Path:
    """Write a case record atomically (the last step of a case: its presence means 'finished')."""
    record.finished = record.finished or time.strftime("%Y-%m-%dT%H:%M:%S")
    path = record_path(out_dir, record.case)
    atomic_write_text(path, json.dumps(asdict(record), indent=1, default=_json_default))
    return path


def _json_default(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    return str(o)


def read_record(out_dir: Path, case: str) -> CaseRecord | None:
    """The case's record, or None when absent or unreadable (then the case is redone)."""
    path = record_path(out_dir, case)
    with contextlib.suppress(OSError, ValueError, TypeError):
        data = json.loads(path.read_text())
        return CaseRecord(**data)
    return None


def read_records(out_dir: Path) -> list[CaseRecord]:
    """Every case record under ``out_dir`` (all shards, all earlier runs), sorted by case."""
    folder = out_dir / RECORD_DIR
    out = []
    for p in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        rec = read_record(out_dir, p.stem)
        if rec is not None:
            out.append(rec)
    return out


def is_complete(out_dir: Path, case: str, formats: Sequence[str], input_path: str | None = None) -> bool:
    """True when ``case`` finished before (ok/empty) with every output in ``formats`` and its files exist."""
    rec = read_record(out_dir, case)
    if rec is None or rec.status not in ("ok", "empty"):
        return False
    if input_path is not None and rec.input != str(input_path):
        return False
    if not set(resolve_formats(formats)) <= set(rec.formats):
        return False
    return all((out_dir / rel).is_file() for rel in rec.outputs.values())


def summary_header(records: Sequence[CaseRecord]) -> list[str]:
    structures = sorted({s for r in records for s in r.summary})
    header = ["case", "input", "status", "message", "seconds"]
    for s in structures:
        header += [f"{s} volume_ml", f"{s} area_cm2", f"{s} area_px", f"{s} components"]
    return header + ["uncertainty", "warnings", "outputs"]


def write_summary(path: Path, records: Sequence[CaseRecord]) -> Path:
    """``summary.csv``: one row per case (measurements in mL / cm² / px, uncertainty, outputs)."""
    structures = sorted({s for r in records for s in r.summary})
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(summary_header(records))
    for r in records:
        row: list[Any] = [r.case, r.input, r.status, r.message, f"{r.seconds:.2f}"]
        for s in structures:
            v = r.summary.get(s, {})
            row += [
                f"{v['volume_ml']:.2f}" if "volume_ml" in v else "",
                f"{v['area_cm2']:.2f}" if "area_cm2" in v else "",
                int(v["area_px"]) if "area_px" in v else "",
                int(v["components"]) if "components" in v else "",
            ]
        ent = r.uncertainty.get("uncertainty")
        row += ["" if ent is None else f"{ent:.4f}", " | ".join(r.warnings), ";".join(r.outputs.values())]
        w.writerow(row)
    atomic_write_text(path, buf.getvalue())
    return path


def relative_outputs(out_dir: Path, written: Mapping[str, Path]) -> dict[str, str]:
    """``{name: path relative to out_dir}`` (absolute when outside it, which should not happen)."""
    out = {}
    for k, p in written.items():
        try:
            out[k] = str(Path(p).resolve().relative_to(out_dir.resolve()))
        except ValueError:
            out[k] = str(p)
    return out


def outputs_help() -> str:
    """One line per output for ``--format`` help texts."""
    return "; ".join(f"{s.name}: {s.description}" for s in OUTPUTS.values())


PathArg = str | PathLike[str]
