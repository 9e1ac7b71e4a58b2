"""Nodule detection end to end on the LIDC-IDRI-0001 subset: labels -> brief training -> detection -> FROC.

A smoke test of the whole pipeline, NOT a generalisation claim: only one scan (16 slices) is
available, so the model is trained and evaluated **on the same scan**.

1. Labels on the CT grid: lung = 1 from the model-free auto-labeller (``autolabel_ct_lungs``, both
   lungs merged; a plain HU threshold inside the body when it fails, or with ``--lung threshold``),
   nodule = 2 from the LUNA16 row (a sphere of the annotated diameter, ``nodule_mask``), or with
   ``--targets consensus`` from the LIDC readers' consensus outlines (``medseg.detect.lidc``).
2. ``OUT/ct.nii.gz``, ``OUT/label.nii.gz`` and ``OUT/manifest.csv`` (default ``data_prepared/ct_nodule_lidc``).
3. Training from ImageNet encoder weights with ``configs/ct_nodule.yaml`` + CPU-sized overrides
   (1.4 mm in-plane, 160 px crops around the nodule, bf16, a few hundred steps).
4. ``detect_nodules`` on the same series (read from DICOM), outputs (CSV, DICOM-SEG, SR, PNG) in
   ``RUN/detection``, and the LUNA16 evaluation against ``luna16_annotations.csv``.

    python scripts/train_nodule_lidc.py [--steps 300] [--image-size 160] [--set key=value ...]
"""

from __future__ import annotations

import argparse
import logging
import shutil
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

import medseg
from medseg.config import load_config
from medseg.data.manifest import ManifestEntry, write_manifest
from medseg.detect import evaluate_detection, nodule_mask, read_nodule_annotations
from medseg.detect.pipeline import detect_nodules, write_nodule_outputs
from medseg.errors import InputError
from medseg.image import Image
from medseg.infer import Predictor
from medseg.io import write_image
from medseg.labelling.autolabel import autolabel_ct_lungs

HERE = Path(__file__).resolve().parents[1]


def threshold_lung(ct: Image) -> np.ndarray:
    """Fallback lung mask: air (< -400 HU) inside the body (largest > -500 HU component, holes filled per slice)."""
    body_lab, n = ndimage.label(ct.array > -500)
    body = body_lab == (1 + int(np.argmax(np.bincount(body_lab.ravel())[1:]))) if n else body_lab > 0
    body = np.stack([ndimage.binary_fill_holes(s) for s in body])
    lung = (ct.array < -400) & body
    lab, n = ndimage.label(lung)
    sizes = np.bincount(lab.ravel())[1:] * ct.voxel_volume / 1000.0
    return np.isin(lab, 1 + np.flatnonzero(sizes >= 50.0))  # drop airways/bowel gas below 50 ml


def dice(a: np.ndarray, b: np.ndarray) -> float:
    s = int(a.sum()) + int(b.sum())
    return 2.0 * int((a & b).sum()) / s if s else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=HERE / ".." / "shared" / "data" / "ct_lidc_nodules" / "LIDC-IDRI-0001")
    ap.add_argument("--out", type=Path, default=HERE / "data_prepared" / "ct_nodule_lidc")
    ap.add_argument("--run", type=Path, default=HERE / "runs" / "ct_nodule_lidc")
    ap.add_argument("--config", type=Path, default=HERE / "configs" / "ct_nodule.yaml")
    ap.add_argument("--lung", choices=["auto", "threshold"], default="auto")
    ap.add_argument("--targets", choices=["sphere", "consensus"], default="sphere",
                    help="nodule target: a sphere from the LUNA16 row, or the readers' consensus outlines from the LIDC XML "
                         "(voxels drawn by >= 50 %% of the readers who outlined the nodule)")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--image-size", type=int, default=160)
    ap.add_argument("--spacing", type=float, default=1.4)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--threshold", type=float, default=0.5)
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="extra config override key=value")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    t_start = time.perf_counter()

    # 1. labels
    ct = medseg.read_image(args.data / "dicom")
    anns = read_nodule_annotations(args.data / "luna16_annotations.csv")
    print(f"CT {ct.source.path}: {ct.shape} (z, y, x), spacing {tuple(round(s, 3) for s in ct.spacing)} mm")
    thr_lung = threshold_lung(ct)
    lung, how = thr_lung, "HU threshold inside the body"
    if args.lung == "auto":
        try:
            auto = autolabel_ct_lungs(ct).array > 0
            per_slice = auto.reshape(len(auto), -1).sum(axis=1) * ct.spacing[0] * ct.spacing[1] / 100.0
            print(f"autolabel_ct_lungs on the {ct.shape[0]}-slice stack: {auto.sum() * ct.voxel_volume / 1000:.0f} ml, "
                  f"lung area per slice {per_slice.min():.0f}-{per_slice.max():.0f} cm2, "
                  f"Dice vs HU-threshold lung {dice(auto, thr_lung):.3f}")
            lung, how = auto, "autolabel_ct_lungs"
        except InputError as e:
            print(f"autolabel_ct_lungs failed on this partial stack ({e}); using the HU threshold")
    if args.targets == "consensus":
        from medseg.detect.lidc import consensus_label_map, match_nodules
        from medseg.io.lidc import read_lidc_xml

        xml = next(args.data.glob("*.xml"))
        matched = match_nodules(read_lidc_xml(xml), ct)
        nodule = consensus_label_map(matched, ct, level=0.5, min_readers=1).array > 0
        print(f"consensus outlines of {sum(m.n_outlined >= 1 for m in matched)} outlined nodule(s) from {xml.name}")
    else:
        nodule = nodule_mask(ct, anns).array > 0
    print(f"lung from {how}; nodule sphere {nodule.sum() * ct.voxel_volume / 1000:.2f} ml on "
          f"{int(nodule.any(axis=(1, 2)).sum())} of {ct.shape[0]} slices, {np.mean(lung[nodule]):.1%} inside the lung mask")
    labels = np.where(lung, 1, 0).astype(np.uint8)
    labels[nodule] = 2

    # 2. NIfTIs + manifest
    image_path = write_image(ct, args.out / "ct.nii.gz")
    label_path = write_image(ct.with_array(labels, kind="label"), args.out / "label.nii.gz")
    manifest = write_manifest([ManifestEntry(image_path.resolve(), label_path.resolve(), "train", "LIDC-IDRI-0001")],
                              args.out / "manifest.csv")
    print(f"wrote {image_path}, {label_path}, {manifest}")

    # 3. brief training (16 slices = 16 samples an epoch)
    steps_per_epoch = max(1, 16 // args.batch_size)
    epochs = -(-args.steps // steps_per_epoch)
    if args.run.exists():  # a fresh run every time, but only ever delete an earlier training run folder
        if not (args.run / "config.yaml").is_file():
            raise SystemExit(f"{args.run} exists and is not a medseg run folder; pass another --run")
        shutil.rmtree(args.run)
    cfg = load_config(args.config, [
        f"data.manifest={manifest}", f"data.spacing_mm={args.spacing}",
        f"data.image_size=[{args.image_size},{args.image_size}]", f"data.batch_size={args.batch_size}",
        "data.num_workers=0", "data.slices_per_volume=0", "train.amp=bf16", "train.device=cpu",
        f"train.epochs={epochs}", f"train.max_steps={args.steps}", "train.early_stop_patience=0",
        "train.monitor=train_loss", "train.progress=false", f"train.out_dir={args.run}", "infer.device=cpu",
        *args.overrides,
    ])
    print(f"training: {cfg.model.encoder} from {cfg.model.encoder_weights} weights, {args.steps} steps of "
          f"{args.batch_size} x {args.image_size}^2 px at {args.spacing} mm, foreground_labels {cfg.data.foreground_labels} "
          f"at {cfg.data.foreground_fraction}, loss {cfg.train.loss}, amp {cfg.train.amp}")
    t0 = time.perf_counter()
    run = medseg.train(cfg)
    t_train = time.perf_counter() - t0
    losses = [r["train_loss"] for r in run.history]
    k = max(1, len(losses) // 10)
    print(f"trained {run.steps} steps ({run.epochs} epochs) in {t_train:.0f} s ({t_train / max(run.steps, 1):.2f} s/step); "
          f"train loss first {np.mean(losses[:k]):.3f} -> last {np.mean(losses[-k:]):.3f} (mean of {k} epochs)")

    # 4. detection on the same series + LUNA16 evaluation
    assert run.last_checkpoint is not None
    predictor = Predictor.from_checkpoint(run.last_checkpoint, device="cpu")
    t0 = time.perf_counter()
    result = detect_nodules(ct, predictor, threshold=args.threshold)
    t_detect = time.perf_counter() - t0
    files = write_nodule_outputs(result, ct, args.run / "detection")
    pred = result.prediction.labels.array
    print(f"detection in {t_detect:.1f} s; outputs: {', '.join(str(p) for p in files.values())}")
    print(f"segmentation vs training labels: lung Dice {dice(pred == 1, labels == 1):.3f}, "
          f"nodule Dice {dice(result.nodule_components.array > 0, nodule):.3f}")

    (a,) = anns
    centre = np.asarray(a.center)
    print("\nON THE TRAINING SCAN (one scan only: a pipeline smoke test, not a generalisation result)")
    print(f"LUNA16 nodule: centre ({a.center[0]:.1f}, {a.center[1]:.1f}, {a.center[2]:.1f}) mm, diameter {a.diameter_mm:.1f} mm")
    print(f"{'#':>3} {'x mm':>8} {'y mm':>8} {'z mm':>8} {'diam mm':>8} {'score':>7} {'dist mm':>8} hit")
    hits = []
    for i, d in enumerate(result.detections, start=1):
        dist = float(np.linalg.norm(np.asarray(d.center) - centre))
        hit = dist < a.radius_mm
        if hit:
            hits.append(dist)
        print(f"{i:>3} {d.center[0]:8.1f} {d.center[1]:8.1f} {d.center[2]:8.1f} {d.diameter_mm:8.1f} {d.score:7.3f} "
              f"{dist:8.1f} {'yes' if hit else 'no'}")
    if not result.detections:
        print("    (no detection)")
    print(f"best hit: {hits[0]:.1f} mm from the LUNA16 centre" if hits else "best hit: none")
    froc = evaluate_detection(files["csv"], args.data / "luna16_annotations.csv", n_bootstrap=0)
    print(f"\nFROC: {froc.n_scans} scan, {froc.n_nodules} nodule, {froc.n_detected} detected, "
          f"{froc.n_false_positives} false positives")
    print(f"{'FPs/scan':>9} {'sensitivity':>11}")
    for fp, s in zip(froc.fps_per_scan, froc.sensitivity, strict=True):
        print(f"{fp:>9g} {s:11.3f}")
    print(f"{'CPM':>9} {froc.cpm:11.3f}")
    print(f"\ntotal wall time {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()
