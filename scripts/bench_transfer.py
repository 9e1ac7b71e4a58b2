"""Transfer learning on the real chest X-rays: ImageNet-initialised encoder vs random initialisation.

    python scripts/bench_transfer.py [--data ../shared/data/cxr_lung_covid19_gb] [--size 128]
                                     [--epochs 10] [--batch 4] [--seeds 0] [--out /tmp/medseg_bench_transfer]

Same data, split (by patient, ``split_seed`` 0: 18 training / 7 validation images of the 25), budget
(epochs x steps), augmentation and schedule for every variant; only the encoder initialisation (and,
as noted, the encoder learning-rate multiplier) differ. Validation Dice/HD95 are computed by
``medseg.train`` on the validation images' original grids (inference contract), after the last epoch.
Prints a markdown table (mean over seeds; per-seed values in brackets).
"""

from __future__ import annotations

import argparse
import logging
import platform
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from medseg.config import config_from_dict
from medseg.training import train

VARIANTS: dict[str, dict[str, Any]] = {
    "ImageNet, encoder lr x0.1": {"encoder_weights": "imagenet", "encoder_lr_mult": 0.1},
    "ImageNet, encoder lr x1": {"encoder_weights": "imagenet", "encoder_lr_mult": 1.0},
    "random init, encoder lr x1": {"encoder_weights": "none", "encoder_lr_mult": 1.0},
}


def run(name: str, variant: dict[str, Any], seed: int, args: argparse.Namespace) -> dict[str, float]:
    out = Path(args.out) / f"{name.split(',')[0].replace(' ', '_')}-{variant['encoder_lr_mult']}-s{seed}"
    shutil.rmtree(out, ignore_errors=True)
    cfg = config_from_dict({
        "name": "bench_transfer",
        "model": {"encoder_weights": variant["encoder_weights"]},
        "data": {"manifest": str(args.data), "image_size": [args.size, args.size], "batch_size": args.batch,
                 "val_fraction": 0.2, "split_seed": 0, "cache": "disk", "cache_dir": str(Path(args.out) / "cache")},
        "optim": {"lr": args.lr, "encoder_lr_mult": variant["encoder_lr_mult"], "warmup_epochs": 1},
        "train": {"epochs": args.epochs, "val_every": args.epochs, "seed": seed, "out_dir": str(out),
                  "progress": False, "amp": args.amp, "device": args.device},
    }).validate()
    t0 = time.perf_counter()
    result = train(cfg)
    seconds = time.perf_counter() - t0
    last = result.history[-1]
    return {"dice": last["dice"], "dice_right_lung": last["dice_right_lung"],
            "dice_left_lung": last["dice_left_lung"], "hd95": last["hd95"], "train_loss": last["train_loss"],
            "seconds": seconds, "steps": float(result.steps)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
                    / "cxr_lung_covid19_gb")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--amp", default="none")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--out", default="/tmp/medseg_bench_transfer")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    rows = {}
    for name in args.variants:
        rows[name] = [run(name, VARIANTS[name], s, args) for s in args.seeds]
        print(f"done: {name}: " + ", ".join(f"dice {r['dice']:.3f} ({r['seconds']:.0f} s)" for r in rows[name]),
              flush=True)

    def cell(name: str, key: str, fmt: str = "{:.3f}") -> str:
        vals = [r[key] for r in rows[name]]
        text = fmt.format(statistics.mean(vals))
        return text + (" [" + ", ".join(fmt.format(v) for v in vals) + "]" if len(vals) > 1 else "")

    print()
    print(f"CXR lungs, {args.size}x{args.size}, {args.epochs} epochs x {int(rows[args.variants[0]][0]['steps']) // args.epochs}"
          f" steps of {args.batch}, lr {args.lr:g}, amp {args.amp}, seeds {args.seeds}; torch {torch.__version__}, "
          f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads")
    print()
    print("| encoder init | val Dice (mean) | Dice right lung | Dice left lung | HD95 (px) | final train loss | time (s) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in args.variants:
        print(f"| {name} | {cell(name, 'dice')} | {cell(name, 'dice_right_lung')} | {cell(name, 'dice_left_lung')} | "
              f"{cell(name, 'hd95', '{:.1f}')} | {cell(name, 'train_loss')} | {cell(name, 'seconds', '{:.0f}')} |")


if __name__ == "__main__":
    main()
