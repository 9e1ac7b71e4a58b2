"""Small helpers shared by every layer: atomic output files and device selection.

Hand-written because no library we depend on offers atomic "temp file + rename" writes that also
work for writers that insist on a path (SimpleITK, nibabel, highdicom/pydicom).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from medseg.errors import ExportError

__all__ = ["atomic_path", "default_permissions", "atomic_write_bytes", "atomic_write_text", "resolve_device"]


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
