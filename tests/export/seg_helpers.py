"""Helpers for the DICOM-SEG tests: synthetic DICOM series and the independent validators.

The validators are separate programs (dicom3tools ``dciodvfy``/``dcentvfy``, dcmqi
``segimage2itkimage``), so the tests do not judge our SEGs only with the library that wrote them.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from medseg.image import Image


def rotation(axis: str, degrees: float) -> np.ndarray:
    """3x3 rotation about the x, y or z axis."""
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    if axis == "x":
        return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    if axis == "y":
        return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def write_series(
    folder: Path,
    *,
    direction: np.ndarray,
    spacing: Sequence[float],
    origin: Sequence[float],
    shape: tuple[int, int, int],
    reverse_files: bool = False,
    seed: int = 0,
) -> list[Path]:
    """Write a single-frame CT series with known geometry; returns the files in slice (k) order.

    ``direction`` columns are the LPS unit vectors of index axes x (columns), y (rows) and k
    (slices); slice ``k`` is at ``origin + k * spacing[2] * direction[:, 2]``. With
    ``reverse_files`` the file names and Instance Numbers run against the slice positions.
    """
    folder.mkdir(parents=True, exist_ok=True)
    direction = np.asarray(direction, dtype=np.float64)
    nz, ny, nx = shape
    rng = np.random.default_rng(seed)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    files = []
    for k in range(nz):
        number = nz - k if reverse_files else k + 1
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        uid = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = uid
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = uid
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.Modality = "CT"
        ds.PatientName = "Synthetic^Test"
        ds.PatientID = "SYN001"
        ds.PatientBirthDate = "19700101"
        ds.PatientSex = "O"
        ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20240102", "101500", "1", "ACC1"
        ds.ReferringPhysicianName = ""
        ds.SeriesNumber = 3
        ds.InstanceNumber = number
        ds.Manufacturer = "medseg tests"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.ImageOrientationPatient = [f"{v:.6f}" for v in (*direction[:, 0], *direction[:, 1])]
        position = np.asarray(origin) + k * spacing[2] * direction[:, 2]
        ds.ImagePositionPatient = [f"{v:.6f}" for v in position]
        ds.PixelSpacing = [f"{spacing[1]:.6f}", f"{spacing[0]:.6f}"]
        ds.SliceThickness = f"{spacing[2]:.6f}"
        ds.Rows, ds.Columns = ny, nx
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope = "-1024", "1"
        ds.PixelData = rng.integers(0, 1500, size=(ny, nx), dtype=np.int16).tobytes()
        path = folder / f"im{number:03d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        files.append(path)
    return files


def dciodvfy_errors(path: Path) -> list[str]:
    """``Error`` lines of dciodvfy (skips the test when dicom3tools is not installed)."""
    tool = shutil.which("dciodvfy")
    if tool is None:
        pytest.skip("dciodvfy (dicom3tools) is not installed")
    run = subprocess.run([tool, str(path)], capture_output=True, text=True, timeout=60)
    lines = (run.stdout + run.stderr).splitlines()
    errors = [line for line in lines if line.startswith("Error")]
    assert run.returncode == 0 or errors, f"dciodvfy failed without an error line: {lines[-5:]}"
    return errors if run.returncode == 0 else [*errors, f"exit code {run.returncode}"]


def dcentvfy_errors(paths: Sequence[Path]) -> list[str]:
    """``Error`` lines of dcentvfy (entity consistency across files)."""
    tool = shutil.which("dcentvfy")
    if tool is None:
        pytest.skip("dcentvfy (dicom3tools) is not installed")
    run = subprocess.run([tool, *map(str, paths)], capture_output=True, text=True, timeout=60)
    return [line for line in (run.stdout + run.stderr).splitlines() if line.startswith("Error")]


def dcmqi_decode(seg: Path, out: Path) -> Image:
    """Decode a SEG with dcmqi's ``segimage2itkimage`` (segments merged) into a label Image."""
    import SimpleITK as sitk

    tool = shutil.which("segimage2itkimage")
    if tool is None:
        pytest.skip("segimage2itkimage (dcmqi) is not installed")
    out.mkdir(parents=True, exist_ok=True)
    run = subprocess.run(
        [
            tool,
            "--inputDICOM",
            str(seg),
            "--outputDirectory",
            str(out),
            "--outputType",
            "nifti",
            "--mergeSegments",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, f"dcmqi could not decode {seg}: {run.stdout[-2000:]} {run.stderr[-2000:]}"
    (nifti,) = sorted(out.glob("*.nii.gz"))
    return Image.from_sitk(sitk.ReadImage(str(nifti)), kind="label")


def on_grid(labels: Image, reference: Image) -> np.ndarray:
    """``labels`` resampled (nearest neighbour, no interpolation) onto ``reference``'s grid."""
    import SimpleITK as sitk

    moved = sitk.Resample(
        labels.to_sitk(), reference.to_sitk(), sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt16
    )
    return sitk.GetArrayFromImage(moved)


def world_points(labels: Image, value: int) -> np.ndarray:
    """LPS mm of the voxel centres with label ``value``, sorted, shape (n, 3)."""
    k, j, i = np.nonzero(np.asarray(labels.array) == value)
    points = labels.index_to_world(np.stack([i, j, k], axis=1).astype(np.float64))
    return points[np.lexsort(np.round(points, 3).T[::-1])]


def frame_references(seg_path: Path) -> list[tuple[str, np.ndarray, int, np.ndarray]]:
    """Per SEG frame, read with plain pydicom: (source SOP UID, position, segment number, pixels)."""
    ds = pydicom.dcmread(seg_path)
    pixels = ds.pixel_array
    if int(ds.NumberOfFrames) == 1:
        pixels = pixels[None]
    out = []
    for i, item in enumerate(ds.PerFrameFunctionalGroupsSequence):
        uid = str(item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID)
        position = np.asarray(item.PlanePositionSequence[0].ImagePositionPatient, dtype=np.float64)
        number = (
            int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
            if "SegmentIdentificationSequence" in item
            else 0
        )
        out.append((uid, position, number, np.asarray(pixels[i])))
    return out


def assert_entities_consistent(seg: Path, source_files: Sequence[Path], scratch: Path) -> None:
    """dcentvfy over SEG + source finds no error that the source alone does not already have.

    Real sources have their own problems (a series subset cites slices that are not there; a
    DX file with an odd-length Pixel Data that dcentvfy cannot read - that one is re-saved by
    pydicom, which pads the value, so its attributes can be compared).
    """
    sources = list(source_files)
    for i, path in enumerate(sources):
        if any("read failed" in line for line in dcentvfy_errors([path])):
            scratch.mkdir(parents=True, exist_ok=True)
            copy = scratch / f"resaved_{i}.dcm"
            pydicom.dcmread(path, force=True).save_as(copy)
            sources[i] = copy
    source_only = set(dcentvfy_errors(sources))
    combined = dcentvfy_errors([seg, *sources])
    assert set(combined) <= source_only, sorted(set(combined) - source_only)
    assert not [line for line in combined if seg.name in line], combined
