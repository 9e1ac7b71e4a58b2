"""Helpers shared by the exporters."""

from __future__ import annotations

import numpy as np

__all__ = ["present_labels"]

# Up to this many candidate values, one vectorised comparison per value is the fastest test
# (a 512x512x300 uint8 mask: ~10 ms per value); beyond it, count all values at once.
_COMPARE_UP_TO = 32


def present_labels(array: np.ndarray) -> list[int]:
    """Sorted values > 0 that occur in a non-negative integer (or bool) label array.

    ``np.unique`` sorts the whole array (seconds for a 512x512x300 volume) and a single
    ``np.bincount`` copies it to int64; this uses ``max`` plus per-value comparisons for few
    labels, and chunked ``bincount`` (about 4 M voxels at a time) for many.
    """
    if array.dtype == bool:
        array = array.view(np.uint8)
    if array.size == 0:
        return []
    high = int(array.max())
    if high <= 0:
        return []
    if high <= _COMPARE_UP_TO:
        return [v for v in range(1, high + 1) if np.any(array == v)]
    counts = np.zeros(high + 1, dtype=np.int64)
    flat = array.reshape(array.shape[0] if array.ndim == 3 else 1, -1)
    step = max(1, 4_000_000 // max(1, flat.shape[1]))
    for start in range(0, flat.shape[0], step):
        counts += np.bincount(flat[start : start + step].ravel(), minlength=high + 1)
    return [int(v) for v in np.flatnonzero(counts[1:]) + 1]
