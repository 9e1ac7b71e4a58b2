"""Helpers shared by the format readers: label casting, finiteness checks, path checks, and the
plausibility limits every reader applies before it allocates or returns anything.

Limits (one place, used by every reader):

* at most :data:`MAX_VOXELS` (2**31) voxels, every axis at least 1 voxel;
* a declared pixel payload must fit in the bytes the file holds (uncompressed) or in what the
  compressed bytes can expand to (deflate at most ~1032:1, :data:`MAX_DEFLATE_RATIO`);
* spacing within :data:`SPACING_RANGE_MM` (1e-3 .. 1e4 mm), origin within :data:`MAX_ORIGIN_MM`
  (1e7 mm) of 0, a non-degenerate direction, every geometry value finite;
* no NaN/inf voxels in a float image.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from os import PathLike
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from medseg.errors import GeometryError, InputError, MedsegError

__all__ = [
    "MAX_DEFLATE_RATIO",
    "MAX_ORIGIN_MM",
    "MAX_VOXELS",
    "SPACING_RANGE_MM",
    "as_label_array",
    "check_affine",
    "check_finite",
    "check_image",
    "check_payload",
    "check_voxel_count",
    "existing_path",
    "native_byte_order",
    "reader_guard",
    "smallest_int_dtype",
]

MAX_VOXELS = 2**31
MAX_DEFLATE_RATIO = 1100  # deflate cannot expand more than ~1032:1 (zlib tech notes); a little slack
SPACING_RANGE_MM = (1e-3, 1e4)
MAX_ORIGIN_MM = 1e7

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


def check_voxel_count(shape: Sequence[Any], path: str | PathLike[str] | None, what: str) -> int:
    """Number of voxels of a declared ``shape``; :class:`InputError` when an axis is < 1 or the
    total exceeds :data:`MAX_VOXELS`. ``what`` names the header fields (e.g. ``"dim[1..3]"``).

    Checked with Python integers before any array is allocated.
    """
    try:
        dims = [int(v) for v in shape]
    except (TypeError, ValueError, OverflowError) as e:
        raise InputError(f"{what} is not a list of whole numbers: {list(shape)!r}", path=path) from e
    if not dims or min(dims) < 1:
        raise InputError(
            f"{what} declares an empty image of size {tuple(dims)}",
            path=path,
            hint="the header is corrupt; write the file again",
        )
    total = 1
    for d in dims:
        total *= d
    if total > MAX_VOXELS:
        raise InputError(
            f"{what} declares {total:,} voxels, more than medseg reads ({MAX_VOXELS:,})",
            path=path,
            hint="the header is corrupt, or crop/downsample the image first",
        )
    return total


def check_payload(
    needed: int, available: int, path: str | PathLike[str] | None, what: str, *, compressed: bool = False
) -> None:
    """:class:`InputError` when ``needed`` bytes of pixel data cannot come from ``available`` bytes.

    ``compressed``: ``available`` bytes of deflate (gzip) data, which expand at most
    :data:`MAX_DEFLATE_RATIO` times.
    """
    limit = available * MAX_DEFLATE_RATIO if compressed else available
    if needed > limit:
        how = f"{available:,} compressed bytes can hold at most {limit:,}" if compressed else f"the file holds {available:,}"
        raise InputError(
            f"{what} needs {needed:,} bytes of pixel data but {how}",
            path=path,
            hint="the header is corrupt or the file is truncated; copy or write it again",
        )


def check_affine(affine: np.ndarray, path: str | PathLike[str] | None, what: str = "the geometry") -> None:
    """:class:`GeometryError` unless ``affine`` (3x3 for 2-D, 4x4 for 3-D; index -> mm) is plausible.

    Finite, spacing (column norms) within :data:`SPACING_RANGE_MM`, origin within
    :data:`MAX_ORIGIN_MM`, direction columns not (nearly) parallel. ``what`` names the header fields.
    """
    a = np.asarray(affine, dtype=np.float64)
    n = a.shape[0] - 1
    if not np.all(np.isfinite(a)):
        raise GeometryError(
            f"{what} holds NaN/inf values", path=path, hint="the header is corrupt; write the file again"
        )
    spacing = np.linalg.norm(a[:n, :n], axis=0)
    lo, hi = SPACING_RANGE_MM
    if not np.all((spacing >= lo) & (spacing <= hi)):
        raise GeometryError(
            f"{what} gives a voxel spacing of ({', '.join(f'{v:.4g}' for v in spacing)}) mm, outside "
            f"{lo:g}..{hi:g} mm",
            path=path,
            hint="the spacing in the header is corrupt; fix it (e.g. in 3D Slicer) and save again",
        )
    origin = a[:n, n]
    if np.abs(origin).max() >= MAX_ORIGIN_MM:
        raise GeometryError(
            f"{what} puts the origin at ({', '.join(f'{v:.4g}' for v in origin)}) mm, beyond "
            f"{MAX_ORIGIN_MM:g} mm",
            path=path,
            hint="the position in the header is corrupt; fix it and save again",
        )
    unit = a[:n, :n] / spacing[None, :]
    if abs(float(np.linalg.det(unit))) < 1e-3:
        raise GeometryError(
            f"{what} has degenerate (parallel or zero) axis directions",
            path=path,
            hint="the orientation in the header is corrupt; fix it and save again",
        )


def check_image(array: np.ndarray, affine: np.ndarray, path: str | PathLike[str] | None, what: str) -> None:
    """The checks every reader applies to its result: non-empty, finite voxels, plausible geometry."""
    if array.size == 0:
        raise InputError(
            f"the image is empty (shape {tuple(array.shape)})",
            path=path,
            hint="the header is corrupt or the file holds no pixels",
        )
    check_finite(array, path)
    check_affine(affine, path, what)


_F = TypeVar("_F", bound=Callable[..., Any])


def reader_guard(
    error: type[MedsegError], what: str, check: Callable[[Any, Any], None] | None = None
) -> Callable[[_F], _F]:
    """Decorate a reader whose first argument is the path: last line of defence, so that nothing
    but a one-line :class:`MedsegError` naming the file ever leaves it.

    The readers check what they use before using it; this turns what slipped through (the
    libraries underneath raise many exception types on corrupt input) into ``error``, adds the
    path to medseg errors raised without one, and turns ``MemoryError`` into an :class:`InputError`.
    ``check(result, path)``, when given, validates the result (e.g. :func:`check_image`).
    """

    def wrap(func: _F) -> _F:
        @functools.wraps(func)
        def guarded(path: Any, *args: Any, **kwargs: Any) -> Any:
            where = path if isinstance(path, (str, PathLike)) else None
            try:
                result = func(path, *args, **kwargs)
                if check is not None:
                    check(result, where)
                return result
            except MedsegError as e:
                if (e.path is None and where is not None) or "\n" in e.message:
                    message = " ".join(e.message.split())
                    raise type(e)(message, path=e.path or where, hint=e.hint) from e
                raise
            except MemoryError as e:
                raise InputError(
                    f"not enough memory to read this {what}",
                    path=where,
                    hint="the header may declare an absurd size; check the file, or free memory",
                ) from e
            except RecursionError as e:
                raise error(f"the {what} is nested too deeply to parse", path=where) from e
            except (KeyboardInterrupt, SystemExit, GeneratorExit):
                raise
            except BaseException as e:  # noqa: BLE001 - last line of defence (incl. Rust decoder panics)
                log.debug("unexpected error reading %s", where, exc_info=True)
                detail = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
                raise error(
                    f"cannot read the {what}, it is corrupt (unexpected {type(e).__name__}: {detail})",
                    path=where,
                    hint="copy or export the file again; if it opens elsewhere, report it to medseg",
                ) from e

        return guarded  # type: ignore[return-value]

    return wrap
