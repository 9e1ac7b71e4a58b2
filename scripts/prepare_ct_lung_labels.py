"""Rasterise the clinicians' RTSTRUCT lung contours onto the NSCLC-Radiomics CTs and write a manifest.

The shipped ``lung_label.nii.gz`` of LUNG1-002 lacks the left lung on five slices (its structure set
repeats some contours an even number of times and the conversion XOR-ed them away; see
docs/autolabel.md), so the CT lung model is trained on labels read from the original RTSTRUCT with
``medseg.io.read_rtstruct`` (which drops duplicated contours).

    python scripts/prepare_ct_lung_labels.py [--data ../shared/data/ct_lung_nsclc_radiomics] \
        [--out data_prepared/ct_lung]

Writes ``OUT/<patient>/lung_rtstruct.nii.gz`` and ``OUT/manifest.csv`` (image = the shared CT,
label = the rasterised contours, patient_id, split: LUNG1-002 train, LUNG1-003 val), and for the
2-fold cross-validation ``OUT/fold_val_<patient>.csv`` (that patient validates, the other trains)
and ``OUT/all_train.csv`` (both patients train: the shipped model).
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np

from medseg.data.manifest import ManifestEntry, write_manifest
from medseg.io import read_image, read_rtstruct, write_image
from medseg.io.rtstruct import read_slice_uids

SPLIT = {"LUNG1-002": "train", "LUNG1-003": "val"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    here = Path(__file__).resolve().parents[1]
    ap.add_argument("--data", type=Path, default=here / ".." / "shared" / "data" / "ct_lung_nsclc_radiomics")
    ap.add_argument("--out", type=Path, default=here / "data_prepared" / "ct_lung")
    args = ap.parse_args()
    entries = []
    print(f"{'patient':10} {'label':12} {'right mL':>9} {'left mL':>8}  vs shipped label (Dice R, L)")
    for case in sorted(p for p in args.data.iterdir() if (p / "rtstruct.dcm").is_file()):
        ct = read_image(case / "ct.nii.gz", modality="CT")
        uids = read_slice_uids(case / "slices.csv") if (case / "slices.csv").is_file() else None
        labels, names = read_rtstruct(case / "rtstruct.dcm", ct, rois=["right lung", "left lung"], slice_uids=uids)
        by_name = {n: v for v, n in names.items()}
        arr = np.zeros(ct.shape, np.uint8)
        arr[labels.array == by_name["right lung"]] = 1
        arr[labels.array == by_name["left lung"]] = 2
        out = write_image(labels.with_array(arr), args.out / case.name / "lung_rtstruct.nii.gz")
        shipped = read_image(next(case.glob("*label*.nii.gz")), kind="label").array
        d = [2 * ((arr == v) & (shipped == v)).sum() / ((arr == v).sum() + (shipped == v).sum()) for v in (1, 2)]
        ml = [(arr == v).sum() * ct.voxel_volume / 1000 for v in (1, 2)]
        print(f"{case.name:10} {'rtstruct':12} {ml[0]:9.1f} {ml[1]:8.1f}  {d[0]:.4f}, {d[1]:.4f}")
        entries.append(ManifestEntry(image=(case / "ct.nii.gz").resolve(), label=out.resolve(),
                                     split=SPLIT.get(case.name), patient_id=case.name))
    manifest = write_manifest(entries, args.out / "manifest.csv")
    print(f"manifest: {manifest}")
    for held in entries:
        fold = [replace(e, split="val" if e.patient_id == held.patient_id else "train") for e in entries]
        print(f"fold manifest: {write_manifest(fold, args.out / f'fold_val_{held.patient_id}.csv')}")
    print(f"all-train manifest: {write_manifest([replace(e, split='train') for e in entries], args.out / 'all_train.csv')}")


if __name__ == "__main__":
    main()
