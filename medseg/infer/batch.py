"""Batch prediction over files, DICOM folders and folders of studies (``medseg predict``).

One bad study is reported in ``summary.csv`` and skipped; the rest go on. Outputs go to one folder
per case, named from the study (never next to, or over, an input). ``shard=(i, n)`` processes every
n-th case starting at i (0-based), for SLURM array jobs.
"""

from __future__ import annotations

import csv
import io
import logging
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

from medseg.errors import ConfigError, ExportError, MedsegError
from medseg.utils import atomic_write_text

log = logging.getLogger(__name__)

__all__ = ["Case", "CaseResult", "BatchResult", "discover_cases", "predict", "FORMATS"]

FORMATS = ("seg", "nifti", "png")
_IMAGE_SUFFIXES = (".nii", ".nii.gz", ".mha", ".mhd", ".nrrd", ".png", ".jpg", ".jpeg", ".tif", ".tiff")


@dataclass(frozen=True)
class Case:
    """One study to predict: a file, or one DICOM series (``series_uid``) under ``path``."""

    name: str
    path: Path
    series_uid: str | None = None


@dataclass
class CaseResult:
    case: str
    input: str
    status: str  # "ok", "empty" (nothing segmented: masks/overlay but no SEG), "skipped" or "error"
    message: str = ""
    seconds: float = 0.0
    outputs: list[str] = field(default_factory=list)
    summary: dict[str, dict[str, float]] = field(default_factory=dict)
    uncertainty: dict[str, float] = field(default_factory=dict)
    #: whatever the ``on_prediction`` hook returned (e.g. QC flags for the prelabel worklist)
    extra: dict[str, Any] = field(default_factory=dict)


#: ``on_prediction(case, image, prediction) -> dict``: extra per-case results (QC, features, ...)
PredictionHook = Callable[[Case, Any, Any], dict[str, Any]]


@dataclass
class BatchResult:
    out_dir: Path
    summary_csv: Path
    results: list[CaseResult]

    @property
    def n_failed(self) -> int:
        return sum(r.status == "error" for r in self.results)


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "case"


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def _is_dicom_file(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM" or path.suffix.lower() == ".dcm"


def discover_cases(inputs: Iterable[str | PathLike[str]]) -> list[Case]:
    """Expand inputs into cases: image files, DICOM series (one case each) and folders of studies."""
    from medseg.io import list_series

    cases: list[Case] = []
    for raw in inputs:
        p = Path(raw)
        if not p.exists():
            raise ConfigError("input not found", path=p, hint="check the path")
        if p.is_file():
            cases.append(Case(_safe(p.name[: -len(_suffix(p))] if _suffix(p) else p.name), p))
            continue
        files = [f for f in sorted(p.rglob("*")) if f.is_file()]
        dicom_files = [f for f in files if _is_dicom_file(f)]
        if dicom_files:
            for info in list_series(p):
                first = Path(info.first_file)
                if info.modality in ("SEG", "SR", "RTSTRUCT", "RTPLAN", "RTDOSE", "PR", "KO"):
                    continue
                if info.number_of_files == 1 and info.modality in ("CR", "DX", "OT", "MG", "RG"):
                    cases.append(Case(_safe(first.stem), first))
                else:
                    rel = first.parent.relative_to(p) if first.parent != p else Path(p.name)
                    cases.append(Case(_safe(f"{rel}_{info.uid[-8:]}"), p, info.uid))
        for f in files:
            if _suffix(f) in _IMAGE_SUFFIXES and f not in dicom_files and not f.name.endswith("_lungs.png"):
                cases.append(Case(_safe(str(f.relative_to(p))[: -len(_suffix(f))]), f))
    seen: dict[str, int] = {}
    unique = []
    for c in cases:
        n = seen.get(c.name, 0)
        seen[c.name] = n + 1
        unique.append(c if n == 0 else Case(f"{c.name}_{n}", c.path, c.series_uid))
    return unique


def _outputs_for(case_dir: Path, formats: Sequence[str]) -> dict[str, Path]:
    names = {"seg": "seg.dcm", "nifti": "labels.nii.gz", "png": "overlay.png"}
    return {f: case_dir / names[f] for f in formats}


def _predict_case(
    case: Case,
    predictors: dict[str, Any],
    out_dir: Path,
    formats: Sequence[str],
    checkpoint: Any,
    tta_flip: bool | None = None,
    on_prediction: PredictionHook | None = None,
    dicom_source: Any = None,
) -> CaseResult:
    from medseg.io import write_dicom_seg
    from medseg.export import overlay_png
    from medseg.infer import Predictor, task_for_image
    from medseg.io import read_image, write_image

    t0 = time.perf_counter()
    image = read_image(case.path, series_uid=case.series_uid)
    task = task_for_image(image)
    key = "given" if checkpoint is not None else task
    if key not in predictors:
        predictors[key] = Predictor.from_checkpoint(checkpoint, task=task, tta_flip=tta_flip)
    pred = predictors[key].predict(image)
    case_dir = out_dir / case.name
    targets = _outputs_for(case_dir, formats)
    written: list[str] = []
    message = ""
    inputs = tuple(image.source.files) + ((image.source.path,) if image.source.path else ())
    empty = not pred.labels.array.any()
    if empty:
        message = "empty prediction: nothing segmented, no DICOM-SEG written"
        log.warning("%s: %s", case.path, message)
    if "seg" in targets and not empty:
        seg_source = image if image.source.is_dicom else dicom_source
        if seg_source is not None:
            write_dicom_seg(
                pred.labels,
                seg_source,
                targets["seg"],
                label_names=pred.label_names,
                model_name=predictors[key].name,
            )
            written.append(str(targets["seg"]))
        else:
            message = "no DICOM source to refer to: wrote a mask file instead of DICOM-SEG"
            log.warning("%s: %s", case.path, message)
            if "nifti" not in targets:
                targets["nifti"] = case_dir / "labels.nii.gz"
    if "nifti" in targets:
        if pred.labels.ndim == 2:  # radiograph masks as label PNGs (0 bg, 1, 2, ...) like public CXR sets
            targets["nifti"] = case_dir / "labels.png"
        for p in inputs:
            if Path(p).resolve() == targets["nifti"].resolve():
                raise ExportError("output would overwrite an input", path=p)
        write_image(pred.labels, targets["nifti"])
        written.append(str(targets["nifti"]))
    if "png" in targets:
        overlay_png(image, pred.labels, targets["png"], label_names=pred.label_names)
        written.append(str(targets["png"]))
    extra = on_prediction(case, image, pred) if on_prediction is not None else {}
    return CaseResult(
        case=case.name,
        input=str(case.path),
        extra=extra,
        status="empty" if empty else "ok",
        message=message,
        seconds=time.perf_counter() - t0,
        outputs=written,
        summary=pred.summary,
        uncertainty=pred.uncertainty,
    )


def _write_summary(path: Path, results: Sequence[CaseResult]) -> None:
    structures = sorted({s for r in results for s in r.summary})
    header = ["case", "input", "status", "message", "seconds"]
    for s in structures:
        header += [f"{s} volume_ml", f"{s} area_cm2", f"{s} area_px", f"{s} components"]
    header += ["uncertainty", "outputs"]
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    for r in results:
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
        row += ["" if ent is None else f"{ent:.4f}", ";".join(r.outputs)]
        w.writerow(row)
    atomic_write_text(path, buf.getvalue())


def predict(
    inputs: Sequence[str | PathLike[str]],
    out_dir: str | PathLike[str],
    *,
    checkpoint: str | PathLike[str] | None = None,
    formats: Sequence[str] = FORMATS,
    shard: tuple[int, int] | None = None,
    skip_existing: bool = False,
    on_case: Callable[[CaseResult], None] | None = None,
    cases: Sequence[Case] | None = None,
    tta_flip: bool | None = None,
    on_prediction: PredictionHook | None = None,
    dicom_source: str | PathLike[str] | None = None,
) -> BatchResult:
    """Predict every case found in ``inputs`` and write the requested formats under ``out_dir``.

    Args:
        inputs: files, DICOM series folders, or folders of studies.
        out_dir: output folder; each case gets ``out_dir/<case>/`` with ``seg.dcm``, ``labels.nii.gz``
            (``labels.png`` for radiographs) and ``overlay.png``; plus ``summary.csv``.
        checkpoint: a checkpoint folder; ``None`` picks the shipped model by modality (CT vs CR/DX).
        formats: any of ``"seg"``, ``"nifti"``, ``"png"``.
        shard: ``(i, n)``: process cases ``i, i+n, i+2n, ...`` (0-based); the summary is then
            ``summary-<i>-of-<n>.csv``.
        skip_existing: skip cases whose outputs all exist.
        on_case: called after each case (progress bars).
        cases: already discovered cases (skips discovery of ``inputs``).
        tta_flip: left-right flip test-time augmentation (default: the checkpoint's setting).
        on_prediction: hook called with ``(case, image, prediction)``; its dict lands in
            ``CaseResult.extra``.
        dicom_source: the DICOM series that non-DICOM inputs (e.g. a NIfTI converted from it) came
            from; their DICOM-SEG then refers to it (the labels must lie on its grid).
    """
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise ConfigError(f"unknown output format(s) {bad}", hint=f"choose from {', '.join(FORMATS)}")
    out = Path(out_dir)
    all_cases = list(cases) if cases is not None else discover_cases(inputs)
    if shard is not None:
        i, n = shard
        if not (n >= 1 and 0 <= i < n):
            raise ConfigError(f"bad shard {i}/{n}", hint="use --shard i/n with 0 <= i < n")
        all_cases = all_cases[i::n]
    out.mkdir(parents=True, exist_ok=True)
    predictors: dict[str, Any] = {}
    results: list[CaseResult] = []
    source_image = None
    if dicom_source is not None:
        from medseg.io import read_image

        source_image = read_image(dicom_source)
        if not source_image.source.is_dicom:
            raise ConfigError("--dicom-source must be a DICOM series or file", path=dicom_source)
    for case in all_cases:
        targets = _outputs_for(out / case.name, formats)
        if skip_existing and targets and all(p.exists() for p in targets.values()):
            res = CaseResult(case.name, str(case.path), "skipped", "outputs exist")
        else:
            try:
                res = _predict_case(case, predictors, out, formats, checkpoint, tta_flip, on_prediction,
                                    source_image)
            except MedsegError as e:
                log.error("%s: %s", case.path, e)
                res = CaseResult(case.name, str(case.path), "error", str(e))
        results.append(res)
        if on_case is not None:
            on_case(res)
    name = "summary.csv" if shard is None else f"summary-{shard[0]}-of-{shard[1]}.csv"
    summary_csv = out / name
    _write_summary(summary_csv, results)
    return BatchResult(out, summary_csv, results)
