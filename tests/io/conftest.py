"""Fixtures for the medseg.io tests: real data paths and a synthetic DICOM series builder.

The synthetic series are written with pydicom from the header of pydicom's real ``CT_small.dcm``;
their geometry (and so their affine) is chosen by the test, which makes the expected values
independent of medseg.io.
"""

from __future__ import annotations

import random
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import ExplicitVRLittleEndian, generate_uid


@dataclass
class SyntheticSeries:
    folder: Path
    files: list[Path]  # in slice order (position along the normal ascending)
    affine: np.ndarray  # expected 4x4 LPS affine, index (col, row, slice)
    stored: np.ndarray  # stored values (z, y, x) in slice order
    hu: np.ndarray  # stored * slope + intercept
    marker: tuple[int, int, int]  # (i, j, k) index of the unique marker voxel
    series_uid: str


def _unit(v: Sequence[float]) -> np.ndarray:
    a = np.asarray(v, dtype=np.float64)
    return a / np.linalg.norm(a)


def build_series(
    folder: Path,
    *,
    row_dir: Sequence[float] = (1, 0, 0),
    col_dir: Sequence[float] = (0, 1, 0),
    origin: Sequence[float] = (-20.0, -30.0, 40.0),
    pixel_spacing: tuple[float, float] = (0.7, 0.9),  # (between rows, between columns)
    slice_spacing: float = 2.0,
    n: int = 5,
    rows: int = 12,
    cols: int = 10,
    file_order: str = "shuffle",
    slope: float = 1.0,
    intercept: float = -1024.0,
    bits_stored: int = 16,
    signed: bool = True,
    marker: tuple[int, int, int] = (7, 3, 2),
    series_uid: str | None = None,
    seed: int = 0,
) -> SyntheticSeries:
    """Write ``n`` single-frame CT slices with the given geometry into ``folder``.

    ``file_order``: ``"forward"`` (file names follow the position), ``"reverse"`` or ``"shuffle"``.
    InstanceNumber is always shuffled so that a reader sorting by it would fail.
    """
    folder.mkdir(parents=True, exist_ok=True)
    template = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    r, c = _unit(row_dir), _unit(col_dir)
    normal = np.cross(r, c)
    rng = np.random.default_rng(seed)
    hi = 2 ** (bits_stored - 1) - 1 if signed else 2**bits_stored - 1
    stored = rng.integers(0, min(hi, 2000), size=(n, rows, cols)).astype(np.int16 if signed else np.uint16)
    i, j, k = marker
    stored[k, j, i] = min(hi, 3000)
    series_uid = series_uid or generate_uid()
    study_uid = generate_uid()
    names = [f"slice{idx:03d}.dcm" for idx in range(n)]
    if file_order == "reverse":
        names = names[::-1]
    elif file_order == "shuffle":
        random.Random(seed).shuffle(names)
    instance_numbers = list(range(1, n + 1))
    random.Random(seed + 1).shuffle(instance_numbers)
    files = []
    for z in range(n):
        ds = template.copy()
        ds.file_meta = template.file_meta.copy()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.SeriesInstanceUID = series_uid
        ds.StudyInstanceUID = study_uid
        ds.FrameOfReferenceUID = series_uid + ".1" if len(series_uid) < 60 else generate_uid()
        ds.InstanceNumber = instance_numbers[z]
        ds.Rows, ds.Columns = rows, cols
        ds.PixelSpacing = [f"{pixel_spacing[0]:.6f}", f"{pixel_spacing[1]:.6f}"]
        ds.ImageOrientationPatient = [f"{v:.8f}" for v in (*r, *c)]
        ipp = np.asarray(origin, dtype=np.float64) + z * slice_spacing * normal
        ds.ImagePositionPatient = [f"{v:.6f}" for v in ipp]
        ds.SliceLocation = f"{float(ipp @ normal):.6f}"
        ds.SliceThickness = slice_spacing
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, bits_stored, bits_stored - 1
        ds.PixelRepresentation = 1 if signed else 0
        ds.RescaleSlope = f"{slope:g}"
        ds.RescaleIntercept = f"{intercept:g}"
        ds.PixelData = stored[z].tobytes()
        path = folder / names[z]
        ds.save_as(path, enforce_file_format=True)
        files.append(path)
    affine = np.eye(4)
    affine[:3, 0] = r * pixel_spacing[1]
    affine[:3, 1] = c * pixel_spacing[0]
    affine[:3, 2] = normal * slice_spacing
    affine[:3, 3] = origin
    hu = stored.astype(np.float64) * slope + intercept
    return SyntheticSeries(folder, files, affine, stored, hu, marker, series_uid)


@pytest.fixture
def make_series() -> Callable[..., SyntheticSeries]:
    return build_series


@pytest.fixture(scope="session")
def lidc_dir(shared_data: Path) -> Path:
    return shared_data / "ct_lidc_nodules" / "LIDC-IDRI-0001" / "dicom"


@pytest.fixture
def lidc_copy(lidc_dir: Path, tmp_path: Path) -> Path:
    """A writable copy of the 16 LIDC slices."""
    dst = tmp_path / "lidc"
    shutil.copytree(lidc_dir, dst)
    return dst
