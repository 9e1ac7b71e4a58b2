"""Small helpers shared by every layer: atomic output files, device selection, fast percentiles.

Hand-written because no library we depend on offers atomic "temp file + rename" writes that also
work for writers that insist on a path (SimpleITK, nibabel, highdicom/pydicom), nor percentiles of
an integer-valued film by histogram (numpy partitions the 4 M pixels of a 2000 x 2000 film once per
call: 50 ms, more than the network's forward pass).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from medseg.errors import ExportError

__all__ = ["atomic_path", "default_permissions", "atomic_write_bytes", "atomic_write_text", "resolve_device", "percentiles"]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, protect: tuple[Path, ...] = ()) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``, else delete it.

    The temporary name keeps the full suffix (``.nii.gz``, ``.dcm``) so writers that choose the
    format from the suffix behave. ``protect`` lists input files that must never be overwritten.
    """
    target = Path(path)
    resolved = target.resolve()
    for p in protect:
        if Path(p).resolve() == resolved:
            raise ExportError("refusing to overwrite an input file", path=target, hint="choose another output path")
    target.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(target.suffixes) or ""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp" + suffix, dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if tmp.exists():  # mkstemp makes 0600 files: give the output the usual umask permissions
            os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def default_permissions(path: Path) -> None:
    """Give a file (0o666) or folder tree (0o777) the permissions the umask allows (not mkstemp's 0600/0700)."""
    mask = _umask()
    if path.is_dir():
        os.chmod(path, 0o777 & ~mask)
        for p in path.rglob("*"):
            os.chmod(p, (0o777 if p.is_dir() else 0o666) & ~mask)
    else:
        os.chmod(path, 0o666 & ~mask)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def resolve_device(device: str = "auto") -> str:
    """``"auto"`` -> ``"cuda"`` when available else ``"cpu"``; anything else is returned as is."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


#: widest integer value range :func:`percentiles` counts in a histogram (int16 / uint16 films fit)
_HISTOGRAM_SPAN = 1 << 17


def percentiles(array: np.ndarray, q: Sequence[float]) -> tuple[float, ...]:
    """``np.percentile(array, q)`` (linear interpolation, all elements), faster on integer data.

    Integer arrays (and float arrays holding only integers, e.g. a rescaled 16-bit DICOM film) whose
    value range spans at most 2**17 are answered from one histogram pass (``np.bincount``) instead of
    a partition per call; the result equals numpy's up to float rounding. Other arrays go to
    ``np.percentile`` with all of ``q`` at once (one partition). ``array`` must be non-empty and
    finite; ``q`` in [0, 100].
    """
    a = np.asarray(array).reshape(-1)
    qs = [float(v) for v in q]
    if a.size == 0:
        raise ValueError("percentiles of an empty array")
    if any(not 0.0 <= v <= 100.0 for v in qs):
        raise ValueError(f"percentiles must lie in [0, 100], got {qs}")
    values = _integer_view(a)
    if values is None:
        return tuple(float(v) for v in np.percentile(a, qs))
    low = int(values.min())
    counts = np.bincount(np.subtract(values, low, dtype=np.intp))  # intp: int16 - min can overflow int16
    cum = np.cumsum(counts)
    n = a.size
    out = []
    for v in qs:
        rank = v / 100.0 * (n - 1)
        below = int(np.floor(rank))
        above = min(below + 1, n - 1)
        t = rank - below
        lo = float(low + np.searchsorted(cum, below, side="right"))
        hi = float(low + np.searchsorted(cum, above, side="right"))
        # numpy's _lerp: from the nearer end, so t = 1 gives exactly hi
        out.append(hi - (hi - lo) * (1.0 - t) if t >= 0.5 else lo + (hi - lo) * t)
    return tuple(out)


def _integer_view(a: np.ndarray) -> np.ndarray | None:
    """``a`` as integers when it holds only integers in a span of <= ``_HISTOGRAM_SPAN``, else None."""
    if a.dtype.kind in "ui" and a.dtype.itemsize <= 2:
        return a
    if a.dtype.kind not in "uif" or a.size < 1 << 16:  # small arrays: numpy is fast enough
        return None
    lo, hi = a.min(), a.max()
    if not (np.isfinite(lo) and np.isfinite(hi)) or float(hi) - float(lo) > _HISTOGRAM_SPAN:
        return None
    if a.dtype.kind == "f":
        as_int = a.astype(np.int32)
        if not np.array_equal(as_int, a):
            return None
        return as_int
    return a
