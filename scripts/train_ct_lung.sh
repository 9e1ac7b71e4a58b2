#!/usr/bin/env bash
# 2-fold cross-validation over the two NSCLC planning CTs, then a model trained on both, for the
# 1.5 mm recipe (configs/ct_lung_15mm.yaml; faster inference, not the shipped ct_lung - see
# docs/benchmarks.md). Pass --set overrides, e.g. to try another grid. Sequential: one CPU/GPU job.
#   bash scripts/train_ct_lung.sh [extra --set overrides...]
set -euo pipefail
cd "$(dirname "$0")/.."
cfg=configs/ct_lung_15mm.yaml
for val in LUNG1-003 LUNG1-002; do
  medseg train "$cfg" --set "data.manifest=data_prepared/ct_lung/fold_val_${val}.csv" \
    --set "train.out_dir=runs/ct_lung_15_val_${val}" "$@"
done
medseg train "$cfg" --set train.out_dir=runs/ct_lung_15_all "$@"
# evaluate each fold on its held-out CT (Dice, volume bias, HD95 against the RTSTRUCT contours):
python scripts/eval_ct_folds.py --fold LUNG1-003=runs/ct_lung_15_val_LUNG1-003/checkpoints/best \
  --fold LUNG1-002=runs/ct_lung_15_val_LUNG1-002/checkpoints/best
