"""LUNA16 FROC evaluation of nodule candidates (CPM with a bootstrap confidence interval).

Written by hand, following the official ``noduleCADEvaluationLUNA16.py`` step by step, because no
library we depend on does the LUNA16 matching: MONAI's ``compute_froc_curve_data`` takes
already-matched TP/FP probabilities (and drops the lowest threshold), and ``compute_froc_score``
defaults to other FP rates. The protocol:

* The scans are the given series list (LUNA16: ``seriesuids.csv``); without one, the union of the
  series in the annotations and the predictions (a scan with neither is then not counted).
* Per scan, only the 100 most probable candidates are kept (official ``maxNumberOfCADMarks``; as
  there, candidates tied with the 101st probability are dropped too).
* A candidate hits a nodule when the squared distance between its centre and the nodule centre
  is ``< (diameter / 2)^2`` (world mm). Several hits on one nodule count once, with the highest
  probability; the other hits are neither TPs nor FPs. A candidate inside two nodules hits both.
* Candidates within the radius of an *excluded* finding (``annotations_excluded.csv``; a diameter
  < 0 means 10 mm, as in the official script) that hit no included nodule are ignored.
* Every other candidate is a false positive. Missed nodules count in the sensitivity denominator.
* The FROC curve is sensitivity vs. FPs per scan over all probability thresholds (sklearn
  ``roc_curve`` semantics: one point per distinct probability, starting at (0, 0)), read by linear
  interpolation (``numpy.interp``) at 1/8, 1/4, 1/2, 1, 2, 4 and 8 FPs per scan; CPM is their mean.
* Bootstrap: scans are resampled with replacement ``n_bootstrap`` times; the interval bounds are
  the sorted values at ``floor(0.025 n)`` and ``floor(0.975 n)`` (official ``compute_mean_ci``).
  Our generator is ``numpy.random.default_rng(seed)``, so the interval is reproducible but not
  bit-identical to the official script (which uses the global NumPy RNG).

Deviations only in degenerate cases the official script turns into NaN: when no nodule is
detected at all the sensitivity is 0, and bootstrap samples without any nodule are skipped.
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path

import numpy as np

from medseg.detect.targets import (
    LUNA16_COLUMNS,
    NoduleAnnotation,
    csv_float,
    read_csv_table,
    read_nodule_annotations,
)
from medseg.errors import InputError
from medseg.utils import atomic_path

__all__ = [
    "FROCResult",
    "Candidate",
    "LUNA16_FPS_PER_SCAN",
    "evaluate_detection",
    "froc_from_lists",
    "read_candidates_csv",
    "read_seriesuids",
    "plot_froc",
]

log = logging.getLogger(__name__)

LUNA16_FPS_PER_SCAN: tuple[float, ...] = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
#: official script: a finding with an unknown diameter (-1) gets this diameter
UNKNOWN_DIAMETER_MM = 10.0
_PRED_COLUMNS = ("seriesuid", "coordX", "coordY", "coordZ", "probability")


@dataclass(frozen=True)
class Candidate:
    """One row of a LUNA16 submission: world centre (mm, LPS) and probability."""

    seriesuid: str
    center: tuple[float, float, float]
    probability: float


@dataclass
class FROCResult:
    """FROC evaluation result.

    Attributes:
        fps_per_scan: the FP rates the sensitivity is read at.
        sensitivity: sensitivity at each rate (full data set).
        cpm: mean of ``sensitivity`` (LUNA16 Competition Performance Metric).
        ci_lower / ci_upper: bootstrap interval bounds per rate (None without bootstrap).
        cpm_ci: bootstrap interval of the CPM (None without bootstrap).
        bootstrap_mean: mean bootstrap sensitivity per rate (the official curve's dashed line).
        curve_fps / curve_sensitivity: the FROC curve points (FPs per scan, sensitivity).
        band_fps / band_lower / band_upper: the bootstrap band on a log-spaced grid, for plots.
        n_scans, n_nodules, n_detected: scans, included nodules, nodules hit at any threshold.
        n_candidates: candidates evaluated (after the per-scan cap), n_false_positives,
        n_ignored_excluded: candidates on excluded findings, n_double_hits: extra hits on a
        nodule already hit; n_bootstrap: bootstrap samples used; confidence: e.g. 0.95.
    """

    fps_per_scan: tuple[float, ...]
    sensitivity: tuple[float, ...]
    cpm: float
    curve_fps: np.ndarray
    curve_sensitivity: np.ndarray
    n_scans: int
    n_nodules: int
    n_detected: int
    n_candidates: int
    n_false_positives: int
    n_ignored_excluded: int
    n_double_hits: int
    ci_lower: tuple[float, ...] | None = None
    ci_upper: tuple[float, ...] | None = None
    cpm_ci: tuple[float, float] | None = None
    bootstrap_mean: tuple[float, ...] | None = None
    band_fps: np.ndarray | None = None
    band_lower: np.ndarray | None = None
    band_upper: np.ndarray | None = None
    n_bootstrap: int = 0
    confidence: float = 0.95
    seriesuids: tuple[str, ...] = field(default_factory=tuple)

    def table_rows(self) -> list[tuple[str, str, str]]:
        """``(FPs/scan, sensitivity, CI)`` rows as text, the CPM last."""
        rows = []
        for i, (r, s) in enumerate(zip(self.fps_per_scan, self.sensitivity, strict=True)):
            ci = "" if self.ci_lower is None or self.ci_upper is None else (
                f"[{self.ci_lower[i]:.3f}, {self.ci_upper[i]:.3f}]"
            )
            rows.append((f"{r:g}", f"{s:.3f}", ci))
        ci = "" if self.cpm_ci is None else f"[{self.cpm_ci[0]:.3f}, {self.cpm_ci[1]:.3f}]"
        rows.append(("CPM", f"{self.cpm:.3f}", ci))
        return rows


# ---------------------------------------------------------------------------------------------
# reading


def read_candidates_csv(path: str | PathLike[str]) -> list[Candidate]:
    """Read a LUNA16 submission CSV (``seriesuid,coordX,coordY,coordZ,probability``, world mm LPS)."""
    p = Path(path)
    fields, rows = read_csv_table(p, "candidates CSV", "pass the CSV written by write_candidates_csv")
    missing = [c for c in _PRED_COLUMNS if c not in fields]
    if missing:
        raise InputError(
            f"missing column(s) {missing}; found {fields}",
            path=p,
            hint="use the LUNA16 submission header " + ",".join(_PRED_COLUMNS),
        )
    out = []
    for i, row in enumerate(rows, start=2):
        uid = (row.get("seriesuid") or "").strip()
        if not uid:
            raise InputError(f"line {i}: empty seriesuid", path=p)
        x, y, z, prob = (csv_float(row.get(c), p, i, c) for c in _PRED_COLUMNS[1:])
        out.append(Candidate(uid, (x, y, z), prob))
    return out


def read_seriesuids(path: str | PathLike[str]) -> list[str]:
    """Read a LUNA16 ``seriesuids.csv``: one SeriesInstanceUID per line (first column; a
    ``seriesuid`` header line is allowed). Duplicates are dropped, order kept."""
    p = Path(path)
    if not p.is_file():
        raise InputError("series list not found", path=p, hint="one SeriesInstanceUID per line")
    out: list[str] = []
    with p.open(newline="") as f:
        for row in csv.reader(f):
            if not row or not row[0].strip():
                continue
            uid = row[0].strip()
            if uid.lower() == "seriesuid":
                continue
            if uid not in out:
                out.append(uid)
    if not out:
        raise InputError("the series list is empty", path=p)
    return out


# ---------------------------------------------------------------------------------------------
# matching (official evaluateCAD)


def _cap_marks(cands: list[Candidate], max_marks: int) -> list[Candidate]:
    """Official cap: keep marks with probability > the (max+1)-th highest, at most ``max_marks``."""
    if max_marks <= 0 or len(cands) <= max_marks:
        return cands
    probs = sorted((c.probability for c in cands), reverse=True)
    cut = probs[max_marks]
    kept: list[Candidate] = []
    for c in cands:
        if len(kept) >= max_marks:
            break
        if c.probability > cut:
            kept.append(c)
    return kept


@dataclass
class _Entries:
    """FROC vectors of the official script: one entry per nodule (hit or missed) and per FP."""

    gt: list[float] = field(default_factory=list)
    prob: list[float] = field(default_factory=list)
    excluded: list[bool] = field(default_factory=list)
    scan: list[int] = field(default_factory=list)
    tp: int = 0
    fn: int = 0
    fp: int = 0
    ignored: int = 0
    doubles: int = 0
    n_cands: int = 0


def _match_scan(
    k: int,
    cands: list[Candidate],
    included: list[NoduleAnnotation],
    excluded: list[NoduleAnnotation],
    e: _Entries,
) -> None:
    e.n_cands += len(cands)
    pos = np.array([c.center for c in cands], dtype=np.float64).reshape(-1, 3)
    remaining = set(range(len(cands)))
    for state, nodules in (("included", included), ("excluded", excluded)):
        for a in nodules:
            d = a.diameter_mm if a.diameter_mm >= 0 else UNKNOWN_DIAMETER_MM
            r2 = (d / 2.0) ** 2
            d2 = np.sum((pos - np.asarray(a.center)) ** 2, axis=1)
            matches = [int(i) for i in np.nonzero(d2 < r2)[0]]
            if state == "included":
                for i in matches:
                    if i not in remaining:
                        log.warning("series %s: one candidate hits two nodules (overlapping annotations)", a.seriesuid)
                    remaining.discard(i)
                if len(matches) > 1:
                    e.doubles += len(matches) - 1
                e.gt.append(1.0)
                e.scan.append(k)
                if matches:
                    e.prob.append(max(cands[i].probability for i in matches))
                    e.excluded.append(False)
                    e.tp += 1
                else:
                    e.prob.append(-1e9)  # official minProbValue; the entry is excluded from the ROC
                    e.excluded.append(True)
                    e.fn += 1
            else:
                for i in matches:
                    if i in remaining:
                        remaining.discard(i)
                        e.ignored += 1
    for i in sorted(remaining):
        e.gt.append(0.0)
        e.prob.append(cands[i].probability)
        e.excluded.append(False)
        e.scan.append(k)
        e.fp += 1


# ---------------------------------------------------------------------------------------------
# curve (official computeFROC, weighted for the bootstrap)


class _Curve:
    """Sorted FROC vectors, ready for (re-weighted) curves."""

    def __init__(self, gt: np.ndarray, prob: np.ndarray, excluded: np.ndarray, scan: np.ndarray):
        keep = ~excluded
        order = np.argsort(-prob[keep], kind="mergesort")
        self.gt = gt[keep][order]
        self.scan = scan[keep][order]
        s = prob[keep][order]
        # last index of each group of equal probabilities = one ROC point per distinct threshold
        self.ends = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1] if len(s) else np.zeros(0, dtype=int)
        self.all_gt = gt
        self.all_scan = scan

    def curve(self, n_images: int, scan_weight: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray] | None:
        """(FPs per scan, sensitivity) with one point per distinct probability plus (0, 0).

        ``scan_weight[k]`` = how often scan k is in the (bootstrap) sample. None when the sample
        holds no nodule.
        """
        w_all = np.ones(len(self.all_gt)) if scan_weight is None else scan_weight[self.all_scan]
        total_lesions = float(np.sum(w_all * self.all_gt))
        if total_lesions <= 0:
            return None
        w = np.ones(len(self.gt)) if scan_weight is None else scan_weight[self.scan]
        tps = np.cumsum(w * self.gt)[self.ends] if len(self.ends) else np.zeros(0)
        fps = np.cumsum(w * (1.0 - self.gt))[self.ends] if len(self.ends) else np.zeros(0)
        tps = np.r_[0.0, tps]
        fps = np.r_[0.0, fps]
        if fps[-1] == 0:  # official: "this system has no false positives" -> FP rate 0 everywhere
            fps_rate = np.zeros_like(fps)
        else:
            fps_rate = fps / float(n_images)
        sens = tps / total_lesions
        return fps_rate, sens


def _ci_bounds(values: np.ndarray, confidence: float) -> tuple[float, float]:
    """Official compute_mean_ci: sorted values at floor(Pz n) and floor((1 - Pz) n)."""
    vec = np.sort(values)
    pz = (1.0 - confidence) / 2.0
    n = len(vec)
    lo = vec[min(int(math.floor(pz * n)), n - 1)]
    hi = vec[min(int(math.floor((1.0 - pz) * n)), n - 1)]
    return float(lo), float(hi)


def froc_from_lists(
    entries_gt: Sequence[float],
    entries_prob: Sequence[float],
    entries_excluded: Sequence[bool],
    entries_scan: Sequence[int],
    n_scans: int,
    *,
    fps_per_scan: Sequence[float] = LUNA16_FPS_PER_SCAN,
    n_bootstrap: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, object]:
    """FROC numbers from the official FROC vectors (one entry per nodule and per FP candidate).

    Returns a dict with ``sensitivity``, ``cpm``, ``curve_fps``, ``curve_sensitivity`` and, with
    bootstrap, ``ci_lower``, ``ci_upper``, ``cpm_ci``, ``bootstrap_mean``, ``band_*``,
    ``n_bootstrap``. Exposed for tests and for callers that do their own matching.
    """
    rates = np.asarray(fps_per_scan, dtype=np.float64)
    c = _Curve(
        np.asarray(entries_gt, dtype=np.float64),
        np.asarray(entries_prob, dtype=np.float64),
        np.asarray(entries_excluded, dtype=bool),
        np.asarray(entries_scan, dtype=np.int64),
    )
    full = c.curve(n_scans)
    if full is None:
        raise InputError("there is no included nodule in the evaluated scans", hint="check the annotations file")
    fps, sens = full
    # linear interpolation of the curve at the rates, as the official script's np.interp
    at = np.interp(rates, fps, sens)
    out: dict[str, object] = {
        "sensitivity": tuple(float(v) for v in at),
        "cpm": float(np.mean(at)),
        "curve_fps": fps,
        "curve_sensitivity": sens,
    }
    if n_bootstrap > 0:
        rng = np.random.default_rng(seed)
        grid = np.geomspace(min(0.125, float(rates.min())), max(8.0, float(rates.max())), 200)
        samples, curves = [], []
        for _ in range(n_bootstrap):
            counts = np.bincount(rng.integers(0, n_scans, n_scans), minlength=n_scans).astype(np.float64)
            res = c.curve(n_scans, counts)
            if res is None:
                continue
            samples.append(np.interp(rates, res[0], res[1]))
            curves.append(np.interp(grid, res[0], res[1]))
        if samples:
            s = np.asarray(samples)
            cpm_s = s.mean(axis=1)
            bounds = [_ci_bounds(s[:, i], confidence) for i in range(len(rates))]
            g = np.asarray(curves)
            band = np.array([_ci_bounds(g[:, j], confidence) for j in range(len(grid))])
            out.update(
                ci_lower=tuple(b[0] for b in bounds),
                ci_upper=tuple(b[1] for b in bounds),
                cpm_ci=_ci_bounds(cpm_s, confidence),
                bootstrap_mean=tuple(float(v) for v in s.mean(axis=0)),
                band_fps=grid,
                band_lower=band[:, 0],
                band_upper=band[:, 1],
                n_bootstrap=len(samples),
            )
    return out


def evaluate_detection(
    pred_csv: str | PathLike[str],
    annotations_csv: str | PathLike[str],
    excluded_csv: str | PathLike[str] | None = None,
    *,
    seriesuids: str | PathLike[str] | Sequence[str] | None = None,
    fps_per_scan: Sequence[float] = LUNA16_FPS_PER_SCAN,
    n_bootstrap: int = 1000,
    seed: int = 0,
    max_marks_per_scan: int = 100,
    confidence: float = 0.95,
) -> FROCResult:
    """Evaluate LUNA16-style candidates against nodule annotations (FROC, CPM, bootstrap CI).

    Args:
        pred_csv: candidates, ``seriesuid,coordX,coordY,coordZ,probability`` (world mm, LPS).
        annotations_csv: LUNA16 ``annotations.csv`` (``seriesuid,coordX,coordY,coordZ,diameter_mm``).
        excluded_csv: optional ``annotations_excluded.csv`` (findings whose candidates are ignored).
        seriesuids: the scans evaluated: a file (``seriesuids.csv``) or a list. Default: every
            series in the annotations or the predictions.
        fps_per_scan: FP rates for the FROC points (LUNA16: 1/8 ... 8); CPM is their mean.
        n_bootstrap: bootstrap samples over scans for the confidence interval (0 = none).
        seed: bootstrap seed.
        max_marks_per_scan: official cap on candidates per scan (0 = no cap).
        confidence: interval level.

    Raises:
        InputError: unreadable files, bad rows, no included nodule among the scans.
    """
    rates = tuple(float(r) for r in fps_per_scan)
    if not rates or any(not (r > 0 and math.isfinite(r)) for r in rates):
        raise InputError(f"fps_per_scan must hold positive numbers, got {fps_per_scan}")
    if not 0 < confidence < 1:
        raise InputError(f"confidence must be in (0, 1), got {confidence}")
    if n_bootstrap < 0:
        raise InputError(f"n_bootstrap must be >= 0, got {n_bootstrap}")
    preds = read_candidates_csv(pred_csv)
    included = read_nodule_annotations(annotations_csv)
    excl = read_nodule_annotations(excluded_csv) if excluded_csv is not None else []
    for path, anns in ((annotations_csv, included), (excluded_csv, excl)):
        if anns and anns[0].reader is not None:
            raise InputError("expected LUNA16 columns " + ",".join(LUNA16_COLUMNS), path=path)
    bad = [a for a in included if not a.diameter_mm > 0]
    if bad:
        raise InputError(
            f"{len(bad)} included nodule(s) have a diameter <= 0 (e.g. series {bad[0].seriesuid})",
            path=annotations_csv,
            hint="unknown-size findings belong in the excluded file",
        )
    if seriesuids is None:
        scans: list[str] = []
        for uid in [a.seriesuid for a in included] + [p.seriesuid for p in preds]:
            if uid not in scans:
                scans.append(uid)
    elif isinstance(seriesuids, (str, PathLike)):
        scans = read_seriesuids(seriesuids)
    else:
        scans = list(dict.fromkeys(str(s) for s in seriesuids))
    if not scans:
        raise InputError("no scans to evaluate", path=annotations_csv, hint="the annotations and predictions are empty")
    scan_set = set(scans)
    outside = {p.seriesuid for p in preds} - scan_set
    if outside:
        log.warning("ignoring candidates of %d series not in the series list", len(outside))
    by_scan_pred: dict[str, list[Candidate]] = {u: [] for u in scans}
    for p in preds:
        if p.seriesuid in scan_set:
            by_scan_pred[p.seriesuid].append(p)
    by_scan_inc: dict[str, list[NoduleAnnotation]] = {u: [] for u in scans}
    for a in included:
        if a.seriesuid in scan_set:
            by_scan_inc[a.seriesuid].append(a)
    by_scan_exc: dict[str, list[NoduleAnnotation]] = {u: [] for u in scans}
    for a in excl:
        if a.seriesuid in scan_set:
            by_scan_exc[a.seriesuid].append(a)

    e = _Entries()
    for k, uid in enumerate(scans):
        cands = _cap_marks(by_scan_pred[uid], max_marks_per_scan)
        _match_scan(k, cands, by_scan_inc[uid], by_scan_exc[uid], e)
    n_nodules = e.tp + e.fn
    if n_nodules == 0:
        raise InputError(
            "there is no included nodule in the evaluated scans",
            path=annotations_csv,
            hint="check the seriesuids of the annotations and the series list",
        )
    num = froc_from_lists(
        e.gt, e.prob, e.excluded, e.scan, len(scans),
        fps_per_scan=rates, n_bootstrap=n_bootstrap, seed=seed, confidence=confidence,
    )
    log.info("FROC: %d scans, %d nodules, %d detected, %d FPs", len(scans), n_nodules, e.tp, e.fp)
    return FROCResult(
        fps_per_scan=rates,
        n_scans=len(scans),
        n_nodules=n_nodules,
        n_detected=e.tp,
        n_candidates=e.n_cands,
        n_false_positives=e.fp,
        n_ignored_excluded=e.ignored,
        n_double_hits=e.doubles,
        confidence=confidence,
        seriesuids=tuple(scans),
        **num,  # type: ignore[arg-type]
    )


# ---------------------------------------------------------------------------------------------
# plot


def plot_froc(result: FROCResult, path: str | PathLike[str], *, title: str | None = None) -> Path:
    """Save the FROC curve (log2 FP axis 1/8..8, bootstrap band, marked FP rates) as a PNG, atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FixedLocator, FuncFormatter

    fig = Figure(figsize=(6, 4.5), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    lo_x = min(0.125, min(result.fps_per_scan))
    hi_x = max(8.0, max(result.fps_per_scan))
    grid = np.geomspace(lo_x, hi_x, 400)
    ax.plot(grid, np.interp(grid, result.curve_fps, result.curve_sensitivity), color="C0", lw=2, label="FROC")
    if result.band_fps is not None and result.band_lower is not None and result.band_upper is not None:
        ax.fill_between(result.band_fps, result.band_lower, result.band_upper, color="C0", alpha=0.15,
                        label=f"{int(result.confidence * 100)}% bootstrap CI")
    ax.plot(result.fps_per_scan, result.sensitivity, "o", color="C1", label=f"CPM = {result.cpm:.3f}")
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(FixedLocator(list(result.fps_per_scan)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    ax.set_xlim(lo_x, hi_x)
    ax.set_ylim(0, 1)
    ax.set_xlabel("Average number of false positives per scan")
    ax.set_ylabel("Sensitivity")
    ax.set_title(title or f"FROC ({result.n_scans} scans, {result.n_nodules} nodules)")
    ax.grid(True, which="both", alpha=0.4)
    ax.legend(loc="lower right")
    fig.tight_layout()
    out = Path(path)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png")
    return out
