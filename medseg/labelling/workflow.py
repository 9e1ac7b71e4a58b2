"""Pre-labelling for review and active-learning selection (``medseg prelabel``, ``medseg al select``).

Both run the batch predictor (:func:`medseg.infer.batch.predict`) with left-right flip test-time
augmentation, so every case gets an uncertainty from :func:`medseg.metrics.case_uncertainty`
(mean normalised entropy over the predicted foreground, averaged with the flip-TTA disagreement
``1 - Dice(plain, flipped)``); MC-dropout is not used because the shipped U-Nets have no dropout.

* :func:`prelabel` writes DICOM-SEG + PNG overlay (+ mask) per case and ``worklist.csv``, ordered by
  how much a human look is worth: failed cases first, then QC-flagged ones, then by uncertainty.
* :func:`select_cases` scores an unlabelled pool and picks the next ``k`` cases to annotate, with an
  optional diversity term over a small feature vector per case (the foreground probability map
  downsampled to 16x16, slice-averaged for CT) so near-duplicates are not all picked.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from medseg.errors import ConfigError
from medseg.infer.batch import BatchResult, Case, CaseResult, discover_cases, predict
from medseg.labelling.checks import qc
from medseg.labelling.uncertainty import rank_worklist, select_for_annotation
from medseg.utils import atomic_write_text

log = logging.getLogger(__name__)

__all__ = ["PrelabelResult", "prelabel", "Selection", "select_cases", "case_features"]

_FEATURE_SIZE = 16


#: annotation tools ``prelabel`` can write import files for (see :mod:`medseg.io.annotations`)
TOOL_FORMATS = ("coco", "cvat", "labelstudio")
_TOOL_FILES = {"coco": "coco.json", "cvat": "annotations.xml", "labelstudio": "labelstudio_tasks.json"}


@dataclass
class PrelabelResult:
    worklist_csv: Path
    worklist: list[dict[str, Any]]
    batch: BatchResult
    #: ``{tool: import file}`` written for annotation tools (``tools=``)
    tool_files: dict[str, Path] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _tool_exports(out: Path, rows: Sequence[dict[str, Any]], batch: BatchResult, tools: Sequence[str],
                  shape: str, label_names: Any) -> tuple[dict[str, Path], list[str]]:
    """Import files for annotation tools, 2-D cases in worklist order (CT goes to 3D Slicer as SEG)."""
    from medseg.io import read_image
    from medseg.io.formats import FORMATS, suffix_of
    from medseg.labelling.annotations import PrelabelCase, export_prelabels

    by_case = {r.case: r for r in batch.results}
    cases, notes = [], []
    for row in rows:
        res = by_case.get(row["case"])
        if res is None or res.status not in ("ok", "empty", "skipped") or "mask" not in res.files:
            continue
        label = read_image(res.files["mask"], kind="label")
        if label.ndim != 2:
            notes.append(f"{res.case}: a volume, left out of the {', '.join(tools)} export (open its seg.dcm in 3D Slicer)")
            continue
        picture = Path(res.input) if suffix_of(res.input) in FORMATS["picture"].suffixes else res.files.get("picture")
        if picture is None:
            notes.append(f"{res.case}: no PNG of the image to annotate (add the picture output)")
            continue
        unc = row.get("uncertainty")
        score = None if not isinstance(unc, float) or unc != unc else max(0.0, 1.0 - unc)
        cases.append(PrelabelCase(Path(picture), label.replace(kind="label"), score))
    files: dict[str, Path] = {}
    if cases:
        for tool in tools:
            files[tool] = export_prelabels(cases, out / "annotations" / _TOOL_FILES[tool], tool,
                                           labels=label_names, shape=shape)  # type: ignore[arg-type]
    else:
        notes.append("no 2-D case to export for annotation tools")
    return files, notes


def _qc_hook(case: Case, image: Any, pred: Any) -> dict[str, Any]:
    flags = qc(pred.labels, label_names=pred.label_names, image=image if image.ndim == 3 else None)
    return {"qc_flags": [f"{f.check}: {f.reason}" for f in flags],
            "label_names": {str(k): str(v) for k, v in pred.label_names.items()}}


def _worklist_rows(results: Sequence[CaseResult]) -> list[dict[str, Any]]:
    rows = []
    for r in results:
        flags = list(r.extra.get("qc_flags", []))
        if r.status == "error":
            flags = [f"error: {r.message}"]
        elif r.status == "empty":
            flags = ["empty: nothing segmented", *flags]
        rows.append(
            {
                "case": r.case,
                "input": r.input,
                "status": r.status,
                "qc_flags": flags,
                "uncertainty": r.uncertainty.get("uncertainty", float("nan") if r.status == "error" else 0.0),
                "entropy_fg": r.uncertainty.get("entropy_fg", ""),
                "tta_disagreement": r.uncertainty.get("tta_disagreement", ""),
                "seg": r.files.get("seg", ""),
                "overlay": r.files.get("overlay", ""),
            }
        )
    return [dict(r) for r in rank_worklist(rows)]


def _write_worklist(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["rank", "case", "status", "n_flags", "qc_flags", "uncertainty", "entropy_fg", "tta_disagreement",
                "seg", "overlay", "input"])
    for i, r in enumerate(rows, 1):
        unc = r["uncertainty"]
        w.writerow([i, r["case"], r["status"], len(r["qc_flags"]), " | ".join(r["qc_flags"]),
                    "" if unc != unc else f"{unc:.4f}",  # NaN for failed cases
                    *(f"{r[k]:.4f}" if isinstance(r[k], float) else r[k] for k in ("entropy_fg", "tta_disagreement")),
                    r["seg"], r["overlay"], r["input"]])
    atomic_write_text(path, buf.getvalue())


def prelabel(
    inputs: Sequence[str | PathLike[str]],
    out_dir: str | PathLike[str],
    *,
    checkpoint: str | PathLike[str] | None = None,
    formats: Sequence[str] = ("seg", "overlay", "mask"),
    tta_flip: bool = True,
    shard: tuple[int, int] | None = None,
    skip_existing: bool = False,
    on_case: Callable[[CaseResult], None] | None = None,
    device: str = "auto",
    tools: Sequence[str] = (),
    tool_shape: str = "polygon",
    **batch_options: Any,
) -> PrelabelResult:
    """Pre-label every study for human review and write ``worklist.csv`` (most worth a look first).

    Outputs per case as :func:`medseg.infer.batch.predict` (``seg.dcm`` opens in 3D Slicer / OHIF for
    correction, ``overlay.png`` for a quick look); ``worklist.csv`` columns: rank, case, status,
    n_flags, qc_flags (check: reason | ...), uncertainty, entropy_fg, tta_disagreement, seg, overlay,
    input. Skipped cases (``skip_existing``) keep the scores and flags of the run that made them.
    ``batch_options`` (``layout``, ``naming``, ``on_start``, ``progress``) go to
    :func:`medseg.infer.batch.predict`.

    ``tools`` (any of ``coco``, ``cvat``, ``labelstudio``) also writes the tools' import files for the
    2-D cases, in worklist order, under ``out/annotations/`` (``coco.json``, ``annotations.xml``,
    ``labelstudio_tasks.json`` + its labelling config), with ``tool_shape`` ``"polygon"`` (editable
    outlines) or ``"mask"`` (pixel-exact RLE / brush); radiographs given as DICOM or NIfTI get an
    8-bit ``image.png`` the tools can open. Corrected exports come back with
    :func:`medseg.labelling.import_annotations`.
    """
    out = Path(out_dir)
    bad = [t for t in tools if t not in TOOL_FORMATS]
    if bad:
        raise ConfigError(f"unknown annotation tool format(s) {bad}", path="--format",
                          hint=f"choose from {', '.join(TOOL_FORMATS)}")
    if tools:
        formats = [*formats, *(f for f in ("mask", "picture") if f not in formats)]
    batch = predict(inputs, out, checkpoint=checkpoint, formats=formats, shard=shard, skip_existing=skip_existing,
                    on_case=on_case, tta_flip=tta_flip, on_prediction=_qc_hook, device=device, **batch_options)
    rows = _worklist_rows(batch.results)
    name = "worklist.csv" if shard is None else f"worklist-{shard[0]}-of-{shard[1]}.csv"
    path = out / name
    _write_worklist(path, rows)
    names = next(({int(k): v for k, v in r.extra["label_names"].items()} for r in batch.results
                  if r.extra.get("label_names")), None)
    files, notes = _tool_exports(out, rows, batch, tools, tool_shape, names) if tools else ({}, [])
    return PrelabelResult(path, rows, batch, files, notes)


def case_features(probabilities: np.ndarray) -> np.ndarray:
    """A small descriptor of a prediction for diversity: foreground probability, 16x16, float32.

    ``probabilities`` is ``(K, y, x)`` or ``(K, z, y, x)``; CT volumes are averaged over slices.
    """
    from scipy.ndimage import zoom

    fg = 1.0 - np.asarray(probabilities[0], dtype=np.float32)
    if fg.ndim == 3:
        fg = fg.mean(axis=0)
    factors = (_FEATURE_SIZE / fg.shape[0], _FEATURE_SIZE / fg.shape[1])
    return np.asarray(zoom(fg, factors, order=1), dtype=np.float32)[:_FEATURE_SIZE, :_FEATURE_SIZE].ravel()


@dataclass
class Selection:
    """Cases picked for annotation, in pick order, and the scores of the whole pool."""

    selected: list[dict[str, Any]]
    pool: list[dict[str, Any]]
    csv: Path | None = None


def select_cases(
    pool: Sequence[str | PathLike[str]],
    k: int,
    *,
    checkpoint: str | PathLike[str] | None = None,
    diversity: float = 0.0,
    exclude: Sequence[str | PathLike[str]] = (),
    seed: int = 0,
    out_csv: str | PathLike[str] | None = None,
    work_dir: str | PathLike[str] | None = None,
    device: str = "auto",
) -> Selection:
    """Score an unlabelled pool by model uncertainty and pick the next ``k`` cases to annotate.

    Args:
        pool: files / folders of unlabelled studies.
        k: how many to pick.
        checkpoint: the current model (default: the shipped one for each modality).
        diversity: 0 = the k most uncertain; > 0 adds distance between picked cases (see
            :func:`medseg.labelling.select_for_annotation`).
        exclude: inputs already labelled (a manifest CSV with an ``image`` column, or paths).
        out_csv: where to write the selection (atomic), columns rank, case, input, uncertainty.
        work_dir: folder for the batch summary (default: beside ``out_csv`` or not written).
    """
    if k < 1:
        raise ConfigError(f"k must be >= 1, got {k}", path="--k")
    skip: set[Path] = set()
    for e in exclude:
        p = Path(e)
        if p.suffix.lower() == ".csv" and p.is_file():
            with p.open(newline="") as fh:
                for row in csv.DictReader(fh):
                    if row.get("image"):
                        img = Path(row["image"])
                        skip.add((img if img.is_absolute() else p.parent / img).resolve())
        else:
            skip.add(p.resolve())
    cases = [c for c in discover_cases(pool) if c.path.resolve() not in skip]
    if not cases:
        raise ConfigError("no unlabelled case found in the pool", path=", ".join(map(str, pool)),
                          hint="point --pool at a folder of images or DICOM studies")
    features: dict[str, np.ndarray] = {}

    def hook(case: Case, image: Any, pred: Any) -> dict[str, Any]:
        features[case.name] = case_features(pred.probabilities)
        return {}

    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        target = Path(work_dir) if work_dir else Path(tmp)
        batch = predict([], target, checkpoint=checkpoint, formats=(), cases=cases, tta_flip=True,
                        on_prediction=hook, device=device, probabilities=True)
    scored = [r for r in batch.results if r.status in ("ok", "empty")]
    for r in batch.results:
        if r.status == "error":
            log.warning("left out of the selection: %s (%s)", r.input, r.message)
    rows: list[dict[str, Any]] = [
        {"case": r.case, "input": r.input, "uncertainty": float(r.uncertainty.get("uncertainty", 0.0))}
        for r in scored
    ]
    if not rows:
        raise ConfigError("no case of the pool could be predicted", hint="see the log for each case's error")
    picks = select_for_annotation(
        [r["uncertainty"] for r in rows],
        k,
        features=[features[r["case"]] for r in rows] if diversity > 0 else None,
        diversity=diversity,
        seed=seed,
    )
    selected = [rows[i] for i in picks]
    path = None
    if out_csv is not None:
        path = Path(out_csv)
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["rank", "case", "input", "uncertainty"])
        for i, row in enumerate(selected, 1):
            w.writerow([i, row["case"], row["input"], f"{row['uncertainty']:.4f}"])
        atomic_write_text(path, buf.getvalue())
    return Selection(selected, rows, path)
