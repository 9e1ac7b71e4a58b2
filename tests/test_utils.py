from __future__ import annotations

from pathlib import Path

import pytest

from medseg.errors import ExportError, MedsegError
from medseg.utils import atomic_path, atomic_write_text


def test_atomic_write_replaces_only_on_success(tmp_path: Path) -> None:
    target = tmp_path / "a.nii.gz"
    atomic_write_text(target, "first")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            assert tmp.name.endswith(".nii.gz")
            tmp.write_text("partial")
            raise RuntimeError("writer crashed")
    assert target.read_text() == "first"
    assert list(tmp_path.iterdir()) == [target]  # no temp file left behind


def test_atomic_path_refuses_to_overwrite_inputs(tmp_path: Path) -> None:
    src = tmp_path / "input.dcm"
    src.write_bytes(b"x")
    with pytest.raises(ExportError, match="input"):
        with atomic_path(src, protect=(src,)):
            pass
    assert src.read_bytes() == b"x"


def test_error_message_names_path_and_fix() -> None:
    e = MedsegError("slice missing", path="/data/ct", hint="re-export the series")
    assert str(e) == "/data/ct: slice missing. Fix: re-export the series."


def test_outputs_get_umask_permissions_not_mkstemp_0600(tmp_path: Path) -> None:
    import os

    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "out.csv", "x")
        assert (tmp_path / "out.csv").stat().st_mode & 0o777 == 0o644
    finally:
        os.umask(old)
