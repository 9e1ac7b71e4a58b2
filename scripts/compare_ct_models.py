#!/usr/bin/env python
"""CT lung models side by side on every CT at hand: Dice per lung against the clinicians' RTSTRUCT
contours where they exist, and agreement with each other and with the classic auto-labeller on a CT
no model trained on (LIDC-IDRI-0001, 2.5 mm, no lung contours).

    python scripts/compare_ct_models.py --model shipped=medseg/weights/ct_lung \\
        --model both=runs/ct_lung_1mm_all/checkpoints/last

Used to check a model trained on both NSCLC CTs (issue #14) before shipping it: its Dice on those two
CTs is in-sample, so the LIDC scan is the only unseen one; agreement there with the model trained on
one CT and with the threshold-based labeller shows whether it still holds on another patient.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from medseg.infer import Predictor
from medseg.io import read_image
from medseg.labelling import autolabel_ct_lungs
from medseg.metrics import dice

HERE = Path(__file__).resolve().parents[1]
SHARED = (HERE / ".." / "shared" / "data").resolve()
PREPARED = HERE / "data_prepared" / "ct_lung"


def _dice_pair(a: np.ndarray, b: np.ndarray) -> str:
    return " / ".join(f"{dice(a == v, b == v):.4f}" for v in (1, 2))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", required=True, help="NAME=CHECKPOINT_DIR")
    args = ap.parse_args()
    models = {m.split("=", 1)[0]: Predictor.from_checkpoint(m.split("=", 1)[1], task="ct") for m in args.model}
    cases = [(p, SHARED / "ct_lung_nsclc_radiomics" / p / "ct.nii.gz", PREPARED / p / "lung_rtstruct.nii.gz")
             for p in ("LUNG1-002", "LUNG1-003")]
    cases.append(("LIDC-IDRI-0001", SHARED / "ct_lidc_nodules" / "LIDC-IDRI-0001" / "dicom", None))
    print("| CT | labels | vs reference (R / L) | vs classic (R / L) | " + " | ".join(f"vs {n}" for n in models)
          + " | volume R / L (mL) |")
    print("|---|---|---|---|" + "---|" * len(models) + "---|")
    for case, path, ref_path in cases:
        if not path.exists():
            continue
        ct = read_image(path, modality="CT")
        ref = read_image(ref_path).array if ref_path is not None and ref_path.exists() else None
        labels = {"classic": autolabel_ct_lungs(ct).array}
        labels.update({n: p.predict(ct).labels.array for n, p in models.items()})
        ml = ct.voxel_volume / 1000.0
        for name, lab in labels.items():
            cells = [_dice_pair(lab, ref) if ref is not None else "-",
                     _dice_pair(lab, labels["classic"]) if name != "classic" else "-"]
            cells += [_dice_pair(lab, labels[n]) if n != name else "-" for n in models]
            vol = " / ".join(f"{(lab == v).sum() * ml:.0f}" for v in (1, 2))
            print(f"| {case} | {name} | " + " | ".join(cells) + f" | {vol} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
