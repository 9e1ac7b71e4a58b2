"""The LUNA16 FROC evaluator against hand-computed cases.

Every expected number below is worked out by hand in the comments: list the candidates that
count (one per detected nodule at its best probability, plus the false positives), sort them by
probability, walk down the thresholds to get (FPs / scans, sensitivity) points starting at (0, 0),
and read the polyline at 1/8 ... 8 FPs per scan by linear interpolation.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from medseg.detect import evaluate_detection, plot_froc, read_seriesuids
from medseg.errors import InputError

ANN = ("seriesuid", "coordX", "coordY", "coordZ", "diameter_mm")
PRED = ("seriesuid", "coordX", "coordY", "coordZ", "probability")


def _csv(path: Path, header: tuple[str, ...], rows: list[tuple]) -> Path:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


@pytest.fixture
def case(tmp_path: Path) -> tuple[Path, Path, Path]:
    ann = _csv(tmp_path / "annotations.csv", ANN, [
        ("A", 0, 0, 0, 10),     # n1, radius 5
        ("A", 50, 0, 0, 6),     # n2, radius 3
        ("B", 0, 0, 0, 8),      # n3, radius 4
    ])
    exc = _csv(tmp_path / "excluded.csv", ANN, [
        ("A", 0, 50, 0, -1),    # unknown diameter -> 10 mm, radius 5
    ])
    pred = _csv(tmp_path / "pred.csv", PRED, [
        ("A", 1, 0, 0, 0.9),        # hits n1 (1 mm)
        ("A", 0, 2, 0, 0.6),        # hits n1 again: a double hit, neither TP nor FP
        ("A", 0, 52, 0, 0.95),      # on the excluded finding (2 mm < 5): ignored
        ("A", 100, 100, 100, 0.7),  # FP
        ("A", 53, 0, 0, 0.4),       # exactly 3 mm from n2: not < radius -> FP, n2 missed
        ("B", 3.9, 0, 0, 0.8),      # hits n3 (3.9 < 4)
        ("B", 0, 30, 0, 0.3),       # FP
        ("C", 0, 0, 0, 0.85),       # FP on a scan without nodules
        ("C", 10, 10, 10, 0.2),     # FP
    ])
    return pred, ann, exc


def test_hand_computed_froc(case: tuple[Path, Path, Path]) -> None:
    pred, ann, exc = case
    r = evaluate_detection(pred, ann, exc, n_bootstrap=0)
    # scans A, B, C; nodules n1, n2, n3 (3); counted: 0.9 TP(n1), 0.85 FP, 0.8 TP(n3), 0.7 FP,
    # 0.4 FP, 0.3 FP, 0.2 FP. Points (FP/3, TP/3): (0,0) (0,1/3) (1/3,1/3) (1/3,2/3) (2/3,2/3)
    # (1,2/3) (4/3,2/3) (5/3,2/3).
    # 1/8 and 1/4 lie on the flat segment (0,1/3)-(1/3,1/3) -> 1/3; 1/2 on (1/3,2/3)-(2/3,2/3)
    # -> 2/3; 1, 2, 4, 8 -> 2/3 (beyond the last point the curve stays flat).
    expected = [1 / 3, 1 / 3, 2 / 3, 2 / 3, 2 / 3, 2 / 3, 2 / 3]
    assert r.sensitivity == pytest.approx(expected)
    assert r.cpm == pytest.approx(4 / 7)
    assert (r.n_scans, r.n_nodules, r.n_detected) == (3, 3, 2)
    assert (r.n_false_positives, r.n_ignored_excluded, r.n_double_hits, r.n_candidates) == (5, 1, 1, 9)
    assert r.ci_lower is None and r.cpm_ci is None
    np.testing.assert_allclose(r.curve_fps[-1], 5 / 3)


def test_without_excluded_file_the_mark_is_a_false_positive(case: tuple[Path, Path, Path]) -> None:
    pred, ann, _ = case
    r = evaluate_detection(pred, ann, n_bootstrap=0)
    # now 0.95 is an FP ranked first: points (0,0) (1/3,0) (1/3,1/3) (2/3,1/3) (2/3,2/3) (1,2/3)...
    # 1/8 -> on (0,0)-(1/3,0) = 0; 1/4 -> 0; 1/2 -> on (1/3,1/3)-(2/3,1/3) = 1/3; 1.. -> 2/3
    assert r.sensitivity == pytest.approx([0, 0, 1 / 3, 2 / 3, 2 / 3, 2 / 3, 2 / 3])
    assert r.n_false_positives == 6 and r.n_ignored_excluded == 0


def test_series_list_sets_the_fp_denominator(case: tuple[Path, Path, Path], tmp_path: Path) -> None:
    pred, ann, exc = case
    uids = tmp_path / "seriesuids.csv"
    uids.write_text("A\nB\nC\nD\n")  # LUNA16 style: no header; D has no nodule and no candidate
    assert read_seriesuids(uids) == ["A", "B", "C", "D"]
    r = evaluate_detection(pred, ann, exc, seriesuids=uids, n_bootstrap=0)
    # same counted list, 4 scans: points (0,1/3) (1/4,1/3) (1/4,2/3) (1/2,2/3) ... ; 1/8 -> 1/3,
    # 1/4 -> the last point at x = 1/4, i.e. the top of the vertical step = 2/3; the rest 2/3.
    assert r.sensitivity == pytest.approx([1 / 3, 2 / 3, 2 / 3, 2 / 3, 2 / 3, 2 / 3, 2 / 3])
    assert r.n_scans == 4
    # a list without C drops C's candidates
    r2 = evaluate_detection(pred, ann, exc, seriesuids=["A", "B"], n_bootstrap=0)
    # counted: 0.9 TP, 0.8 TP, 0.7 FP, 0.4 FP, 0.3 FP over 2 scans -> 2/3 from 0 FPs on
    assert r2.sensitivity == pytest.approx([2 / 3] * 7)
    assert r2.n_false_positives == 3


def test_ties_interpolate_diagonally(tmp_path: Path) -> None:
    ann = _csv(tmp_path / "a.csv", ANN, [("A", 0, 0, 0, 6), ("B", 0, 0, 0, 6)])
    pred = _csv(tmp_path / "p.csv", PRED, [
        ("A", 0, 0, 0, 0.5),    # TP
        ("C", 0, 0, 0, 0.5),    # FP with the same probability
        ("D", 0, 0, 0, 0.1),    # FP
        ("B", 9, 9, 9, 0.05),   # FP, B's nodule missed
    ])
    r = evaluate_detection(pred, ann, n_bootstrap=0)
    # scans A, B, C, D (4), 2 nodules. One threshold at 0.5 adds 1 TP and 1 FP together:
    # (0,0) -> (1/4, 1/2) -> (1/2, 1/2) -> (3/4, 1/2). 1/8 is half way up the diagonal -> 1/4.
    assert r.sensitivity == pytest.approx([1 / 4, 1 / 2, 1 / 2, 1 / 2, 1 / 2, 1 / 2, 1 / 2])
    assert r.cpm == pytest.approx((1 / 4 + 6 * 1 / 2) / 7)


def test_no_false_positives_and_one_mark_on_two_nodules(tmp_path: Path) -> None:
    ann = _csv(tmp_path / "a.csv", ANN, [("A", 0, 0, 0, 10), ("A", 4, 0, 0, 10), ("A", 40, 0, 0, 4)])
    pred = _csv(tmp_path / "p.csv", PRED, [("A", 2, 0, 0, 0.7)])
    r = evaluate_detection(pred, ann, n_bootstrap=0)
    # the mark is within 5 mm of the two overlapping nodules: both detected (official behaviour),
    # the third missed; no FP at all -> the FP axis is 0 everywhere -> 2/3 at every rate
    assert r.sensitivity == pytest.approx([2 / 3] * 7)
    assert r.n_detected == 2 and r.n_false_positives == 0


def test_excluded_finding_does_not_hide_a_hit(tmp_path: Path) -> None:
    ann = _csv(tmp_path / "a.csv", ANN, [("A", 0, 0, 0, 10)])
    exc = _csv(tmp_path / "e.csv", ANN, [("A", 1, 0, 0, 20)])
    pred = _csv(tmp_path / "p.csv", PRED, [("A", 0, 0, 0, 0.6), ("A", 8, 0, 0, 0.9), ("A", 30, 0, 0, 0.8)])
    r = evaluate_detection(pred, ann, exc, n_bootstrap=0)
    # 0.6 hits the included nodule first (TP); 0.9 lies only in the excluded finding (ignored);
    # 0.8 is an FP. Counted: 0.8 FP, 0.6 TP over 1 scan: (0,0) (1,0) (1,1) -> 1/8..1/2: 0;
    # at exactly 1 the last point with x = 1 gives 1; 2, 4, 8 -> 1.
    assert r.sensitivity == pytest.approx([0, 0, 0, 1, 1, 1, 1])
    assert r.n_ignored_excluded == 1


def test_cap_of_100_marks_per_scan(tmp_path: Path) -> None:
    ann = _csv(tmp_path / "a.csv", ANN, [("A", 0, 0, 0, 10)])
    # 100 far FPs with probability 0.5 + one TP at 0.4: the cap keeps the 100 highest -> TP dropped
    rows = [("A", 100 + i, 0, 0, 0.5 + i * 1e-4) for i in range(100)] + [("A", 0, 0, 0, 0.4)]
    pred = _csv(tmp_path / "p.csv", PRED, rows)
    capped = evaluate_detection(pred, ann, n_bootstrap=0)
    assert capped.n_detected == 0 and capped.n_candidates == 100
    uncapped = evaluate_detection(pred, ann, n_bootstrap=0, max_marks_per_scan=0)
    assert uncapped.n_detected == 1 and uncapped.n_candidates == 101


def test_bootstrap_interval_two_scans(tmp_path: Path) -> None:
    ann = _csv(tmp_path / "a.csv", ANN, [("A", 0, 0, 0, 10), ("B", 0, 0, 0, 10)])
    pred = _csv(tmp_path / "p.csv", PRED, [("A", 0, 0, 0, 0.9)])
    r = evaluate_detection(pred, ann, n_bootstrap=1000, seed=1)
    # resampling 2 scans: AA (p=1/4) -> sensitivity 1, AB/BA (1/2) -> 1/2, BB (1/4) -> 0.
    # 2.5 % / 97.5 % order statistics of 1000 draws are then 0 and 1; the mean is ~1/2.
    assert r.sensitivity == pytest.approx([0.5] * 7)
    assert r.ci_lower == pytest.approx([0.0] * 7) and r.ci_upper == pytest.approx([1.0] * 7)
    assert r.cpm_ci == pytest.approx((0.0, 1.0))
    assert r.bootstrap_mean is not None and all(abs(m - 0.5) < 0.05 for m in r.bootstrap_mean)
    assert r.n_bootstrap == 1000
    again = evaluate_detection(pred, ann, n_bootstrap=1000, seed=1)
    assert again.bootstrap_mean == r.bootstrap_mean


def test_matches_monai_froc_score_with_explicit_rates(tmp_path: Path) -> None:
    from monai.metrics import compute_froc_curve_data, compute_froc_score

    rng = np.random.default_rng(0)
    n_scans, ann_rows, pred_rows, tp_probs, fp_probs = 12, [], [], [], []
    for s in range(n_scans):
        for n in range(rng.integers(0, 4)):
            c = (100.0 * n, 0.0, 0.0)
            ann_rows.append((f"S{s}", *c, 8.0))
            if rng.random() < 0.7:  # detected once, at the centre
                p = float(rng.random())
                pred_rows.append((f"S{s}", *c, p))
                tp_probs.append(p)
        for _ in range(rng.integers(0, 15)):
            p = float(rng.random())
            pred_rows.append((f"S{s}", 1000.0, 1000.0 * rng.random(), 0.0, p))
            fp_probs.append(p)
    for s in range(n_scans):  # make every scan appear in the files
        if not any(r[0] == f"S{s}" for r in ann_rows + pred_rows):
            pred_rows.append((f"S{s}", 5000.0, 0.0, 0.0, 0.0001))
            fp_probs.append(0.0001)
    ann = _csv(tmp_path / "a.csv", ANN, ann_rows)
    pred = _csv(tmp_path / "p.csv", PRED, pred_rows)
    r = evaluate_detection(pred, ann, n_bootstrap=0)
    # MONAI skips the lowest threshold of its list: a sentinel FP below every probability restores it
    fps, sens = compute_froc_curve_data(np.array(fp_probs + [-1.0]), np.array(tp_probs), len(ann_rows), n_scans)
    monai_cpm = compute_froc_score(fps, sens, eval_thresholds=(0.125, 0.25, 0.5, 1, 2, 4, 8))
    assert r.cpm == pytest.approx(float(monai_cpm), abs=1e-12)
    assert r.n_nodules == len(ann_rows) and r.n_detected == len(tp_probs)


def test_errors(tmp_path: Path, case: tuple[Path, Path, Path]) -> None:
    pred, ann, exc = case
    bad = _csv(tmp_path / "bad.csv", ("seriesuid", "x", "y", "z", "p"), [("A", 1, 2, 3, 0.5)])
    with pytest.raises(InputError, match="missing column"):
        evaluate_detection(bad, ann, n_bootstrap=0)
    nan = _csv(tmp_path / "nan.csv", PRED, [("A", 1, 2, 3, "nan")])
    with pytest.raises(InputError, match="line 2"):
        evaluate_detection(nan, ann, n_bootstrap=0)
    with pytest.raises(InputError, match="no included nodule"):
        evaluate_detection(pred, ann, seriesuids=["C"], n_bootstrap=0)
    with pytest.raises(InputError, match="diameter"):
        evaluate_detection(pred, exc, n_bootstrap=0)
    with pytest.raises(InputError, match="positive"):
        evaluate_detection(pred, ann, fps_per_scan=(0, 1), n_bootstrap=0)


def test_plot_froc_png(case: tuple[Path, Path, Path], tmp_path: Path) -> None:
    from PIL import Image as PILImage

    pred, ann, exc = case
    r = evaluate_detection(pred, ann, exc, n_bootstrap=50)
    out = plot_froc(r, tmp_path / "plots" / "froc.png")
    with PILImage.open(out) as im:
        assert im.format == "PNG" and im.size[0] > 300
    assert sorted(p.name for p in out.parent.iterdir()) == ["froc.png"]
