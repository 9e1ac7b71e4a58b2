from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from medseg.errors import ExportError, MedsegError
from medseg.utils import atomic_path, atomic_write_text, percentiles


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


@settings(max_examples=60, deadline=None)
@example(dtype="int16", n=17, seed=57, q=[0.0])  # found by hypothesis: int16 - min overflowed int16
@given(
    dtype=st.sampled_from(["uint8", "int16", "uint16", "float32-int", "float32", "float64"]),
    n=st.integers(1, 1 << 17),
    seed=st.integers(0, 2**16),
    q=st.lists(st.floats(0.0, 100.0), min_size=1, max_size=3),
)
def test_percentiles_equal_numpy(dtype: str, n: int, seed: int, q: list[float]) -> None:
    rng = np.random.default_rng(seed)
    if dtype == "float32":
        a = rng.normal(100.0, 30.0, n).astype(np.float32)
    elif dtype == "float64":
        a = rng.normal(0.0, 1.0, n)
    elif dtype == "float32-int":  # a rescaled 16-bit DICOM film: integers stored as float
        a = rng.integers(-1024, 3000, n).astype(np.float32)
    else:
        info = np.iinfo(dtype)
        lo, hi = int(rng.integers(info.min, info.max)), int(rng.integers(info.min, info.max))
        a = rng.integers(min(lo, hi), max(lo, hi) + 1, n, endpoint=True).astype(dtype)
    got = percentiles(a, q)
    want = np.percentile(a.astype(np.float64), q)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6 * max(1.0, float(np.abs(a).max())))


def test_percentiles_histogram_path_on_a_real_film_and_errors(shared_data: Path) -> None:
    from medseg.io import read_image

    film = shared_data / "cxr_lung_v7_covid/images/00870a9c.jpg"
    if not film.is_file():
        pytest.skip(f"{film} not present")
    a = read_image(film).array
    assert a.dtype == np.uint8 and a.size > 1 << 16  # the histogram path
    for arr in (a, a.astype(np.float32)):
        assert percentiles(arr, (0.5, 99.5)) == tuple(np.percentile(arr, (0.5, 99.5)))
    with pytest.raises(ValueError, match="empty"):
        percentiles(np.zeros(0), (50,))
    with pytest.raises(ValueError, match=r"\[0, 100\]"):
        percentiles(a, (101,))
