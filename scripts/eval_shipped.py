"""Validation Dice per lung of the shipped (or any) models on the held-out part of the real data.

    python scripts/eval_shipped.py cxr [--checkpoint DIR]     # CXR: the config's patient-level val split
    python scripts/eval_shipped.py ct  [--checkpoint DIR]     # CT: LUNG1-003 vs its RTSTRUCT contours,
                                                              #     next to the classic auto-labeller

Uses ``medseg.Predictor`` exactly as ``medseg predict`` does (post-processing included) and prints a
markdown table: per case and mean, Dice and HD95 per lung.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from medseg.config import config_from_dict
from medseg.data.manifest import load_entries, split_entries
from medseg.infer import Predictor
from medseg.io import read_image, read_rtstruct
from medseg.io.rtstruct import read_slice_uids
from medseg.metrics import dice, hd95

HERE = Path(__file__).resolve().parents[1]
SHARED = HERE / ".." / "shared" / "data"


def _row(name: str, pred: np.ndarray, ref: np.ndarray, spacing: tuple[float, ...], seconds: float) -> list[float]:
    out = []
    for v in (1, 2):
        out += [dice(pred == v, ref == v), hd95(pred == v, ref == v, spacing[::-1])]
    print(f"| {name} | {out[0]:.3f} | {out[2]:.3f} | {out[1]:.1f} | {out[3]:.1f} | {seconds:.1f} |")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("task", choices=["cxr", "ct"])
    ap.add_argument("--checkpoint", type=Path, default=None)
    args = ap.parse_args()
    predictor = Predictor.from_checkpoint(args.checkpoint, task=args.task, device="cpu")
    print("| case | Dice right | Dice left | HD95 right | HD95 left | s |\n|---|---:|---:|---:|---:|---:|")
    rows = []
    if args.task == "cxr":
        data = predictor.config.data
        cfg = config_from_dict({"data": {"manifest": str(SHARED / "cxr_lung_covid19_gb"),
                                         "val_fraction": data.val_fraction, "split_seed": data.split_seed}}).data
        val = [e for e in split_entries(load_entries(cfg), data.val_fraction, data.split_seed) if e.split == "val"]
        for e in val:
            image = read_image(e.image)
            ref = read_image(e.label, kind="label").array  # type: ignore[arg-type]
            t0 = time.perf_counter()
            pred = predictor.predict(image)
            rows.append(_row(Path(e.image).stem, pred.labels.array, ref, (1.0, 1.0), time.perf_counter() - t0))
        print("(HD95 in pixels: these pictures carry no pixel spacing)")
    else:
        case = SHARED / "ct_lung_nsclc_radiomics" / "LUNG1-003"
        ct = read_image(case / "ct.nii.gz", modality="CT")
        labels, names = read_rtstruct(case / "rtstruct.dcm", ct, rois=["right lung", "left lung"],
                                      slice_uids=read_slice_uids(case / "slices.csv"))
        by_name = {n: v for v, n in names.items()}
        ref = np.zeros(ct.shape, np.uint8)
        ref[labels.array == by_name["right lung"]] = 1
        ref[labels.array == by_name["left lung"]] = 2
        t0 = time.perf_counter()
        pred = predictor.predict(ct)
        rows.append(_row("LUNG1-003 model", pred.labels.array, ref, ct.spacing, time.perf_counter() - t0))
        from medseg.labelling.autolabel import autolabel_ct_lungs

        t0 = time.perf_counter()
        auto = autolabel_ct_lungs(ct)
        _row("LUNG1-003 autolabel", auto.array, ref, ct.spacing, time.perf_counter() - t0)
    if len(rows) > 1:
        m = [statistics.mean(r[i] for r in rows) for i in range(4)]
        print(f"| **mean of {len(rows)}** | {m[0]:.3f} | {m[2]:.3f} | {m[1]:.1f} | {m[3]:.1f} | |")


if __name__ == "__main__":
    main()
