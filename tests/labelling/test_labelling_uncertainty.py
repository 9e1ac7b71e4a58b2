"""Case uncertainty, worklist ranking and active-learning selection."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medseg.errors import InputError
from medseg.labelling import case_uncertainty, rank_worklist, select_for_annotation


def _probs(fg: np.ndarray, p_fg: float) -> np.ndarray:
    """(background, foreground) probabilities: foreground ``p_fg`` inside ``fg``, 0 outside."""
    p1 = np.where(fg, p_fg, 0.0)
    return np.stack([1.0 - p1, p1])


def test_case_uncertainty_orders_confident_below_unsure() -> None:
    fg = np.zeros((32, 32), dtype=bool)
    fg[8:24, 8:24] = True
    sure, unsure = _probs(fg, 0.99), _probs(fg, 0.6)
    u_sure, u_unsure = case_uncertainty(sure), case_uncertainty(unsure)
    assert set(u_sure) == {"entropy", "entropy_fg", "uncertainty"}
    assert u_sure["uncertainty"] < u_unsure["uncertainty"]
    h = -(0.6 * math.log(0.6) + 0.4 * math.log(0.4)) / math.log(2)
    assert u_unsure["entropy_fg"] == pytest.approx(h)
    assert u_unsure["entropy"] == pytest.approx(h * fg.mean())


def test_case_uncertainty_with_flip_tta() -> None:
    fg = np.zeros((32, 32), dtype=bool)
    fg[8:24, 4:20] = True  # not symmetric about the vertical midline
    p = _probs(fg, 0.9)
    same = case_uncertainty(p, p.copy())
    assert same["tta_disagreement"] == 0.0 and same["tta_prob_diff"] == 0.0
    assert same["uncertainty"] == pytest.approx(same["entropy_fg"] / 2)
    # a model that is not flip-equivariant: the flipped-back prediction lands mirrored
    mirrored = p[:, :, ::-1]
    u = case_uncertainty(p, mirrored)
    overlap = np.sum(fg & fg[:, ::-1])
    assert u["tta_disagreement"] == pytest.approx(1 - 2 * overlap / (2 * fg.sum()))
    assert u["uncertainty"] == pytest.approx((u["entropy_fg"] + u["tta_disagreement"]) / 2)
    assert u["uncertainty"] > same["uncertainty"]


def test_rank_worklist_flagged_first_then_uncertainty_stable() -> None:
    rows = [
        {"case": "a", "uncertainty": 0.2, "qc_flags": []},
        {"case": "b", "uncertainty": 0.9},
        {"case": "c", "uncertainty": 0.1, "qc_flags": ["empty"]},
        {"case": "d", "uncertainty": 0.5, "qc_flags": 0},
        {"case": "e", "uncertainty": 0.5},
        {"case": "f", "uncertainty": float("nan"), "qc_flags": 2},
        {"case": "g"},
        {"case": "h", "uncertainty": 0.3, "qc_flags": ["tiny", "swapped"]},
    ]
    ranked = [r["case"] for r in rank_worklist(rows)]
    assert ranked == ["h", "c", "f", "b", "d", "e", "a", "g"]
    assert rank_worklist(rows)[0] is rows[7]  # the same row objects come back
    assert [r["case"] for r in rank_worklist(rows, uncertainty_key="missing")][:3] == ["c", "f", "h"]


def _clustered(seed: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """3 clusters of cases: A (most uncertain, 6 near-duplicates), B, C."""
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0, 0.0], [10.0, 0.0, 0.0], [0.0, 10.0, 0.0]])
    cluster = np.repeat([0, 1, 2], [6, 4, 4])
    feats = centres[cluster] + rng.normal(scale=0.05, size=(cluster.size, 3))
    base = np.array([0.9, 0.6, 0.5])[cluster]
    scores = base + rng.uniform(-0.02, 0.02, size=cluster.size)
    return scores, feats, cluster


def test_plain_top_k_picks_near_duplicates_diversity_does_not() -> None:
    scores, feats, cluster = _clustered()
    top = select_for_annotation(scores, 3)
    assert top == list(np.argsort(-scores)[:3])
    assert set(cluster[top]) == {0}  # all three from the duplicate-rich cluster
    diverse = select_for_annotation(scores, 3, features=feats, diversity=0.5)
    assert diverse[0] == int(np.argmax(scores))  # starts at the most uncertain case
    assert sorted(cluster[diverse]) == [0, 1, 2]  # one per cluster
    # within a cluster, the most uncertain case is the one taken
    for i in diverse[1:]:
        members = np.flatnonzero(cluster == cluster[i])
        assert scores[i] == scores[members].max()
    # features may be given as a list of maps of any shape
    maps = [f.reshape(3, 1) for f in feats]
    assert select_for_annotation(scores, 3, features=maps, diversity=0.5) == diverse


def test_select_edge_cases_and_reproducible_ties() -> None:
    ties = np.array([0.5, 0.5, 0.5, 0.5, 0.1])
    a = select_for_annotation(ties, 2, seed=3)
    assert a == select_for_annotation(ties, 2, seed=3) and set(a) <= {0, 1, 2, 3}
    assert {tuple(select_for_annotation(ties, 2, seed=s)) for s in range(10)} != {tuple(a)}
    assert select_for_annotation(ties, 0) == []
    assert sorted(select_for_annotation(ties, 10)) == [0, 1, 2, 3, 4]
    with pytest.raises(InputError, match="feature"):
        select_for_annotation(ties, 2, diversity=0.5)
    with pytest.raises(InputError, match="diversity"):
        select_for_annotation(ties, 2, features=np.zeros((5, 2)), diversity=2.0)
    with pytest.raises(InputError, match="NaN"):
        select_for_annotation([0.1, float("nan")], 1)
    with pytest.raises(InputError, match="feature vectors"):
        select_for_annotation(ties, 2, features=np.zeros((4, 2)), diversity=0.5)
