"""Where the CT lung model's errors are, and whether a HU threshold near its boundary helps.

    python scripts/ct_boundary_hu.py LUNG1-003 [CHECKPOINT_DIR]      # default: the shipped ct_lung

Predicts the planning CT with the Predictor (shipped pipeline), compares with the clinicians'
RTSTRUCT lungs (``data_prepared/ct_lung/<patient>/lung_rtstruct.nii.gz`` from
``scripts/prepare_ct_lung_labels.py``): false negatives / positives per lung with their median HU,
then replaces the labels within ``r`` mm (in-plane) of each predicted lung's boundary by ``HU < T``
(never taking the other lung's voxels) for a few ``r`` and ``T``, printing Dice and volume bias.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from scipy import ndimage

from medseg.infer import Predictor
from medseg.io import read_image
from medseg.metrics import dice

HERE = Path(__file__).resolve().parents[1]


def report(name: str, lab: np.ndarray, ref: np.ndarray) -> None:
    d = [dice(lab == v, ref == v) for v in (1, 2)]
    vb = [100.0 * (int((lab == v).sum()) - int((ref == v).sum())) / int((ref == v).sum()) for v in (1, 2)]
    print(f"| {name} | {d[0]:.4f} | {d[1]:.4f} | {np.mean(d):.4f} | {vb[0]:+.2f} % | {vb[1]:+.2f} % |")


def main() -> None:
    patient = sys.argv[1]
    ckpt = Path(sys.argv[2]) if len(sys.argv) > 2 else None
    ct = read_image(HERE.parent / "shared" / "data" / "ct_lung_nsclc_radiomics" / patient / "ct.nii.gz", modality="CT")
    ref = np.asarray(read_image(HERE / "data_prepared" / "ct_lung" / patient / "lung_rtstruct.nii.gz",
                                kind="label").array)
    lab = np.asarray(Predictor.from_checkpoint(ckpt, task="ct", device="cpu").predict(ct).labels.array)
    hu = np.asarray(ct.array)
    for v in (1, 2):
        fn, fp = (ref == v) & (lab != v), (lab == v) & (ref != v)
        print(f"lung {v}: FN {int(fn.sum())} voxels (median HU {np.median(hu[fn]):.0f}), "
              f"FP {int(fp.sum())} (median HU {np.median(hu[fp]):.0f})")
    print("| variant | Dice right | Dice left | mean | volume bias right | left |\n|---|---:|---:|---:|---:|---:|")
    report("network (shipped pipeline)", lab, ref)
    for r_mm in (2.0, 3.0):
        r = max(1, round(r_mm / ct.spacing[0]))
        yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
        disk = (yy**2 + xx**2 <= r * r)[None]
        for t in (-400, -300, -250, -200):
            out = lab.copy()
            for v in (1, 2):
                m = lab == v
                band = ndimage.binary_dilation(m, disk) & ~ndimage.binary_erosion(m, disk)
                new = (m & ~band) | (band & (hu < t) & (lab != 3 - v))
                out[m & ~new] = 0
                out[new & ~m] = v
            report(f"boundary band {r_mm:g} mm -> HU < {t}", out, ref)


if __name__ == "__main__":
    main()
