"""A real active-learning curve with the whole network: adapt a chest X-ray model to the V7 protocol.

    python scripts/prepare_cxr_lung_manifests.py        # -> data_prepared/cxr_lung/v7.csv
    python scripts/al_curve_v7_full.py [--start runs/al_start/cxr_lung] [--k 8] [--max-labels 48] \
        [--seeds 0 1 2 3 4] [--steps 25] [--out runs/al_v7_full] [--plot docs/img/al_curve_v7_full.png]

Pool and validation: ``data_prepared/cxr_lung/v7.csv`` (split by patient, fixed): the pool is its
training images from ``cxr_lung_v7_covid`` (79 images, V7 masks revealed when picked), the validation
set its 45 validation images of 18 patients (never picked, never trained on). Start: ``--start``, the
``cxr_lung`` model trained only on the *other* protocol's 18 films (the weights shipped before issue
#14's retraining, kept under ``runs/al_start``; a model initialised from V7 labels would have seen the
pool). Every round labels ``k`` more images and continues training **the whole U-Net** from the
previous round's weights for ``--steps`` AdamW steps (``--lr`` 3e-4, encoder x0.1; batch-norm statistics
frozen unless ``--train-bn``) on batches of 8 random
128 x 128 windows of the labelled images (256 x 256 network grid), random left-right flip with the
lungs' labels swapped, Dice + cross-entropy (MONAI ``DiceCELoss``). Windows instead of whole images:
a 4x cheaper step on this 2-core CPU; the network is fully convolutional, evaluation is on whole
images. Strategies:

* ``uncertainty``: :func:`medseg.labelling.select_for_annotation` (diversity 0) on
  :func:`medseg.metrics.case_uncertainty` (foreground entropy + flip-TTA disagreement) of the round's
  model over the remaining pool;
* ``random``: a seeded random draw.

Validation Dice: raw argmax on the 256 x 256 grid (no post-processing), mean of both lungs per image,
then per patient, then over the 18 patients. Reports the mean curve with 95 % t-intervals over seeds,
labels needed to reach each ``--target`` Dice per strategy (bootstrap interval over seeds), and plots it.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from al_curve_v7 import _plot, _report  # same reporting as the reduced (head-only) curve

from medseg.data.manifest import read_manifest
from medseg.data.preprocess import prepare_inputs, prepare_label
from medseg.io import read_image
from medseg.labelling import select_for_annotation
from medseg.metrics import case_uncertainty
from medseg.models.checkpoint import load_checkpoint

HERE = Path(__file__).resolve().parents[1]


def _load(manifest: Path, cfg) -> dict:  # type: ignore[no-untyped-def]
    xs, ys, is_val, patient, names = [], [], [], [], []
    for e in read_manifest(manifest):
        if e.split != "val" and "cxr_lung_v7_covid" not in str(e.image):
            continue  # the pool is the V7 collection's own training films
        prepared = prepare_inputs(read_image(e.image), cfg)
        xs.append(prepared.tensor[0])
        ys.append(prepare_label(read_image(e.label, kind="label"), prepared)[0].long())
        is_val.append(e.split == "val")
        patient.append(str(e.patient))
        names.append(e.image.name)
    return {"x": torch.stack(xs), "y": torch.stack(ys), "is_val": np.asarray(is_val), "patient": patient,
            "names": names}


def _probs(model: torch.nn.Module, x: torch.Tensor, flip: bool = False) -> np.ndarray:
    model.eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(x), 16):
            b = x[i : i + 16]
            if flip:
                p = torch.softmax(model(torch.flip(b, dims=[-1])), 1)
                p = torch.flip(p, dims=[-1])[:, [0, 2, 1]]  # mirror back: right and left lung swap
            else:
                p = torch.softmax(model(b), 1)
            out.append(p.numpy())
    return np.concatenate(out)


def _dice_per_patient(probs: np.ndarray, labels: np.ndarray, patients: list[str]) -> float:
    pred = probs.argmax(1)
    by_patient: dict[str, list[float]] = defaultdict(list)
    for p, t, who in zip(pred, labels, patients, strict=True):
        scores = []
        for v in (1, 2):
            a, b = p == v, t == v
            s = a.sum() + b.sum()
            scores.append(2.0 * (a & b).sum() / s if s else 1.0)
        by_patient[who].append(float(np.mean(scores)))
    return float(np.mean([np.mean(v) for v in by_patient.values()]))


def _train(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, seed: int, crop: int = 128,
           lr: float = 3e-4, freeze_bn: bool = True) -> None:
    from monai.losses import DiceCELoss

    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    enc = [p for n, p in model.named_parameters() if n.startswith("encoder.")]
    rest = [p for n, p in model.named_parameters() if not n.startswith("encoder.")]
    opt = torch.optim.AdamW([{"params": enc, "lr": lr * 0.1}, {"params": rest, "lr": lr}], weight_decay=1e-4)
    g = np.random.default_rng(seed)
    n, size = len(x), x.shape[-1]
    # frozen batch-norm statistics (eval mode, weights still trained): a handful of labelled images in
    # 128-px windows give batch statistics unlike the whole films the model is evaluated on
    model.eval() if freeze_bn else model.train()
    for _ in range(steps):
        idx = g.choice(n, size=8, replace=n < 8)
        oy, ox = g.integers(0, size - crop + 1, size=(2, 8))
        xb = torch.stack([x[i, :, a : a + crop, b : b + crop] for i, a, b in zip(idx, oy, ox, strict=True)])
        yb = torch.stack([y[i, a : a + crop, b : b + crop] for i, a, b in zip(idx, oy, ox, strict=True)])
        flip = torch.from_numpy(g.random(8) < 0.5)
        xb[flip] = torch.flip(xb[flip], dims=[-1])
        swapped = torch.flip(yb[flip], dims=[-1])
        yb[flip] = torch.where(swapped == 1, 2, torch.where(swapped == 2, 1, swapped))
        loss = loss_fn(model(xb), yb[:, None])
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--manifest", type=Path, default=HERE / "data_prepared" / "cxr_lung" / "v7.csv")
    ap.add_argument("--start", type=Path, default=HERE / "runs" / "al_start" / "cxr_lung")
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--max-labels", type=int, default=48)
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--train-bn", action="store_true", help="update batch-norm statistics while fine-tuning")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--target", type=float, nargs="+", default=[0.95, 0.94])
    ap.add_argument("--strategies", nargs="+", default=["uncertainty", "random"], choices=["uncertainty", "random"])
    ap.add_argument("--out", type=Path, default=HERE / "runs" / "al_v7_full")
    ap.add_argument("--plot", type=Path, default=HERE / "docs" / "img" / "al_curve_v7_full.png")
    args = ap.parse_args()
    torch.set_num_threads(2)
    start = load_checkpoint(args.start)
    data = _load(args.manifest, start.config)
    val = np.flatnonzero(data["is_val"])
    pool_all = [int(i) for i in np.flatnonzero(~data["is_val"])]
    val_x, val_y = data["x"][val], data["y"][val].numpy()
    val_patients = [data["patient"][i] for i in val]
    state0 = {k: v.clone() for k, v in start.model.state_dict().items()}
    model = start.model
    d0 = _dice_per_patient(_probs(model, val_x), val_y, val_patients)
    print(f"pool {len(pool_all)}, val {len(val)} images / {len(set(val_patients))} patients; start model on V7 "
          f"val (256 grid): Dice {d0:.4f}", flush=True)
    sizes = list(range(args.k, args.max_labels + 1, args.k))
    curves: dict[str, dict[int, list[float]]] = {s: {0: [], **{n: [] for n in sizes}} for s in args.strategies}
    picks: dict[str, list[list[str]]] = {s: [] for s in args.strategies}
    t0 = time.time()
    for seed in args.seeds:
        for strategy in args.strategies:
            torch.manual_seed(seed)
            model.load_state_dict(state0)
            rng = random.Random(seed)
            labelled: list[int] = []
            curves[strategy][0].append(d0)
            for r, n in enumerate(sizes):
                pool = [i for i in pool_all if i not in labelled]
                if strategy == "random":
                    new = rng.sample(pool, args.k)
                else:
                    px = data["x"][pool]
                    p, pf = _probs(model, px), _probs(model, px, flip=True)
                    u = [case_uncertainty(p[i], pf[i])["uncertainty"] for i in range(len(pool))]
                    new = [pool[i] for i in select_for_annotation(u, args.k, seed=seed)]
                labelled += new
                idx = torch.as_tensor(labelled)
                _train(model, data["x"][idx], data["y"][idx], args.steps, seed * 1000 + r, lr=args.lr,
                       freeze_bn=not args.train_bn)
                curves[strategy][n].append(_dice_per_patient(_probs(model, val_x), val_y, val_patients))
            picks[strategy].append([data["names"][i] for i in labelled])
            print(f"seed {seed} {strategy:11s} " + " ".join(f"{curves[strategy][n][-1]:.3f}" for n in sizes)
                  + f"  ({time.time() - t0:.0f} s)", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "curves.json").write_text(json.dumps(
        {"curves": {s: {str(n): v for n, v in cv.items()} for s, cv in curves.items()}, "picks": picks,
         "args": {k: str(v) for k, v in vars(args).items()}}, indent=1))
    for target in args.target:
        print(_report(curves, [0, *sizes], target, len(args.seeds), len(pool_all), len(val)))
    for s in curves:
        print(f"{s}: mean Dice at {sizes[-1]} labels {statistics.mean(curves[s][sizes[-1]]):.4f}")
    _plot(curves, [0, *sizes], args.target[0], args.plot,
          title=f"Adapting the whole U-Net to the V7 protocol ({len(args.seeds)} seeds, 95 % CI)")


if __name__ == "__main__":
    main()
