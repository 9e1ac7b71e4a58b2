"""CT lung models on the planning CT each did not train on: Dice, HD95 and volume bias per lung,
and the background-logit offset that removes a systematic volume bias.

    python scripts/prepare_ct_lung_labels.py        # reference labels from the RTSTRUCTs
    python scripts/eval_ct_folds.py --fold LUNG1-003=runs/ct_lung/checkpoints/best \
        --fold LUNG1-002=runs/ct_lung_fold_val002/checkpoints/last [--offsets 0 0.5 1 1.5 2] \
        [--json runs/eval_ct/folds.json]

For each ``PATIENT=CHECKPOINT`` the CT of that patient is segmented with ``medseg.Predictor``
(sliding window as shipped); then, for every offset ``d``, the labels are
``argmax(log p - [d, 0, 0])`` - i.e. the background logit lowered by ``d``, which moves the lung
boundary outwards along the probability ramp - followed by the standard post-processing
(``postprocess_labels``). Reference: the clinicians' RTSTRUCT contours rasterised by
``scripts/prepare_ct_lung_labels.py``. Volume bias = (predicted - reference) / reference, in %.

A ``d`` found here is baked into a checkpoint with ``scripts/ship_model.py --background-offset d``
(it subtracts ``d`` from the bias of the background output channel: the same labels, no code change).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from medseg.infer import Predictor
from medseg.infer.postprocess import postprocess_labels
from medseg.io import read_image
from medseg.metrics import dice, hd95

HERE = Path(__file__).resolve().parents[1]
SHARED = HERE / ".." / "shared" / "data" / "ct_lung_nsclc_radiomics"
PREPARED = HERE / "data_prepared" / "ct_lung"
NAMES = {1: "right lung", 2: "left lung"}


def evaluate(patient: str, checkpoint: Path, offsets: list[float], hd_offsets: set[float]) -> list[dict]:
    ct = read_image(SHARED / patient / "ct.nii.gz", modality="CT")
    ref = np.asarray(read_image(PREPARED / patient / "lung_rtstruct.nii.gz", kind="label").array)
    predictor = Predictor.from_checkpoint(checkpoint, task="ct", device="cpu")
    t0 = time.perf_counter()
    probs = predictor.predict(ct).probabilities
    seconds = time.perf_counter() - t0
    logp = np.log(np.clip(probs, 1e-6, 1.0))
    del probs
    spacing = tuple(ct.spacing[::-1])
    rows = []
    for d in offsets:
        logp[0] -= d
        raw = logp.argmax(axis=0).astype(np.uint8)
        logp[0] += d
        lab = postprocess_labels(raw, ct, NAMES)
        row: dict = {"patient": patient, "checkpoint": str(checkpoint), "offset": d, "seconds": seconds}
        for v, side in ((1, "right"), (2, "left")):
            p, r = lab == v, ref == v
            row[f"dice_{side}"] = dice(p, r)
            row[f"volume_bias_pct_{side}"] = 100.0 * (int(p.sum()) - int(r.sum())) / max(int(r.sum()), 1)
            if d in hd_offsets:
                row[f"hd95_{side}"] = hd95(p, r, spacing)
        if d == offsets[0]:
            row.update(_zone_dice(lab, ref, ct))
        rows.append(row)
        print(f"| {patient} | {d:.2f} | {row['dice_right']:.4f} | {row['dice_left']:.4f} | "
              f"{row['volume_bias_pct_right']:+.2f} | {row['volume_bias_pct_left']:+.2f} | "
              f"{row.get('hd95_right', float('nan')):.1f} | {row.get('hd95_left', float('nan')):.1f} |", flush=True)
    return rows


def _zone_dice(lab: np.ndarray, ref: np.ndarray, ct) -> dict:  # type: ignore[no-untyped-def]
    """Dice of the lungs (both labels, per voxel label) in the apex and base zones: the most superior /
    inferior 10 % of the slices on which the reference has lung (the thin slivers issue #14 names)."""
    zs = np.flatnonzero(ref.reshape(ref.shape[0], -1).any(axis=1))
    n = max(1, round(0.1 * zs.size))
    z_world = [float(ct.index_to_world([0, 0, int(k)])[2]) for k in (zs[0], zs[-1])]
    first_superior = z_world[0] > z_world[1]  # LPS: +z is superior
    top, bottom = zs[:n], zs[-n:]
    apex, base = (top, bottom) if first_superior else (bottom, top)
    out = {}
    for name, idx in (("apex", apex), ("base", base)):
        p, r = lab[idx], ref[idx]
        inter = sum(int(((p == v) & (r == v)).sum()) for v in (1, 2))
        out[f"dice_{name}"] = 2.0 * inter / max(1, int((p > 0).sum() + (r > 0).sum()))
    print(f"  {ct.source.path or 'CT'}: apex Dice {out['dice_apex']:.4f}, base Dice {out['dice_base']:.4f} "
          f"({n} slices each)", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fold", action="append", required=True, help="VAL_PATIENT=CHECKPOINT_DIR")
    ap.add_argument("--offsets", type=float, nargs="+", default=[0.0, 0.5, 1.0, 1.5, 2.0])
    ap.add_argument("--hd95-offsets", type=float, nargs="*", default=[0.0])
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    print("| validation CT | background offset | Dice right | Dice left | volume bias right % | "
          "volume bias left % | HD95 right (mm) | HD95 left (mm) |\n|---|---:|---:|---:|---:|---:|---:|---:|")
    rows = []
    for fold in args.fold:
        patient, ckpt = fold.split("=", 1)
        rows += evaluate(patient, Path(ckpt), args.offsets, set(args.hd95_offsets))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
