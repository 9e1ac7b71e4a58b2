"""Per-case uncertainty, worklist ranking and active-learning selection (pure functions).

Used by ``medseg prelabel`` (rank pre-labelled cases for review) and ``medseg al select`` (choose
the next cases to annotate).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from medseg.errors import InputError
from medseg.metrics import case_uncertainty  # re-exported: the Predictor (a lower layer) uses it too

__all__ = ["case_uncertainty", "rank_worklist", "select_for_annotation"]


def _flag_count(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, (int, float, bool, np.integer, np.bool_)):
        return int(value)
    return len(value)


def _uncertainty(value: Any) -> float:
    if value is None:
        return -math.inf
    v = float(value)
    return -math.inf if math.isnan(v) else v


def rank_worklist(
    rows: Sequence[Mapping[str, Any]],
    *,
    flags_key: str = "qc_flags",
    uncertainty_key: str = "uncertainty",
) -> list[Mapping[str, Any]]:
    """Order cases for human review: QC-flagged cases first, then by uncertainty descending.

    Each row is a mapping (e.g. a dict per case) with ``flags_key`` (a list of flags or a flag
    count; missing = none) and ``uncertainty_key`` (a float; missing/NaN sorts last in its
    group). The sort is stable: equal rows keep their input order. Returns a new list of the same
    row objects.
    """
    return sorted(
        rows,
        key=lambda r: (_flag_count(r.get(flags_key)) == 0, -_uncertainty(r.get(uncertainty_key))),
    )


def select_for_annotation(
    scores: Sequence[float] | np.ndarray,
    k: int,
    *,
    features: np.ndarray | Sequence[np.ndarray] | None = None,
    diversity: float = 0.0,
    seed: int = 0,
) -> list[int]:
    """Pick ``k`` cases to annotate next; returns their indices into ``scores``, in pick order.

    * ``diversity == 0`` (or no ``features``): the ``k`` most uncertain cases.
    * ``diversity > 0``: greedy uncertainty-weighted farthest-point (k-center) selection over
      ``features`` (one vector per case, e.g. a downsampled probability map or an encoder
      embedding; any shape, flattened). The first pick is the most uncertain case; each next pick
      maximises ``(1 - diversity) * u + diversity * d`` where ``u`` is the uncertainty min-max
      scaled to [0, 1] and ``d`` the Euclidean distance to the nearest already-picked case scaled
      by the largest such distance (0 for an exact duplicate). ``diversity == 1`` is plain
      k-center greedy started at the most uncertain case. Near-duplicates of a picked case thus
      lose their claim, while plain top-k would take all of them.

    Ties are broken by a random permutation drawn from ``seed`` (reproducible).
    """
    u = np.asarray(scores, dtype=np.float64).reshape(-1)
    n = u.size
    if k < 0:
        raise InputError(f"k must be >= 0, got {k}")
    if not 0.0 <= diversity <= 1.0:
        raise InputError(f"diversity must be in [0, 1], got {diversity}")
    if not np.all(np.isfinite(u)):
        raise InputError("uncertainty scores contain NaN or infinite values", hint="drop or fill those cases")
    k = min(k, n)
    if k == 0:
        return []
    rng = np.random.default_rng(seed)
    tiebreak = rng.permutation(n)
    if diversity > 0.0 and features is None:
        raise InputError(
            "diversity-aware selection needs one feature vector per case",
            hint="pass features= (e.g. downsampled probability maps) or set diversity=0",
        )
    if diversity == 0.0 or features is None:
        order = np.lexsort((tiebreak, -u))  # primary key: -u, then the random tie-break
        return [int(i) for i in order[:k]]

    feats = np.stack([np.asarray(f, dtype=np.float64).reshape(-1) for f in features])
    if feats.shape[0] != n:
        raise InputError(f"{feats.shape[0]} feature vectors for {n} scores", hint="give one vector per case")
    span = float(u.max() - u.min())
    u_scaled = (u - u.min()) / span if span > 0 else np.zeros(n)
    # a tiny tie-break term so equal scores resolve by the seeded permutation
    jitter = (n - tiebreak) * 1e-12
    first = int(np.argmax(u_scaled + jitter))
    picked = [first]
    nearest = np.linalg.norm(feats - feats[first], axis=1)
    available = np.ones(n, dtype=bool)
    available[first] = False
    while len(picked) < k:
        dmax = float(nearest[available].max())
        d_scaled = nearest / dmax if dmax > 0 else np.zeros(n)
        gain = (1.0 - diversity) * u_scaled + diversity * d_scaled + jitter
        gain[~available] = -np.inf
        nxt = int(np.argmax(gain))
        picked.append(nxt)
        available[nxt] = False
        nearest = np.minimum(nearest, np.linalg.norm(feats - feats[nxt], axis=1))
    return picked
