"""Batch prediction over files, DICOM folders and folders of studies (``medseg predict``).

A batch never aborts on one case: every per-case failure becomes a ``summary.csv`` row with its
error and the other cases go on. What a case writes is decided by the table of case outputs
(:mod:`medseg.export.outputs`); a case is finished when its record is written, which is also what
``skip_existing`` checks. ``summary.csv`` is rebuilt from all records, so reruns and shards merge
(one row per case, the latest run of a case wins).

Case names are sanitised and unique (never ``.``/``..`` or a path separator; collisions get a
stable suffix) so nothing is ever written outside ``out_dir``; no writer overwrites an input.
``shard=(i, n)`` processes every n-th case starting at i (0-based), for SLURM array jobs.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import re
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from os import PathLike
from pathlib import Path
from typing import Any, Literal, TypeVar

from medseg.errors import CheckpointError, ConfigError, MedsegError
from medseg.export.outputs import (
    DEFAULT_FORMATS,
    CaseContext,
    CaseRecord,
    Layout,
    is_complete,
    read_record,
    read_records,
    relative_outputs,
    resolve_formats,
    write_case_outputs,
    write_record,
    write_summary,
)
from medseg.io.formats import is_image_file_name, stem_of, suffix_of, writable_suffixes

log = logging.getLogger(__name__)

__all__ = [
    "Case",
    "CaseResult",
    "BatchResult",
    "Discovery",
    "discover",
    "discover_cases",
    "predict",
    "merge_summaries",
    "resolve_checkpoint",
    "FORMATS",
    "Naming",
]

#: the output names ``formats`` accepts (see :mod:`medseg.export.outputs`)
FORMATS = DEFAULT_FORMATS
Naming = Literal["stem", "dicom"]
_RADIOGRAPH_MODALITIES = ("CR", "DX", "MG", "RG", "PX", "IO")
_NON_IMAGE_MODALITIES = ("SEG", "SR", "RTSTRUCT", "RTPLAN", "RTDOSE", "PR", "KO", "REG", "RWV", "DOC")
# names that say "this is an annotation, not a scan": lung_label.nii.gz, x_mask.png, seg.nii.gz, x_lungs.png
_LABEL_NAME = re.compile(r"(^|[_\-. ])(labels?|masks?|seg|segmentation|annotations?|gt|groundtruth)($|[_\-. ])|_lungs$",
                         re.IGNORECASE)


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
    status: str  # "ok", "empty" (nothing segmented: mask/overlay but no SEG), "skipped" or "error"
    message: str = ""
    seconds: float = 0.0
    outputs: list[str] = field(default_factory=list)
    summary: dict[str, dict[str, float]] = field(default_factory=dict)
    uncertainty: dict[str, float] = field(default_factory=dict)
    #: whatever the ``on_prediction`` hook returned (e.g. QC flags for the prelabel worklist)
    extra: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    #: ``{output name: path}`` of the files written (``seg``, ``mask``, ``overlay``, ...)
    files: dict[str, str] = field(default_factory=dict)


#: ``on_prediction(case, image, prediction) -> dict``: extra per-case results (QC, features, ...)
PredictionHook = Callable[[Case, Any, Any], dict[str, Any]]


@dataclass
class BatchResult:
    out_dir: Path
    summary_csv: Path
    results: list[CaseResult]
    #: things discovery left out on purpose (label maps beside scans, non-image DICOM, ...)
    notes: list[str] = field(default_factory=list)

    @property
    def n_failed(self) -> int:
        return sum(r.status == "error" for r in self.results)

    @property
    def exit_code(self) -> int:
        """0 when every case succeeded (or was skipped), 1 when some failed."""
        return 1 if self.n_failed else 0


@dataclass
class Discovery:
    cases: list[Case]
    notes: list[str] = field(default_factory=list)


# -- naming ------------------------------------------------------------------------------------


def _safe(text: str) -> str:
    """A file-system-safe case name: no separators, never empty, '.' or '..', no leading dot."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_").lstrip(".")
    name = re.sub(r"\.{2,}", ".", name)
    return name[:120] if name and name not in (".", "..") else "case"


def _unique(cases: list[tuple[Case, str]]) -> list[Case]:
    """Give colliding names a stable suffix: the file type, then the parent folder, then a number.

    ``cases`` pairs each case with a disambiguator hint (its suffix, e.g. ``png``). Every member of a
    colliding group gets a suffix, so names do not depend on input order.
    """
    groups: dict[str, list[int]] = {}
    for i, (c, _) in enumerate(cases):
        groups.setdefault(c.name.lower(), []).append(i)
    names = [c.name for c, _ in cases]
    for idx in groups.values():
        if len(idx) < 2:
            continue
        hints = [cases[i][1] for i in idx]
        if len(set(hints)) == len(hints):
            for i in idx:
                names[i] = _safe(f"{cases[i][0].name}_{cases[i][1]}")
            continue
        parents = [_safe(cases[i][0].path.parent.name) for i in idx]
        if len(set(parents)) == len(parents):
            for i, par in zip(idx, parents, strict=True):
                names[i] = _safe(f"{par}_{cases[i][0].name}")
    # anything still colliding (also with names made above): numbered in input order
    used: set[str] = set()
    out = []
    for (c, _), name in zip(cases, names, strict=True):
        base, n = name, 1
        while name.lower() in used:
            n += 1
            name = f"{base}_{n}"
        used.add(name.lower())
        out.append(Case(name, c.path, c.series_uid))
    return out


def _check_naming(naming: str) -> None:
    if naming not in ("stem", "dicom"):
        raise ConfigError(f"unknown naming {naming!r}", path="--naming", hint="use stem or dicom")


def _dicom_name(first_file: Path, fallback: str) -> str:
    """``PatientID_StudyDate_S<SeriesNumber>`` from the first file's header (fallback when missing)."""
    import pydicom

    try:
        ds = pydicom.dcmread(first_file, stop_before_pixels=True,
                             specific_tags=["PatientID", "StudyDate", "SeriesNumber"])
    except Exception:  # noqa: BLE001 - unreadable headers fall back to the path name
        return fallback
    parts = [str(getattr(ds, "PatientID", "") or ""), str(getattr(ds, "StudyDate", "") or "")]
    sn = getattr(ds, "SeriesNumber", None)
    parts.append(f"S{sn}" if sn not in (None, "") else "")
    name = "_".join(p for p in parts if p)
    return _safe(name) if name else fallback


def _is_dicom_file(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return (len(head) == 132 and head[128:132] == b"DICM") or path.suffix.lower() in (".dcm", ".dicom", ".ima")


def _within(path: Path, folder: Path | None) -> bool:
    if folder is None:
        return False
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def _series_files(files: Sequence[Path], uid: str) -> list[Path]:
    import pydicom

    out = []
    for f in files:
        with contextlib.suppress(Exception):
            ds = pydicom.dcmread(f, stop_before_pixels=True, specific_tags=["SeriesInstanceUID"])
            if str(getattr(ds, "SeriesInstanceUID", "")) == uid:
                out.append(f)
    return sorted(out)


def discover(
    inputs: Iterable[str | PathLike[str]],
    *,
    out_dir: str | PathLike[str] | None = None,
    naming: Naming = "stem",
) -> Discovery:
    """Expand inputs into cases: image files, DICOM series, radiographs, folders of studies.

    * a DICOM series folder is one case; a radiograph (CR/DX/...) is one case per file, also when
      several radiographs share a series (PA + lateral);
    * non-image DICOM (SEG, SR, RTSTRUCT, ...) and files whose name says label/mask/seg next to
      scans are left out, with a note;
    * anything under ``out_dir`` is left out (a rerun never takes its own outputs as inputs).

    Names: ``naming="stem"`` uses the file stem or the series folder's path relative to the input
    folder (``PATIENT/dicom`` -> ``PATIENT_dicom``); ``"dicom"`` uses ``PatientID_StudyDate_S<n>``.

    Raises:
        ConfigError: an input does not exist.
    """
    from medseg.io import list_series

    _check_naming(naming)
    out = Path(out_dir) if out_dir is not None else None
    pairs: list[tuple[Case, str]] = []
    notes: list[str] = []
    for raw in inputs:
        p = Path(raw)
        if not p.exists():
            raise ConfigError("input not found", path=p, hint="check the path")
        if p.is_file():
            name = _safe(stem_of(p))
            if naming == "dicom" and _is_dicom_file(p):
                name = _dicom_name(p, name)
            pairs.append((Case(name, p), suffix_of(p).lstrip(".").replace(".", "") or "file"))
            continue
        files = [f for f in sorted(p.rglob("*")) if f.is_file() and not _within(f, out)
                 and not any(part.startswith(".") for part in f.relative_to(p).parts)]
        dicom_files = [f for f in files if _is_dicom_file(f)]
        dicom_set = set(dicom_files)
        if dicom_files:
            try:
                infos = list_series(dicom_files)
            except MedsegError as e:
                notes.append(f"{p}: DICOM files skipped ({e})")
                infos = []
            per_folder: dict[Path, int] = {}
            for info in infos:
                per_folder[Path(info.first_file).parent] = per_folder.get(Path(info.first_file).parent, 0) + 1
            for info in infos:
                first = Path(info.first_file)
                if info.modality in _NON_IMAGE_MODALITIES or not info.is_image:
                    notes.append(f"{first.parent}: {info.modality or 'non-image'} series {info.uid} left out "
                                 "(not an image)")
                    continue
                if info.modality in _RADIOGRAPH_MODALITIES or (info.number_of_files == 1 and info.modality == "OT"):
                    members = [first] if info.number_of_files == 1 else _series_files(dicom_files, info.uid)
                    for f in members:
                        name = _safe(stem_of(f))
                        if naming == "dicom":
                            name = _dicom_name(f, name)
                        pairs.append((Case(name, f), "dcm"))
                    continue
                rel = first.parent.relative_to(p) if first.parent != p else Path(p.name)
                name = _safe("_".join(rel.parts))
                if per_folder[first.parent] > 1:
                    name = _safe(f"{name}_{info.series_number if info.series_number is not None else info.uid[-8:]}")
                if naming == "dicom":
                    name = _dicom_name(first, name)
                pairs.append((Case(name, p, info.uid), "series"))
        for f in files:
            if f in dicom_set or not is_image_file_name(f):
                continue
            if _LABEL_NAME.search(stem_of(f)):
                notes.append(f"{f}: left out (its name says it is a label map, not a scan)")
                continue
            rel = f.relative_to(p)
            pairs.append((Case(_safe("_".join((*rel.parts[:-1], stem_of(f)))), f),
                          suffix_of(f).lstrip(".").replace(".", "")))
    return Discovery(_unique(pairs), notes)


def discover_cases(inputs: Iterable[str | PathLike[str]], **kwargs: Any) -> list[Case]:
    """The cases of :func:`discover` (without its notes)."""
    return discover(inputs, **kwargs).cases


# -- checkpoints -------------------------------------------------------------------------------


def resolve_checkpoint(path: str | PathLike[str] | None) -> Path | None:
    """A checkpoint folder from a folder, any file inside it (e.g. ``model.safetensors``) or the name
    of a shipped model (``cxr_lung``, ``cxr_lung_v7``, ``ct_lung``; see ``medseg/weights/``).

    Raises:
        CheckpointError: the path does not exist or holds no ``config.json``.
    """
    if path is None:
        return None
    p = Path(path)
    if not p.exists() and len(p.parts) == 1:  # a shipped model by name: cxr_lung, cxr_lung_v7, ct_lung
        from importlib import resources

        shipped = Path(str(resources.files("medseg") / "weights" / p.name))
        if (shipped / "config.json").is_file():
            return shipped
    if p.is_file():
        p = p.parent
    if not p.is_dir():
        raise CheckpointError("checkpoint not found", path=path,
                              hint="pass the checkpoint folder (with config.json) or a file in it")
    if not (p / "config.json").is_file():
        raise CheckpointError("not a medseg checkpoint folder (no config.json)", path=p,
                              hint="pass the folder medseg train / save_checkpoint wrote")
    return p


# -- running -----------------------------------------------------------------------------------


_TMP_NAME = re.compile(r"^\..+\.[A-Za-z0-9_]{6,}\.tmp(\.|$)")


def _clean_stale_temporaries(out: Path) -> int:
    """Remove temporary files that killed runs left behind (``.<name>.<random>.tmp<suffix>``)."""
    n = 0
    if not out.is_dir():
        return 0
    for f in out.rglob(".*.tmp*"):
        if f.is_file() and _TMP_NAME.match(f.name):
            with contextlib.suppress(OSError):
                f.unlink()
                n += 1
    return n


def _spacing_note(image: Any) -> str | None:
    """A warning when a radiograph's pixel spacing gives an implausible chest field of view."""
    if image.ndim != 2 or not image.spacing_known:
        return None
    fov = [n * s for n, s in zip(image.array.shape[::-1], image.spacing, strict=False)]
    if max(fov) < 200.0 or max(fov) > 600.0:
        return (f"pixel spacing {image.spacing[0]:.3f} mm gives a {fov[0]:.0f} x {fov[1]:.0f} mm field of view, "
                "implausible for a chest radiograph: areas in cm2 are unreliable")
    return None


class _Run:
    """State shared by the cases of one batch: loaded predictors, settings, the DICOM source."""

    def __init__(self, checkpoint: Path | None, tta_flip: bool | None, device: str, dicom_source: Any,
                 progress: Callable[[Case, int, int], None] | None, infer: dict[str, Any] | None = None,
                 probabilities: bool = False):
        self.infer = infer
        self.probabilities = probabilities
        self.checkpoint = checkpoint
        self.tta_flip = tta_flip
        self.device = device
        self.dicom_source = dicom_source
        self.progress = progress
        self.predictors: dict[str, Any] = {}

    def predictor(self, task: str) -> Any:
        from medseg.infer import Predictor

        key = "given" if self.checkpoint is not None else task
        if key not in self.predictors:
            self.predictors[key] = Predictor.from_checkpoint(self.checkpoint, task=task, tta_flip=self.tta_flip,
                                                             device=self.device, infer=self.infer)
        return self.predictors[key]


@dataclass
class _Predicted:
    """A case between the network and its writers (the pipeline's hand-over)."""

    case: Case
    t0: float
    ctx: CaseContext
    pred: Any
    warnings: list[str]
    extra: dict[str, Any]


def _read_case(case: Case) -> Any:
    from medseg.io import read_image

    return read_image(case.path, series_uid=case.series_uid)


def _infer_case(case: Case, image: Any, t0: float, run: _Run, formats: Sequence[str],
                on_prediction: PredictionHook | None) -> _Predicted:
    from medseg.infer import task_for_image

    predictor = run.predictor(task_for_image(image))
    kwargs: dict[str, Any] = {}
    params = inspect.signature(predictor.predict).parameters
    if run.probabilities and "return_probabilities" in params:
        kwargs["return_probabilities"] = True
    if run.progress is not None and "progress" in params:
        kwargs["progress"] = lambda done, total: run.progress(case, done, total)  # type: ignore[misc]
    pred = predictor.predict(image, **kwargs)
    warnings: list[str] = []
    if not pred.labels.array.any():
        warnings.append("empty prediction: nothing segmented, no DICOM-SEG written")
    dicom_source = image if image.source.is_dicom else run.dicom_source
    if "seg" in formats and dicom_source is None:
        warnings.append("no DICOM source to refer to: wrote a mask file instead of DICOM-SEG")
    note = _spacing_note(image)
    if note:
        warnings.append(note)
    protect = tuple(Path(p) for p in image.source.files) + (
        (Path(image.source.path),) if image.source.path else ()) + ((case.path,) if case.path.is_file() else ())
    ctx = CaseContext(image=image, labels=pred.labels, label_names=pred.label_names, model_name=predictor.name,
                      dicom_source=dicom_source, protect=protect)
    extra = on_prediction(case, image, pred) if on_prediction is not None else {}
    return _Predicted(case, t0, ctx, pred, warnings, extra)


def _write_case(done: _Predicted, out_dir: Path, formats: Sequence[str], layout: Layout) -> CaseResult:
    written = write_case_outputs(done.ctx, out_dir, done.case.name, formats, layout)
    for w in done.warnings:  # INFO: the warning travels in the result/summary row; the CLI prints it once
        log.info("%s: %s", done.case.name, w)
    pred = done.pred
    return CaseResult(
        case=done.case.name, input=str(done.case.path), status="ok" if pred.labels.array.any() else "empty",
        message="; ".join(done.warnings), seconds=time.perf_counter() - done.t0,
        outputs=[str(p) for p in written.values()], summary=pred.summary, uncertainty=pred.uncertainty,
        extra=done.extra, warnings=done.warnings, files={k: str(v) for k, v in written.items()},
    )


def _on_gpu(run: _Run, skip: Sequence[bool]) -> bool:
    """Whether this batch's network runs on a GPU (the loaded predictor's device, else ``run.device``)."""
    if run.predictors:
        return any(getattr(p, "device", None) is not None and p.device.type == "cuda" for p in run.predictors.values())
    from medseg.utils import resolve_device

    return not all(skip) and resolve_device(run.device).startswith("cuda")


_T = TypeVar("_T")


def _guarded(case: Case, step: Callable[[], _T]) -> _T | CaseResult:
    """Run one case's step; any failure becomes that case's error row (a batch never aborts)."""
    try:
        return step()
    except MedsegError as e:
        log.info("%s: %s", case.name, e)
        return CaseResult(case.name, str(case.path), "error", str(e))
    except Exception as e:  # noqa: BLE001 - one bad case must never abort the batch
        log.debug("%s: unexpected error", case.name, exc_info=True)
        return CaseResult(case.name, str(case.path), "error",
                          f"{case.path}: unexpected {type(e).__name__}: {e}. Fix: report this as a bug")


def predict(
    inputs: Sequence[str | PathLike[str]],
    out_dir: str | PathLike[str],
    *,
    checkpoint: str | PathLike[str] | None = None,
    formats: Sequence[str] = FORMATS,
    layout: Layout = "folder",
    naming: Naming = "stem",
    device: str = "auto",
    shard: tuple[int, int] | None = None,
    skip_existing: bool = False,
    on_case: Callable[[CaseResult], None] | None = None,
    on_start: Callable[[Case, int, int], None] | None = None,
    progress: Callable[[Case, int, int], None] | None = None,
    cases: Sequence[Case] | None = None,
    tta_flip: bool | None = None,
    on_prediction: PredictionHook | None = None,
    dicom_source: str | PathLike[str] | None = None,
    infer: dict[str, Any] | None = None,
    probabilities: bool = False,
    prefetch: bool | None = None,
) -> BatchResult:
    """Predict every case found in ``inputs`` and write the requested outputs under ``out_dir``.

    Args:
        inputs: files, DICOM series folders, or folders of studies.
        out_dir: output folder (must not look like a file name: ``x.nii.gz`` is refused).
        checkpoint: a checkpoint folder or a file in it; ``None`` picks the shipped model by
            modality (CT volume vs radiograph).
        formats: output names of :mod:`medseg.export.outputs` (``seg``, ``mask``, ``overlay``;
            ``nifti``/``png`` are accepted aliases of ``mask``/``overlay``).
        layout: ``"folder"`` (``OUT/<case>/seg.dcm``) or ``"flat"`` (``OUT/<case>.nii.gz``,
            ``OUT/<case>_seg.dcm``, like nnU-Net / TotalSegmentator).
        naming: ``"stem"`` (file stem / folder path) or ``"dicom"`` (PatientID_StudyDate_S<n>).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``.
        shard: ``(i, n)``: process cases ``i, i+n, ...`` (0-based); the shard writes
            ``summary-<i>-of-<n>.csv``; :func:`merge_summaries` builds ``summary.csv`` of all.
        skip_existing: skip cases finished before with every requested output present.
        on_case: called after each case; ``on_start(case, index, total)`` before each;
            ``progress(case, done, total)`` within a case (slices), when the model reports it.
        cases: already discovered cases (skips discovery of ``inputs``).
        tta_flip: left-right flip test-time augmentation (default: the checkpoint's setting).
        on_prediction: hook ``(case, image, prediction) -> dict`` stored in ``CaseResult.extra``.
        dicom_source: the DICOM series non-DICOM inputs came from (their SEG refers to it).
        infer: overrides of the model's ``infer.*`` settings (``spacing_mm``, ``window``,
            ``batch_size``, ``precision``, ``body_crop``, ...), validated like any config.
        probabilities: keep full class probabilities in each prediction (for hooks that need them).
        prefetch: read the next case and write the previous one in background threads while the
            network runs (results, records and ``on_case`` calls stay in case order). ``None``
            (default): on when the model runs on a GPU; on a CPU the threads would compete with
            the network for the same cores.

    Returns:
        :class:`BatchResult`; ``exit_code`` is 0 when all cases succeeded, 1 when some failed.

    Raises:
        ConfigError / CheckpointError: before any case runs (bad arguments, no inputs found,
            unreadable checkpoint or DICOM source).
    """
    out = Path(out_dir)
    fmts = resolve_formats(formats)
    if layout not in ("folder", "flat"):
        raise ConfigError(f"unknown layout {layout!r}", path="--layout", hint="use folder or flat")
    _check_naming(naming)
    if suffix_of(out) in writable_suffixes(labels=True) or out.is_file():
        raise ConfigError("--out must be a folder, not a file name", path=out,
                          hint="give a folder; each case writes its files inside it")
    ckpt = resolve_checkpoint(checkpoint)
    notes: list[str] = []
    if cases is not None:
        all_cases = list(cases)
    else:
        found = discover(inputs, out_dir=out, naming=naming)
        all_cases, notes = found.cases, found.notes
    if not all_cases and cases is None:
        raise ConfigError("no images or DICOM series found", path=", ".join(map(str, inputs)),
                          hint="point at image files, DICOM folders or folders of studies")
    if shard is not None:
        i, n = shard
        if not (n >= 1 and 0 <= i < n):
            raise ConfigError(f"bad shard {i}/{n}", path="--shard", hint="use --shard i/n with 0 <= i < n")
        all_cases = all_cases[i::n]
    source_image = None
    if dicom_source is not None:
        from medseg.io import read_image

        source_image = read_image(dicom_source)
        if not source_image.source.is_dicom:
            raise ConfigError("--dicom-source must be a DICOM series or file", path=dicom_source)
    run = _Run(ckpt, tta_flip, device, source_image, progress, infer, probabilities)
    if ckpt is not None:  # fail once, up front, not once per case
        from medseg.infer import Predictor

        run.predictors["given"] = Predictor.from_checkpoint(ckpt, tta_flip=tta_flip, device=device, infer=infer)
    out.mkdir(parents=True, exist_ok=True)
    cleaned = _clean_stale_temporaries(out)
    if cleaned:
        log.info("%s: removed %d temporary file(s) left by an interrupted run", out, cleaned)
    results: list[CaseResult] = []

    def finish(res: CaseResult) -> None:
        if res.status != "skipped":
            write_record(out, CaseRecord(
                case=res.case, input=res.input, status=res.status, message=res.message, seconds=res.seconds,
                formats=fmts if res.status != "error" else [],
                outputs=relative_outputs(out, {k: Path(v) for k, v in res.files.items()}),
                summary=res.summary, uncertainty=res.uncertainty, extra=_jsonable(res.extra),
                warnings=res.warnings))
        results.append(res)
        if on_case is not None:
            on_case(res)

    skip = [skip_existing and is_complete(out, c.name, fmts, str(c.path)) for c in all_cases]
    if prefetch is None:
        prefetch = bool(all_cases) and _on_gpu(run, skip)
    # pipeline (GPU): the next case is read and the previous one written in background threads while
    # the network runs; results and records stay in case order
    reader = ThreadPoolExecutor(1, thread_name_prefix="medseg-read") if prefetch else None
    writer = ThreadPoolExecutor(1, thread_name_prefix="medseg-write") if prefetch else None
    reads: dict[int, Future[Any]] = {}
    writing: tuple[Case, Future[CaseResult]] | None = None

    def flush() -> None:
        nonlocal writing
        if writing is not None:
            case_w, fut = writing
            writing = None
            finish(_guarded(case_w, fut.result))

    def read_ahead(after: int) -> None:
        nxt = next((j for j in range(after + 1, len(all_cases)) if not skip[j]), None)
        if reader is not None and nxt is not None and nxt not in reads:
            reads[nxt] = reader.submit(_read_case, all_cases[nxt])

    try:
        for index, case in enumerate(all_cases):
            if on_start is not None:
                on_start(case, index, len(all_cases))
            if skip[index]:
                flush()
                rec = read_record(out, case.name)
                finish(CaseResult(case.name, str(case.path), "skipped", "outputs exist",
                                  outputs=[str(out / p) for p in rec.outputs.values()] if rec else [],
                                  summary=rec.summary if rec else {}, uncertainty=rec.uncertainty if rec else {},
                                  extra=rec.extra if rec else {},
                                  files={k: str(out / v) for k, v in rec.outputs.items()} if rec else {}))
                continue
            t0 = time.perf_counter()
            pending = reads.pop(index, None)
            read_ahead(index)

            def infer_step(case: Case = case, pending: Future[Any] | None = pending, t0: float = t0) -> _Predicted:
                image = pending.result() if pending is not None else _read_case(case)
                return _infer_case(case, image, t0, run, fmts, on_prediction)

            done = _guarded(case, infer_step)
            if isinstance(done, CaseResult):  # the case failed before writing
                flush()
                finish(done)
                continue
            if writer is None:
                finish(_guarded(case, partial(_write_case, done, out, fmts, layout)))
                continue
            flush()  # at most one case waits for its writer
            writing = (case, writer.submit(_write_case, done, out, fmts, layout))
        flush()
    finally:
        for pool in (reader, writer):
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
    if shard is None:
        summary_csv = merge_summaries(out)
    else:
        names = {c.name for c in all_cases}
        summary_csv = write_summary(out / f"summary-{shard[0]}-of-{shard[1]}.csv",
                                    [r for r in read_records(out) if r.case in names])
    return BatchResult(out, summary_csv, results, notes)


def _jsonable(extra: dict[str, Any]) -> dict[str, Any]:
    import json

    out = {}
    for k, v in extra.items():
        try:
            json.dumps(v)
            out[k] = v
        except (TypeError, ValueError):
            continue
    return out


def merge_summaries(out_dir: str | PathLike[str]) -> Path:
    """(Re)build ``OUT/summary.csv`` from every case record: all shards, all earlier runs."""
    out = Path(out_dir)
    records = read_records(out)
    if not records and not (out / ".medseg").is_dir():
        raise ConfigError("no medseg results found", path=out, hint="pass the --out folder of medseg predict")
    return write_summary(out / "summary.csv", records)
