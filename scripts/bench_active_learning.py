"""Simulated active learning on the real chest X-rays: uncertainty-picked vs random cases, equal budget.

    python scripts/bench_active_learning.py [--data ../shared/data/cxr_lung_covid19_gb] [--start 4]
        [--step 4] [--rounds 3] [--seeds 0 1] [--size 128] [--epochs 15] [--out /tmp/medseg_al]
        [--plot docs/al_curve.png]

The 25 images are split by patient (``split_seed`` 0, as ``configs/cxr_lung.yaml``): the validation
images stay fixed, the training images form the unlabelled pool whose masks are "revealed" when a
case is picked. Each seed starts from the same random ``--start`` cases for both strategies; every
round trains a fresh model from the ImageNet encoder on the labelled cases (same budget of epochs),
reports validation Dice on the original grids, then adds ``--step`` cases:

* ``uncertainty``: :func:`medseg.labelling.select_cases` with the round's model (flip-TTA
  disagreement + foreground entropy, diversity 0.3 over 16x16 probability thumbnails);
* ``random``: a seeded random draw from the pool.

Prints a table (mean validation Dice per labelled-set size and strategy, per-seed values in
brackets) and writes the learning curves to ``--plot``.
"""

from __future__ import annotations

import argparse
import logging
import platform
import random
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

from medseg.config import config_from_dict
from medseg.data.manifest import ManifestEntry, load_entries, split_entries, write_manifest
from medseg.labelling import select_cases
from medseg.training import train


def _train_round(labelled: list[ManifestEntry], val: list[ManifestEntry], out: Path, seed: int,
                 args: argparse.Namespace) -> tuple[float, Path]:
    shutil.rmtree(out, ignore_errors=True)
    manifest = write_manifest(
        [ManifestEntry(e.image, e.label, "train", e.patient_id) for e in labelled]
        + [ManifestEntry(e.image, e.label, "val", e.patient_id) for e in val],
        out.parent / f"{out.name}_manifest.csv",
    )
    cfg = config_from_dict({
        "name": "bench_al",
        "data": {"manifest": str(manifest), "image_size": [args.size, args.size], "batch_size": 4, "cache": "disk",
                 "cache_dir": str(Path(args.out) / "cache")},
        "optim": {"warmup_epochs": 1},
        "train": {"epochs": args.epochs, "val_every": args.epochs, "seed": seed, "out_dir": str(out),
                  "progress": False, "amp": "bf16", "device": "cpu", "save_every_steps": 0},
        "infer": {"batch_size": 4},
    }).validate()
    result = train(cfg)
    assert result.last_checkpoint is not None
    return float(result.history[-1]["dice"]), result.last_checkpoint


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    here = Path(__file__).resolve().parents[1]
    ap.add_argument("--data", type=Path, default=here / ".." / "shared" / "data" / "cxr_lung_covid19_gb")
    ap.add_argument("--start", type=int, default=4)
    ap.add_argument("--step", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--diversity", type=float, default=0.3)
    ap.add_argument("--out", type=Path, default=Path("/tmp/medseg_al"))
    ap.add_argument("--plot", type=Path, default=here / "docs" / "img" / "al_curve.png")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    data_cfg = config_from_dict({"data": {"manifest": str(args.data), "val_fraction": 0.2, "split_seed": 0}}).data
    entries = split_entries(load_entries(data_cfg), 0.2, 0)
    pool_all = [e for e in entries if e.split == "train"]
    val = [e for e in entries if e.split == "val"]
    curves: dict[str, dict[int, list[float]]] = {"uncertainty": {}, "random": {}}
    t0 = time.perf_counter()
    for seed in args.seeds:
        start = random.Random(seed).sample(pool_all, args.start)
        for strategy in curves:
            labelled = list(start)
            rng = random.Random(1000 + seed)
            for r in range(args.rounds):
                dice, ckpt = _train_round(labelled, val, args.out / f"s{seed}_{strategy}_r{r}", seed, args)
                curves[strategy].setdefault(len(labelled), []).append(dice)
                print(f"seed {seed} {strategy:11s} labelled {len(labelled):2d}: val Dice {dice:.3f}", flush=True)
                pool = [e for e in pool_all if e not in labelled]
                if r == args.rounds - 1 or not pool:
                    break
                if strategy == "random":
                    picks = rng.sample(pool, min(args.step, len(pool)))
                else:
                    sel = select_cases([e.image for e in pool], args.step, checkpoint=ckpt, diversity=args.diversity,
                                       seed=seed)
                    chosen = {Path(s["input"]).resolve() for s in sel.selected}
                    picks = [e for e in pool if Path(e.image).resolve() in chosen]
                labelled += picks
    minutes = (time.perf_counter() - t0) / 60
    sizes = sorted(curves["random"])
    print(f"\nActive learning on {len(pool_all)} pool / {len(val)} validation CXRs, {args.size}px, {args.epochs} "
          f"epochs per round, seeds {args.seeds}; {platform.processor() or platform.machine()}, {minutes:.1f} min")
    print("\n| labelled cases | random: val Dice | uncertainty: val Dice |\n|---:|---|---|")
    for n in sizes:
        cells = []
        for s in ("random", "uncertainty"):
            v: list[Any] = curves[s].get(n, [])
            cells.append(f"{statistics.mean(v):.3f} ({', '.join(f'{x:.3f}' for x in v)})" if v else "")
        print(f"| {n} | {cells[0]} | {cells[1]} |")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120)
    for s, colour in (("random", "tab:grey"), ("uncertainty", "tab:red")):
        xs = sorted(curves[s])
        ax.plot(xs, [statistics.mean(curves[s][n]) for n in xs], "o-", color=colour, label=s)
        for n in xs:
            ax.scatter([n] * len(curves[s][n]), curves[s][n], color=colour, s=8, alpha=0.4)
    ax.set_xlabel("labelled training cases")
    ax.set_ylabel("validation Dice (mean of lungs)")
    ax.set_title("Active learning on real CXRs")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    args.plot.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.plot)
    print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
