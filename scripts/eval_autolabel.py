"""Evaluate the classic CT lung auto-labeller against the clinicians' RTSTRUCT lung contours.

For every patient folder (``ct.nii.gz`` + ``rtstruct.dcm`` [+ ``slices.csv``, ``lung_label.nii.gz``])
under the NSCLC-Radiomics data folder it prints, per lung:

* Dice and HD95 (mm, MONAI's max of the two directed 95th percentiles) of
  :func:`medseg.labelling.autolabel.autolabel_ct_lungs` against the RTSTRUCT ``Lung R`` / ``Lung L``
  contours rasterised by :func:`medseg.io.rtstruct.read_rtstruct`, the two volumes, and the
  labeller's wall-clock runtime on the full volume (median of ``--repeats`` runs);
* Dice of that rasterisation against the shipped ``lung_label.nii.gz`` (a check of the reader).

Usage::

    python scripts/eval_autolabel.py [--data ../shared/data/ct_lung_nsclc_radiomics] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO / ".." / "shared" / "data" / "ct_lung_nsclc_radiomics"


def _crop(a: np.ndarray, b: np.ndarray, margin: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Both masks cropped to their joint bounding box (HD95 is the same, the distance maps smaller)."""
    union = a | b
    if not union.any():
        return a, b
    idx = np.argwhere(union)
    lo = np.maximum(idx.min(axis=0) - margin, 0)
    hi = idx.max(axis=0) + margin + 1
    box = tuple(slice(int(s), int(e)) for s, e in zip(lo, hi, strict=True))
    return a[box], b[box]


def evaluate(folder: Path, repeats: int) -> list[dict[str, object]]:
    from medseg.io import read_image
    from medseg.io.rtstruct import read_rtstruct, read_slice_uids
    from medseg.labelling.autolabel import LUNG_LABELS, autolabel_ct_lungs
    from medseg.metrics import dice, hd95

    ct = read_image(folder / "ct.nii.gz", modality="CT")
    uids = read_slice_uids(folder / "slices.csv") if (folder / "slices.csv").is_file() else None
    ref, _ = read_rtstruct(folder / "rtstruct.dcm", ct, rois=["right lung", "left lung"], slice_uids=uids)
    shipped = None
    if (folder / "lung_label.nii.gz").is_file():
        shipped = read_image(folder / "lung_label.nii.gz", kind="label").array
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        auto = autolabel_ct_lungs(ct)
        times.append(time.perf_counter() - t0)
    spacing_zyx = ct.spacing[::-1]
    voxel_ml = ct.voxel_volume / 1000.0
    rows: list[dict[str, object]] = []
    for value, name in LUNG_LABELS.items():
        a = auto.array == value
        r = ref.array == value
        rows.append(
            {
                "patient": folder.name,
                "structure": name,
                "dice": dice(a, r),
                "hd95": hd95(*_crop(a, r), spacing=spacing_zyx),
                "auto_ml": float(a.sum()) * voxel_ml,
                "ref_ml": float(r.sum()) * voxel_ml,
                "seconds": statistics.median(times),
                "shape": "x".join(str(s) for s in ct.size),
                "rt_vs_shipped": None if shipped is None else dice(r, shipped == value),
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, help="folder with one sub-folder per patient"
    )
    parser.add_argument("--repeats", type=int, default=3, help="runs per patient for the runtime (median)")
    args = parser.parse_args(argv)
    folders = sorted(p for p in args.data.resolve().glob("*") if (p / "ct.nii.gz").is_file())
    if not folders:
        print(f"no patient folders with ct.nii.gz under {args.data}", file=sys.stderr)
        return 1
    rows = [row for folder in folders for row in evaluate(folder, max(1, args.repeats))]

    from medseg.labelling.autolabel import AutolabelParams

    print(f"autolabel_ct_lungs {AutolabelParams()}")
    print()
    header = (
        "| patient | size (x,y,z) | lung | Dice | HD95 (mm) | auto (ml) | clinician (ml) | runtime (s) |"
        " RTSTRUCT vs shipped label (Dice) |"
    )
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for r in rows:
        shipped = "n/a" if r["rt_vs_shipped"] is None else f"{r['rt_vs_shipped']:.5f}"
        print(
            f"| {r['patient']} | {r['shape']} | {r['structure']} | {r['dice']:.4f} | {r['hd95']:.2f} |"
            f" {r['auto_ml']:.0f} | {r['ref_ml']:.0f} | {r['seconds']:.1f} | {shipped} |"
        )
    dices = [float(r["dice"]) for r in rows]  # type: ignore[arg-type]
    print()
    print(f"mean Dice {np.mean(dices):.4f}, min {np.min(dices):.4f}; runtime = median of {args.repeats} runs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
