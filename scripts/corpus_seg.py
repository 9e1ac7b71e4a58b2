"""Real-world DICOM corpus: read every file and series, write a DICOM-SEG for each image, validate it.

Corpus (files no one here wrote): pydicom's test files plus the ``pydicom-data`` package (both
listed by ``pydicom.data.get_testdata_files()``) and every DICOM file under ``../shared/data``;
plus every folder of the corpus that holds several DICOM files, read as one series.

For each item:

1. ``medseg.io.read_image``: only a ``MedsegError`` may come out (anything else is a bug).
2. Each item read as an image gets a label map with values {1, 2, 5} (asymmetric blocks, label 5
   on the first slice only, so flips and slice order show) and a BINARY DICOM-SEG from
   ``write_dicom_seg``; only a ``MedsegError`` may come out.
3. The SEG is checked with ``dciodvfy`` (dicom3tools): it may have no ``Error`` line that the
   source itself does not have (the source's own errors, e.g. a bad Patient's Age, may be copied).
4. The SEG is read back voxel-exact by medseg (``read_dicom_seg`` with the source, and without it
   for volumes: index-aligned with ``read_image``), by highdicom (``Segmentation.get_volume`` /
   ``get_pixels_by_source_instance``) and, where dcmqi supports the geometry (a frame of reference
   and slices of one volume), by dcmqi ``segimage2itkimage``.

The CI test (``tests/io/test_corpus.py``) runs a deterministic subset; this script runs all of it::

    python scripts/corpus_seg.py [--type BINARY|LABELMAP] [--no-dcmqi] [--only TEXT] [--json out.json]

and prints the counts recorded in ``docs/interop.md``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO / ".." / "shared" / "data").resolve()
LABEL_NAMES = {1: "right lung", 2: "left lung", 5: "nodule"}


@dataclass
class Outcome:
    """What happened to one corpus item (a file or a series folder)."""

    item: str  # corpus-relative name, e.g. "pydicom/CT_small.dcm" or "shared/dicom_seg_interop/dcmqi/ct-3slice/"
    status: str  # "image", "refused" (MedsegError when reading), "crash" (any other exception)
    reason: str = ""  # the MedsegError class and message (refusals), or the crash
    seg_written: bool = False
    seg_refused: str = ""  # MedsegError from write_dicom_seg
    seg_errors: list[str] = field(default_factory=list)  # dciodvfy errors the source does not have
    readback: dict[str, str] = field(default_factory=dict)  # reader -> "ok" / "skip: why" / "FAIL: why"
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        if self.status == "crash" or self.seg_errors:
            return False
        return not any(v.startswith("FAIL") for v in self.readback.values())


# ---------------------------------------------------------------------------------------------
# the corpus
# ---------------------------------------------------------------------------------------------
def _is_dicom(path: Path) -> bool:
    from medseg.io.dicom import is_dicom_file

    return path.is_file() and is_dicom_file(path)


def corpus_items(shared: Path | None = SHARED_DATA) -> list[tuple[str, Path]]:
    """``[(name, path)]``: every DICOM file, then every folder with several DICOM files; sorted.

    Names are stable across machines: ``pydicom/...``, ``pydicom-data/...``, ``shared/...``.
    """
    from pydicom.data import get_testdata_files

    roots: list[tuple[str, Path]] = []
    files: list[tuple[str, Path]] = []
    for f in get_testdata_files():
        p = Path(f)
        if "data_store" in p.parts:
            base = Path(*p.parts[: p.parts.index("data_store") + 2])
            prefix = "pydicom-data"
        else:
            base = Path(*p.parts[: p.parts.index("test_files") + 1])
            prefix = "pydicom"
        if (prefix, base) not in roots:
            roots.append((prefix, base))
        if _is_dicom(p):
            files.append((f"{prefix}/{p.relative_to(base).as_posix()}", p))
    if shared is not None and shared.is_dir():
        roots.append(("shared", shared))
        for p in sorted(shared.rglob("*")):
            if _is_dicom(p):
                files.append((f"shared/{p.relative_to(shared).as_posix()}", p))
    folders: dict[Path, list[Path]] = {}
    for _, p in files:
        if p.name.upper() != "DICOMDIR":
            folders.setdefault(p.parent, []).append(p)
    series: list[tuple[str, Path]] = []
    for folder, members in folders.items():
        if len(members) < 2:
            continue
        prefix, base = next((pre, b) for pre, b in roots if folder == b or b in folder.parents)
        rel = folder.relative_to(base).as_posix()
        series.append((f"{prefix}/{'' if rel == '.' else rel + '/'}", folder))
    files = sorted(dict(files).items())
    return files + sorted(series)


# ---------------------------------------------------------------------------------------------
# one item
# ---------------------------------------------------------------------------------------------
def test_labels(image_shape: tuple[int, ...]) -> np.ndarray:
    """Labels {1, 2, 5} on ``image_shape``: asymmetric blocks; 5 only on the first slice."""
    labels = np.zeros(image_shape, dtype=np.uint8)
    ny, nx = image_shape[-2:]
    labels[..., : max(1, ny // 3), : max(1, nx // 2)] = 1
    if ny >= 3 and nx >= 4:
        labels[..., ny // 3 : ny // 2 + 1, nx // 4 :] = 2
        first = labels[0] if labels.ndim == 3 else labels
        first[(2 * ny) // 3 :, : max(1, nx // 4)] = 5
    return labels


def dciodvfy_errors(path: Path) -> list[str]:
    """``Error`` lines of dciodvfy for ``path`` (the file name is taken out of each line)."""
    tool = shutil.which("dciodvfy")
    if tool is None:
        raise RuntimeError("dciodvfy (dicom3tools) is not installed")
    run = subprocess.run([tool, "-new", str(path)], capture_output=True, text=True, timeout=120)
    lines = (run.stdout + run.stderr).replace(str(path), "FILE").splitlines()
    return sorted({line.strip() for line in lines if line.startswith("Error")})


def _source_files(image: object) -> list[Path]:
    return [Path(f) for f in image.source.files]  # type: ignore[attr-defined]


def _new_errors(seg: Path, sources: list[Path]) -> list[str]:
    """dciodvfy errors of the SEG that no source file has itself."""
    source_errors: set[str] = set()
    for f in sources[:3]:  # slices of one series share their header problems
        source_errors.update(dciodvfy_errors(f))
    return [e for e in dciodvfy_errors(seg) if e not in source_errors]


def _check_medseg(seg: Path, image: object, labels: np.ndarray) -> str:
    from medseg.io import read_dicom_seg

    got = read_dicom_seg(seg, image).labels  # type: ignore[arg-type]
    if got.shape != labels.shape or not np.array_equal(got.array, labels):
        return f"FAIL: with source: values {sorted(np.unique(got.array).tolist())}, shape {got.shape}"
    own = read_dicom_seg(seg).labels
    if own.shape != labels.shape or not np.array_equal(own.array, labels):
        return f"FAIL: without source: values {sorted(np.unique(own.array).tolist())}, shape {own.shape}"
    if not np.allclose(own.affine, image.affine, atol=1e-3):  # type: ignore[attr-defined]
        return f"FAIL: without source: affine {own.affine.tolist()} != {image.affine.tolist()}"  # type: ignore[attr-defined]
    return "ok"


def _check_highdicom(seg: Path, image: object, labels: np.ndarray) -> str:
    import highdicom as hd

    ds = hd.seg.segread(seg)
    numbers = {int(n): v for n, v in zip(ds.segment_numbers, sorted(LABEL_NAMES), strict=False)}
    uids = [str(d.SOPInstanceUID) for d in image.source.datasets]  # type: ignore[attr-defined]
    if labels.ndim == 3 and len(uids) == 1 and labels.shape[0] > 1:
        # one multi-frame source whose frames medseg sorted along the normal: place by geometry
        target = hd.VolumeGeometry(
            np.asarray(image.affine)[:, [2, 1, 0, 3]],  # type: ignore[attr-defined]
            labels.shape,
            coordinate_system="PATIENT",
            frame_of_reference_uid=ds.FrameOfReferenceUID,
        )
        volume = ds.get_volume(
            segment_numbers=list(numbers), combine_segments=False, skip_overlap_checks=True
        )
        masks = volume.match_geometry(target).array
    else:
        masks = ds.get_pixels_by_source_instance(
            uids, segment_numbers=list(numbers), combine_segments=False, skip_overlap_checks=True
        )
    out = np.zeros(masks.shape[:-1], dtype=np.uint8)
    for i, value in enumerate(numbers.values()):
        out[masks[..., i] > 0] = value
    out = out.reshape(labels.shape)
    if not np.array_equal(out, labels):
        return f"FAIL: values {sorted(np.unique(out).tolist())}"
    return "ok"


def _check_dcmqi(seg: Path, image: object, labels: np.ndarray, scratch: Path) -> str:
    import SimpleITK as sitk

    tool = shutil.which("segimage2itkimage")
    if tool is None:
        return "skip: dcmqi not installed"
    if labels.ndim != 3 or not image.source.frame_of_reference_uid:  # type: ignore[attr-defined]
        return "skip: dcmqi reads SEGs of volumes with a frame of reference"
    out = scratch / "dcmqi"
    out.mkdir(parents=True, exist_ok=True)
    run = subprocess.run(
        [tool, "--inputDICOM", str(seg), "--outputDirectory", str(out), "--outputType", "nrrd"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if run.returncode != 0:
        return f"FAIL: dcmqi exit {run.returncode}: {(run.stdout + run.stderr)[-300:]}"
    meta = json.loads((out / "meta.json").read_text())
    got = np.zeros(labels.shape, dtype=np.uint8)
    values = sorted(np.unique(labels[labels > 0]).tolist())
    # dcmqi writes one file per group of non-overlapping segments (<n>.nrrd; a LABELMAP is one
    # group) with pixel value = labelID (the segment number); segments sorted by number are the
    # label values in increasing order
    ids = sorted(int(seg["labelID"]) for group in meta["segmentAttributes"] for seg in group)
    value_of = dict(zip(ids, values, strict=False))
    ref = sitk.Image(labels.shape[::-1], sitk.sitkUInt8)
    ref.SetSpacing(image.spacing)  # type: ignore[attr-defined]
    ref.SetOrigin(image.origin)  # type: ignore[attr-defined]
    ref.SetDirection(image.direction.ravel().tolist())  # type: ignore[attr-defined]
    for n, group in enumerate(meta["segmentAttributes"], start=1):
        mask = sitk.ReadImage(str(out / f"{n}.nrrd"))
        # dcmqi writes the grid of the frames it has; resample (nearest) onto the image grid
        on = sitk.GetArrayFromImage(
            sitk.Resample(mask, ref, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt16)
        )
        for segment in group:
            number = int(segment["labelID"])
            got[(on == number) if len(group) > 1 else (on > 0)] = value_of.get(number, 255)
    if not np.array_equal(got, labels):
        return f"FAIL: dcmqi values {sorted(np.unique(got).tolist())}, {int((got != labels).sum())} voxels differ"
    return "ok"


def check_item(
    name: str, path: Path, scratch: Path, *, dcmqi: bool = True, segmentation_type: str = "BINARY"
) -> Outcome:
    """Run the whole chain on one corpus item (see the module docstring)."""
    from medseg.errors import MedsegError
    from medseg.io import read_image, write_dicom_seg

    start = time.perf_counter()
    out = Outcome(item=name, status="image")
    try:
        try:
            image = read_image(path)
        except MedsegError as err:
            out.status, out.reason = "refused", f"{type(err).__name__}: {err}"
            return out
        labels = test_labels(image.shape)
        seg = scratch / "seg.dcm"
        try:
            write_dicom_seg(
                image.with_array(labels, kind="label"),
                image,
                seg,
                label_names=LABEL_NAMES,
                segmentation_type=segmentation_type,  # type: ignore[arg-type]
            )
        except MedsegError as err:
            out.seg_refused = f"{type(err).__name__}: {err}"
            return out
        out.seg_written = True
        out.seg_errors = _new_errors(seg, _source_files(image))
        checks = {"medseg": _check_medseg, "highdicom": _check_highdicom}
        for reader, check in checks.items():
            try:
                out.readback[reader] = check(seg, image, labels)
            except Exception as err:  # noqa: BLE001 - a reader failing is a result here
                out.readback[reader] = f"FAIL: {type(err).__name__}: {err}"
        if dcmqi:
            try:
                out.readback["dcmqi"] = _check_dcmqi(seg, image, labels, scratch)
            except Exception as err:  # noqa: BLE001
                out.readback["dcmqi"] = f"FAIL: {type(err).__name__}: {err}"
    except Exception as err:  # noqa: BLE001 - anything but a MedsegError is what the corpus hunts for
        out.status, out.reason = "crash", f"{type(err).__name__}: {err}"
    finally:
        out.seconds = time.perf_counter() - start
    return out


def run_corpus(
    items: Iterable[tuple[str, Path]], *, dcmqi: bool = True, segmentation_type: str = "BINARY"
) -> list[Outcome]:
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="medseg-corpus-") as tmp:
        for i, (name, path) in enumerate(items):
            scratch = Path(tmp) / f"{i:04d}"
            scratch.mkdir()
            outcomes.append(check_item(name, path, scratch, dcmqi=dcmqi, segmentation_type=segmentation_type))
            shutil.rmtree(scratch, ignore_errors=True)
    return outcomes


def counts(outcomes: list[Outcome]) -> dict[str, int]:
    """The numbers recorded in docs/interop.md."""
    c = Counter(o.status for o in outcomes)
    read = [o for o in outcomes if o.status == "image"]
    written = [o for o in read if o.seg_written]
    return {
        "items": len(outcomes),
        "files": sum(1 for o in outcomes if not o.item.endswith("/")),
        "series folders": sum(1 for o in outcomes if o.item.endswith("/")),
        "read as image": len(read),
        "refused by read_image": c["refused"],
        "crashed": c["crash"],
        "SEG refused by write_dicom_seg": sum(1 for o in read if o.seg_refused),
        "SEGs written": len(written),
        "dciodvfy: no new error": sum(1 for o in written if not o.seg_errors),
        "medseg read-back exact": sum(1 for o in written if o.readback.get("medseg") == "ok"),
        "highdicom read-back exact": sum(1 for o in written if o.readback.get("highdicom") == "ok"),
        "dcmqi read-back exact": sum(1 for o in written if o.readback.get("dcmqi") == "ok"),
        "dcmqi not applicable": sum(1 for o in written if o.readback.get("dcmqi", "").startswith("skip")),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-dcmqi", action="store_true", help="skip the dcmqi read-back (slowest part)")
    parser.add_argument("--json", type=Path, help="write every outcome to this JSON file")
    parser.add_argument("--only", help="only items whose name contains this text")
    parser.add_argument("--type", default="BINARY", choices=["BINARY", "LABELMAP"], help="SEG type to write")
    args = parser.parse_args(argv)
    import logging

    logging.disable(logging.WARNING)
    items = [it for it in corpus_items() if not args.only or args.only in it[0]]
    start = time.perf_counter()
    outcomes = run_corpus(items, dcmqi=not args.no_dcmqi, segmentation_type=args.type)
    seconds = time.perf_counter() - start
    for o in outcomes:
        if not o.ok or o.status == "refused" or o.seg_refused:
            what = o.reason or o.seg_refused or "; ".join(o.seg_errors) or str(o.readback)
            print(
                f"{'PROBLEM' if not o.ok else o.status.upper() if not o.seg_refused else 'SEG-REFUSED'}: "
                f"{o.item}: {what[:300]}"
            )
    for key, value in counts(outcomes).items():
        print(f"{key:>32}: {value}")
    print(f"{'seconds':>32}: {seconds:.1f}")
    if args.json:
        args.json.write_text(json.dumps([asdict(o) for o in outcomes], indent=1))
    return 0 if all(o.ok for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
