"""LIDC multi-reader nodules of one series: matching, agreement, consensus mask, LUNA16 check.

    python scripts/lidc_readers.py [--case ../shared/data/ct_lidc_nodules/LIDC-IDRI-0001] \
        [--out runs/lidc_readers] [--level 0.5]

Reads the case's LIDC XML (``*.xml``) and CT (``dicom/``), matches the readers' nodules
(:func:`medseg.detect.lidc.match_nodules`), prints the per-nodule table (readers, point marks,
centroid, diameter, pairwise outline Dice), the LUNA16-style list next to ``luna16_annotations.csv``
when the case has one, and writes ``nodules.csv``, ``luna16_style.csv`` and the consensus label
map ``consensus.nii.gz`` (voxels outlined by >= ``--level`` of a nodule's outlining readers: a
training target from the outlines instead of a sphere).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from medseg.detect.lidc import consensus_label_map, luna16_list, match_nodules, nodule_table
from medseg.detect.targets import read_nodule_annotations
from medseg.io import read_image, write_image
from medseg.io.lidc import read_lidc_xml


def main() -> None:
    here = Path(__file__).resolve().parents[1]
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--case", type=Path, default=here / ".." / "shared" / "data" / "ct_lidc_nodules" / "LIDC-IDRI-0001")
    ap.add_argument("--out", type=Path, default=Path("runs/lidc_readers"))
    ap.add_argument("--level", type=float, default=0.5)
    args = ap.parse_args()
    xml = next(args.case.glob("*.xml"))
    read = read_lidc_xml(xml)
    ct = read_image(args.case / "dicom")
    nodules = match_nodules(read, ct)
    table = nodule_table(nodules)
    args.out.mkdir(parents=True, exist_ok=True)
    with (args.out / "nodules.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(table[0]))
        w.writeheader()
        w.writerows(table)
    print("| " + " | ".join(table[0]) + " |")
    for row in table:
        print("| " + " | ".join(str(v) for v in row.values()) + " |")
    ours = luna16_list(nodules, read.series_uid)
    with (args.out / "luna16_style.csv").open("w", newline="") as f:
        f.write("seriesuid,coordX,coordY,coordZ,diameter_mm\n")
        for a in ours:
            f.write(f"{a.seriesuid},{a.center[0]:.4f},{a.center[1]:.4f},{a.center[2]:.4f},{a.diameter_mm:.4f}\n")
    ref_file = args.case / "luna16_annotations.csv"
    if ref_file.is_file():
        for r in read_nodule_annotations(ref_file):
            d = min(((float(np.linalg.norm(np.subtract(a.center, r.center))), a) for a in ours),
                    key=lambda t: t[0]) if ours else None
            if d is None:
                print(f"LUNA16 {r.center} {r.diameter_mm:.1f} mm: no match in our list")
            else:
                print(f"LUNA16 {tuple(round(v, 2) for v in r.center)} {r.diameter_mm:.2f} mm <-> ours "
                      f"{tuple(round(v, 2) for v in d[1].center)} {d[1].diameter_mm:.2f} mm: {d[0]:.2f} mm apart")
    lab = consensus_label_map(nodules, ct, level=args.level)
    write_image(lab, args.out / "consensus.nii.gz")
    print(f"consensus voxels: {int(lab.array.sum())}; wrote {args.out}")


if __name__ == "__main__":
    main()
