"""Benchmark DICOM-SEG writing: medseg (highdicom) vs dcmqi ``itkimage2segimage``, same mask, same run.

A synthetic CT series (default 300 slices of 512 x 512, 1 mm) is written to a temporary folder
with pydicom, read with ``medseg.io.read_image``, and given a two-segment mask (two ellipsoids,
"right lung" and "left lung", over about 80 % of the slices). Then, timing only the SEG writing:

* medseg ``write_dicom_seg`` BINARY and LABELMAP (RLE, the default, and JPEG-LS when available);
* plain highdicom ``Segmentation`` on the same headers (no medseg checks), BINARY keeping all
  frames (``omit_empty_frames=False``) and with highdicom's defaults, as baselines;
* dcmqi ``itkimage2segimage`` (binary and labelmap) from the same mask as NRRD + the DICOM folder
  (dcmqi also has to read the series; that is part of its job).

Prints a table (median of ``--repeat`` runs; file sizes) and the machine. Usage::

    python scripts/bench_seg.py [--slices 300] [--size 512] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np


def write_series(folder: Path, slices: int, size: int) -> None:
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    pixels = np.zeros((size, size), dtype=np.int16).tobytes()
    for k in range(slices):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.Modality = "CT"
        ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = (
            "Bench^Mark",
            "BENCH",
            "19700101",
            "O",
        )
        ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20240101", "120000", "1", "A1"
        ds.ReferringPhysicianName = ""
        ds.SeriesNumber, ds.InstanceNumber = 2, k + 1
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [-180.0, -180.0, -300.0 + k]
        ds.PixelSpacing, ds.SliceThickness = [0.7, 0.7], 1.0
        ds.Rows = ds.Columns = size
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
        ds.PixelData = pixels
        pydicom.dcmwrite(folder / f"{k + 1:04d}.dcm", ds, enforce_file_format=True)


def two_lungs(shape: tuple[int, int, int]) -> np.ndarray:
    nz, ny, nx = shape
    z, y, x = np.ogrid[:nz, :ny, :nx]
    lab = np.zeros(shape, dtype=np.uint8)
    zc, rz = nz / 2, 0.4 * nz
    lab[
        ((x - 0.33 * nx) / (0.23 * nx)) ** 2 + ((y - ny / 2) / (0.35 * ny)) ** 2 + ((z - zc) / rz) ** 2 < 1
    ] = 1
    lab[
        ((x - 0.67 * nx) / (0.21 * nx)) ** 2 + ((y - ny / 2) / (0.33 * ny)) ** 2 + ((z - zc) / rz) ** 2 < 1
    ] = 2
    return lab


def dcmqi_metadata(path: Path) -> None:
    def segment(label: int, name: str, rgb: list[int]) -> dict[str, object]:
        return {
            "labelID": label,
            "SegmentLabel": name,
            "SegmentDescription": name,
            "SegmentAlgorithmType": "AUTOMATIC",
            "SegmentAlgorithmName": "medseg",
            "SegmentedPropertyCategoryCodeSequence": {
                "CodeValue": "91723000",
                "CodingSchemeDesignator": "SCT",
                "CodeMeaning": "Anatomical Structure",
            },
            "SegmentedPropertyTypeCodeSequence": {
                "CodeValue": "39607008",
                "CodingSchemeDesignator": "SCT",
                "CodeMeaning": "Lung",
            },
            "recommendedDisplayRGBValue": rgb,
        }

    meta = {
        "ContentCreatorName": "medseg^",
        "SeriesDescription": "bench",
        "SeriesNumber": "300",
        "InstanceNumber": "1",
        "BodyPartExamined": "CHEST",
        "ClinicalTrialSeriesID": "1",
        "ClinicalTrialTimePointID": "1",
        "segmentAttributes": [
            [segment(1, "right lung", [46, 204, 64]), segment(2, "left lung", [255, 133, 27])]
        ],
    }
    path.write_text(json.dumps(meta, indent=1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)

    import highdicom as hd
    import SimpleITK as sitk
    from pydicom.pixels import get_encoder
    from pydicom.sr.codedict import codes
    from pydicom.uid import JPEGLSLossless

    from medseg.io import read_image, write_dicom_seg

    dcmqi = shutil.which("itkimage2segimage")
    with tempfile.TemporaryDirectory(prefix="bench_seg_") as tmp_name:
        tmp = Path(tmp_name)
        series_dir = tmp / "ct"
        write_series(series_dir, args.slices, args.size)
        image = read_image(series_dir)
        labels = image.with_array(two_lungs(image.shape), kind="label")
        names = {1: "right lung", 2: "left lung"}
        nonempty = int(np.count_nonzero(labels.array.reshape(image.shape[0], -1).any(axis=1)))
        variants: list[tuple[str, Callable[[Path], object], str]] = []  # (name, write(out), note)

        def ours(seg_type: str, compression: str) -> Callable[[Path], object]:
            return lambda out: write_dicom_seg(
                labels,
                image,
                out,
                label_names=names,
                segmentation_type=seg_type,  # type: ignore[arg-type]
                compression=compression,  # type: ignore[arg-type]
            )

        def plain_highdicom(omit: bool) -> Callable[[Path], object]:
            algo = hd.AlgorithmIdentificationSequence("medseg", codes.cid7162.ArtificialIntelligence, "0")
            descriptions = [
                hd.seg.SegmentDescription(
                    n, name, codes.SCT.AnatomicalStructure, codes.SCT.Lung, "AUTOMATIC", algo
                )
                for n, name in names.items()
            ]

            def run(out: Path) -> None:
                seg = hd.seg.Segmentation(
                    list(image.source.datasets),
                    np.asarray(labels.array),
                    "BINARY",
                    descriptions,
                    hd.UID(),
                    300,
                    hd.UID(),
                    1,
                    "medseg",
                    "bench",
                    "0",
                    "0",
                    omit_empty_frames=omit,
                )
                seg.save_as(out)

            return run

        variants.append(("medseg BINARY", ours("BINARY", "auto"), "uncompressed, empty frames omitted"))
        variants.append(("medseg LABELMAP", ours("LABELMAP", "auto"), "RLE Lossless (default)"))
        if get_encoder(JPEGLSLossless).is_available:
            variants.append(
                (
                    "medseg LABELMAP jpeg-ls",
                    ours("LABELMAP", "jpeg-ls"),
                    "JPEG-LS Lossless (dcmqi cannot read it)",
                )
            )
        variants.append(("plain highdicom BINARY, all frames", plain_highdicom(False), "baseline, no checks"))
        variants.append(("plain highdicom BINARY, defaults", plain_highdicom(True), "baseline, no checks"))
        if dcmqi:
            nrrd = tmp / "mask.nrrd"
            sitk.WriteImage(labels.to_sitk(), str(nrrd))
            meta = tmp / "meta.json"
            dcmqi_metadata(meta)

            def run_dcmqi(seg_type: str) -> Callable[[Path], object]:
                def run(out: Path) -> None:
                    command = [
                        dcmqi, "--inputImageList", str(nrrd), "--inputDICOMDirectory", str(series_dir),
                        "--outputDICOM", str(out), "--inputMetadata", str(meta), "--segmentationType", seg_type,
                    ]  # fmt: skip
                    done = subprocess.run(command, capture_output=True, text=True)
                    if done.returncode != 0:
                        raise RuntimeError(f"dcmqi failed: {done.stdout[-1000:]} {done.stderr[-1000:]}")

                return run

            variants.append(("dcmqi binary", run_dcmqi("binary"), "itkimage2segimage, reads the series"))
            variants.append(("dcmqi labelmap", run_dcmqi("labelmap"), "itkimage2segimage, reads the series"))

        # interleaved: every variant once per round, so load changes hit all of them alike
        times: dict[str, list[float]] = {name: [] for name, _, _ in variants}
        sizes: dict[str, int] = {}
        for round_ in range(args.repeat + 1):  # round 0 warms up imports and file caches, untimed
            for i, (name, write, _) in enumerate(variants):
                out = tmp / f"out_{i}.dcm"
                t0 = time.perf_counter()
                write(out)
                if round_ > 0:
                    times[name].append(time.perf_counter() - t0)
                sizes[name] = out.stat().st_size
        rows = [(name, statistics.median(times[name]), sizes[name], note) for name, _, note in variants]

    by_name = {name: seconds for name, seconds, _, _ in rows}
    print(
        f"# DICOM-SEG write, {args.slices} x {args.size} x {args.size} series, 2 segments, "
        f"{nonempty} non-empty slices; median of {args.repeat} interleaved run(s) after a warm-up round"
    )
    print(
        f"# machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, highdicom {hd.__version__}"
    )
    print()
    print("| variant | write (s) | size (MB) | dcmqi time / ours | note |")
    print("|---|---:|---:|---:|---|")
    for name, seconds, size, note in rows:
        if name.startswith("medseg"):
            reference = by_name.get("dcmqi labelmap" if "LABELMAP" in name else "dcmqi binary")
            ratio = f"{reference / seconds:.1f}x" if reference else "n/a"
        else:
            ratio = ""
        print(f"| {name} | {seconds:.2f} | {size / 1e6:.2f} | {ratio} | {note} |")
    if not dcmqi:
        print("\n(dcmqi itkimage2segimage not found: no comparison)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
