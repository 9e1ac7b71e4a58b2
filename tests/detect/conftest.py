"""Fixtures for the detection tests: the real LIDC-IDRI-0001 CT subset (see ``lidc_ct.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from lidc_ct import load_dicom_ct

from medseg.image import Image


@pytest.fixture(scope="session")
def lidc_dir(shared_data: Path) -> Path:
    d = shared_data / "ct_lidc_nodules" / "LIDC-IDRI-0001"
    if not (d / "dicom").is_dir():
        pytest.skip(f"{d} not present")
    return d


@pytest.fixture(scope="session")
def lidc_ct(lidc_dir: Path) -> Image:
    return load_dicom_ct(lidc_dir / "dicom")
