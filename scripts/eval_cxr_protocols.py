"""Chest X-ray lung models on each annotation protocol's validation patients: Dice per image and
per patient, below-diaphragm leak, with and without the anatomy-aware post-processing.

    python scripts/prepare_cxr_lung_manifests.py          # -> data_prepared/cxr_lung/{gb,v7}.csv
    python scripts/eval_cxr_protocols.py --model NAME=CHECKPOINT_DIR [--model ...] \
        [--protocol gb --protocol v7] [--cache runs/eval_cxr] [--table]

For every model and every validation image of the protocol's manifest (``split == val``) the model's
raw argmax (``Predictor.predict(...).probabilities.argmax(0)``, on the image's original grid) is
cached as ``CACHE/<model>/<protocol>/<image stem>.npz``; post-processing variants are then applied
to the cached argmax:

* ``raw``      - argmax only;
* ``basic``    - ``postprocess_labels(..., anatomy=False)``: side naming, largest component per lung,
  hole filling (the post-processing of the earlier releases);
* ``anatomy``  - ``postprocess_labels(...)`` with its defaults, i.e. the anatomy-aware radiograph
  rules on top, applied at the image's full resolution;
* ``shipped``  - ``Predictor.predict(image).labels``: what ``medseg predict`` writes (the same rules
  applied on the decision grid, ``infer.decision_px``, boundaries refined at full resolution).

Metrics per image: Dice of the right and left lung, and the **below-diaphragm leak**: the share of
the predicted lung (both lungs) that lies below the reference lung's lowest row on its own side
(``rows > max row of reference lung v`` for the pixels predicted as lung ``v``), in percent of the
predicted lung area. Printed as markdown: per image, per patient (images of a patient averaged), and
the mean over patients (each patient weighs the same) and over images.
"""

from __future__ import annotations

import argparse
import csv
import statistics
from collections import defaultdict
from pathlib import Path

import numpy as np

from medseg.data.manifest import ManifestEntry, read_manifest
from medseg.image import Image
from medseg.infer.postprocess import postprocess_labels
from medseg.io import read_image
from medseg.metrics import dice

HERE = Path(__file__).resolve().parents[1]
NAMES = {1: "right lung", 2: "left lung"}
VARIANTS = ("raw", "basic", "anatomy", "shipped")
INFER: dict = {}  # --infer key=value overrides of the models' infer.* settings


def leak_px(pred: np.ndarray, ref: np.ndarray) -> tuple[int, int]:
    """(predicted lung pixels below the reference lung's lowest row on their side, predicted lung pixels)."""
    below = total = 0
    rows = np.arange(pred.shape[0])[:, None]
    for v in (1, 2):
        p = pred == v
        total += int(p.sum())
        ref_rows = np.flatnonzero((ref == v).any(axis=1))
        if ref_rows.size == 0:
            below += int(p.sum())
            continue
        below += int((p & (rows > ref_rows[-1])).sum())
    return below, total


def variant(name: str, raw: np.ndarray, image: Image, shipped: np.ndarray) -> np.ndarray:
    if name == "shipped":
        return shipped
    if name == "raw":
        return raw
    if name == "basic":
        return postprocess_labels(raw, image, NAMES, anatomy=False)
    return postprocess_labels(raw, image, NAMES)


def cached_argmax(model: str, checkpoint: Path, entry: ManifestEntry, cache: Path,
                  predictors: dict) -> tuple[np.ndarray, np.ndarray]:
    """(raw argmax on the image grid, the Predictor's shipped labels)."""
    out = cache / model / f"{entry.image.stem}__{entry.label.name if entry.label else ''}.npz"
    if out.is_file():
        with np.load(out) as f:
            if "shipped" in f:
                return f["labels"], f["shipped"]
    if model not in predictors:
        from medseg.infer import Predictor

        predictors[model] = Predictor.from_checkpoint(checkpoint, task="cxr", device="cpu", infer=INFER or None)
    pred = predictors[model].predict(read_image(entry.image))
    labels = pred.probabilities.argmax(axis=0).astype(np.uint8)
    shipped = np.asarray(pred.labels.array, dtype=np.uint8)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, labels=labels, shipped=shipped)
    tmp.replace(out)
    return labels, shipped


def evaluate(models: dict[str, Path], protocol: str, cache: Path, variants: tuple[str, ...]) -> list[dict]:
    manifest = HERE / "data_prepared" / "cxr_lung" / f"{protocol}.csv"
    entries = [e for e in read_manifest(manifest) if e.split == "val"]
    rows: list[dict] = []
    predictors: dict = {}
    for e in entries:
        image = read_image(e.image)
        ref = np.asarray(read_image(e.label, kind="label").array) if e.label else None
        assert ref is not None
        for model, ckpt in models.items():
            raw, shipped = cached_argmax(model, ckpt, e, cache, predictors)
            for v in variants:
                lab = variant(v, raw, image, shipped)
                below, total = leak_px(lab, ref)
                rows.append({"protocol": protocol, "model": model, "variant": v, "image": e.image.stem,
                             "patient": e.patient, "dice_right": dice(lab == 1, ref == 1),
                             "dice_left": dice(lab == 2, ref == 2), "leak_pct": 100.0 * below / max(total, 1)})
    return rows


def summary(rows: list[dict]) -> dict[str, float]:
    """Means over patients (per patient: mean of its images) and over images."""
    by_patient: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_patient[r["patient"]].append(r)
    out: dict[str, float] = {}
    for key in ("dice_right", "dice_left", "leak_pct"):
        per_patient = [statistics.mean(r[key] for r in rs) for rs in by_patient.values()]
        out[key] = statistics.mean(per_patient)
        out[key + "_img"] = statistics.mean(r[key] for r in rows)
    out["dice"] = (out["dice_right"] + out["dice_left"]) / 2
    out["dice_img"] = (out["dice_right_img"] + out["dice_left_img"]) / 2
    out["worst_img"] = min(min(r["dice_right"], r["dice_left"]) for r in rows)
    out["patients"], out["images"] = len(by_patient), len(rows)
    return out


def print_tables(rows: list[dict], per_image: bool) -> None:
    groups: dict[tuple[str, str, str], list[dict]] = defaultdict(list)
    for r in rows:
        groups[(r["protocol"], r["model"], r["variant"])].append(r)
    print("| protocol | model | post-processing | patients / images | Dice right | Dice left | mean Dice "
          "(per patient) | mean Dice (per image) | worst lung | leak % |")
    print("|---|---|---|---|---:|---:|---:|---:|---:|---:|")
    for (protocol, model, var), rs in groups.items():
        s = summary(rs)
        print(f"| {protocol} | {model} | {var} | {s['patients']} / {s['images']} | {s['dice_right']:.3f} | "
              f"{s['dice_left']:.3f} | **{s['dice']:.3f}** | {s['dice_img']:.3f} | {s['worst_img']:.3f} | "
              f"{s['leak_pct']:.2f} |")
    if not per_image:
        return
    for (protocol, model, var), rs in groups.items():
        print(f"\n{protocol} / {model} / {var}: per patient\n")
        print("| patient | images | Dice right | Dice left | leak % |\n|---|---:|---:|---:|---:|")
        by_patient: dict[str, list[dict]] = defaultdict(list)
        for r in rs:
            by_patient[r["patient"]].append(r)
        for p, prs in sorted(by_patient.items(), key=lambda kv: kv[0]):
            print(f"| {p} | {len(prs)} | {statistics.mean(r['dice_right'] for r in prs):.3f} | "
                  f"{statistics.mean(r['dice_left'] for r in prs):.3f} | "
                  f"{statistics.mean(r['leak_pct'] for r in prs):.2f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", required=True, help="NAME=CHECKPOINT_DIR")
    ap.add_argument("--protocol", action="append", choices=["gb", "v7"])
    ap.add_argument("--variant", action="append", choices=list(VARIANTS))
    ap.add_argument("--cache", type=Path, default=HERE / "runs" / "eval_cxr")
    ap.add_argument("--table", action="store_true", help="also print the per-patient tables")
    ap.add_argument("--csv", type=Path, default=None, help="write all per-image rows here")
    ap.add_argument("--infer", action="append", default=[], help="infer.* override KEY=VALUE, e.g. tta_flip=true")
    args = ap.parse_args()
    import yaml

    INFER.update({kv.split("=", 1)[0]: yaml.safe_load(kv.split("=", 1)[1]) for kv in args.infer})
    models = {m.split("=", 1)[0]: Path(m.split("=", 1)[1]) for m in args.model}
    variants = tuple(args.variant or VARIANTS)
    rows = []
    for protocol in args.protocol or ["gb", "v7"]:
        rows += evaluate(models, protocol, args.cache, variants)
    print_tables(rows, args.table)
    if args.csv:
        args.csv.parent.mkdir(parents=True, exist_ok=True)
        with args.csv.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)


if __name__ == "__main__":
    main()
