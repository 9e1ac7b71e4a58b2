"""Helpers shared by the format readers: label casting, finiteness checks, path checks."""

from __future__ import annotations

import logging
from os import PathLike
from pathlib import Path

import numpy as np

from medseg.errors import InputError

__all__ = ["as_label_array", "check_finite", "existing_path", "native_byte_order", "smallest_int_dtype"]

log = logging.getLogger(__name__)


def existing_path(path: str | PathLike[str]) -> Path:
    """``path`` as a :class:`Path`; :class:`InputError` when nothing is there."""
    p = Path(path).expanduser()
    if not p.exists():
        raise InputError(
            "no such file or folder",
            path=p,
            hint="check the path (relative paths start at the current folder)",
        )
    return p


def native_byte_order(array: np.ndarray) -> np.ndarray:
    """``array`` in the machine's byte order (big-endian files give big-endian arrays; torch refuses them)."""
    if array.dtype.isnative:
        return array
    return array.astype(array.dtype.newbyteorder("="))


def smallest_int_dtype(lo: int, hi: int) -> np.dtype:
    """The smallest of uint8, uint16, int16, int32, int64 that holds ``[lo, hi]``."""
    for dt in (np.uint8, np.uint16, np.int16, np.int32, np.int64):
        info = np.iinfo(dt)
        if info.min <= lo and hi <= info.max:
            return np.dtype(dt)
    return np.dtype(np.int64)


def check_finite(array: np.ndarray, path: str | PathLike[str] | None) -> None:
    """Raise :class:`InputError` naming ``path`` when a float ``array`` holds NaN or inf."""
    if not np.issubdtype(array.dtype, np.floating):
        return
    finite = np.isfinite(array)
    if not finite.all():
        bad = int(array.size - np.count_nonzero(finite))
        raise InputError(
            f"the image holds {bad} NaN/inf voxel(s) out of {array.size}",
            path=path,
            hint="replace them (e.g. numpy.nan_to_num) and save the file again",
        )


def as_label_array(array: np.ndarray, path: str | PathLike[str] | None) -> np.ndarray:
    """Cast an array read from a label file to the smallest integer dtype that holds it.

    Bool becomes uint8; integer arrays are narrowed (e.g. int64 holding 0..2 -> uint8); float
    arrays are accepted only when every value is a finite whole number. Anything else raises
    :class:`InputError` naming ``path``.
    """
    if array.dtype == bool:
        return array.astype(np.uint8)
    if array.size == 0:
        return array.astype(np.uint8)
    if np.issubdtype(array.dtype, np.integer):
        dt = smallest_int_dtype(int(array.min()), int(array.max()))
        return array if array.dtype == dt else array.astype(dt)
    if np.issubdtype(array.dtype, np.floating):
        check_finite(array, path)
        if not np.array_equal(array, np.round(array)):
            frac = array[array != np.round(array)]
            raise InputError(
                f"a label image must hold whole numbers, found values such as {float(frac.flat[0]):.6g}",
                path=path,
                hint="pass kind='intensity' (CLI: drop --label) for images, or round the mask before saving",
            )
        dt = smallest_int_dtype(int(array.min()), int(array.max()))
        return array.astype(dt)
    raise InputError(f"cannot use pixel type {array.dtype} as a label image", path=path)
