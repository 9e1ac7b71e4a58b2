"""A real (reduced) active-learning curve: adapt the shipped chest X-ray model to the V7 protocol.

    python scripts/al_curve_v7.py [--data ../shared/data/cxr_lung_v7_covid] [--k 4] [--max-labels 32]
        [--seeds 0 1 2 3 4] [--strategies uncertainty random] [--out runs/al_v7] [--plot docs/img/al_curve_v7.png]

Pool and validation: the 122 images of ``cxr_lung_v7_covid`` split by patient (``split_seed`` 0,
``val_fraction`` 0.2, as the project's configs), the validation patients fixed, the training images
the unlabelled pool whose V7 masks are revealed when picked. Start: the shipped ``cxr_lung`` model,
trained on the other protocol (General Blockchain masks, which stop at the cardiac border).

**Reduced, and why**: this runs on a shared 2-core CPU where one training step of the whole U-Net
takes 15-20 s, so only the **segmentation head** (the last 3x3 convolution, 435 parameters) is
adapted; the network body is frozen and its output features (and those of the left-right flipped
image, for flip TTA) are computed once per image and cached. Everything is on the model's 256 x 256
input grid (Dice there, no post-processing). Every round restarts from the shipped head and trains
it on all labelled images (Adam, lr 1e-2, 40 steps of 8 random 128 x 128 windows of the labelled
images, Dice + cross-entropy), so the rounds differ only in the labelled set. Strategies, k images
per round:

* ``uncertainty``: :func:`medseg.labelling.select_for_annotation` (diversity 0) on
  :func:`medseg.metrics.case_uncertainty` (foreground entropy + flip-TTA disagreement) of the
  round's model over the pool;
* ``diverse`` (``--strategies uncertainty diverse random``): the same with ``diversity=0.3`` over
  16x16 foreground-probability thumbnails;
* ``random``: a seeded random draw.

Reports mean validation Dice per labelled-set size with a 95 % t-interval over seeds, labels needed
to reach ``--target`` (default 0.95) per strategy (mean and 95 % bootstrap interval over seeds;
seeds that never reach it are counted as not reaching it) and plots the curves.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from medseg.data.manifest import build_manifest, split_entries
from medseg.data.preprocess import prepare_inputs, prepare_label
from medseg.infer.predictor import shipped_checkpoint
from medseg.io import read_image
from medseg.labelling import select_for_annotation
from medseg.metrics import case_uncertainty
from medseg.models.checkpoint import load_checkpoint

STRATEGIES: tuple[str, ...] = ("uncertainty", "random")


def _cache(data: Path, cache: Path) -> dict[str, np.ndarray]:
    """Body features (B, 16, 256, 256) of every image and of its mirror image, labels, split."""
    if cache.is_file():
        return dict(np.load(cache))
    loaded = load_checkpoint(shipped_checkpoint("cxr"))
    model, cfg = loaded.model.eval(), loaded.config
    entries = split_entries(build_manifest(data), 0.2, 0)
    feats, feats_flip, labels, is_val, names = [], [], [], [], []
    for i, e in enumerate(entries):
        image = read_image(e.image)
        prepared = prepare_inputs(image, cfg)
        x = prepared.tensor
        with torch.inference_mode():
            for src, out in ((x, feats), (torch.flip(x, dims=[-1]), feats_flip)):
                enc = model.encoder(src)
                out.append(model.decoder(enc, model.skip_connect)[0].to(torch.float16).numpy())
        labels.append(prepare_label(read_image(e.label, kind="label"), prepared)[0].numpy())
        is_val.append(e.split == "val")
        names.append(e.image.name)
        print(f"features {i + 1}/{len(entries)}", flush=True)
    out = {"feats": np.stack(feats), "feats_flip": np.stack(feats_flip), "labels": np.stack(labels),
           "is_val": np.asarray(is_val), "names": np.asarray(names)}
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, **out)
    return out


def _head() -> torch.nn.Conv2d:
    head = load_checkpoint(shipped_checkpoint("cxr")).model.segmentation_head[0]
    assert isinstance(head, torch.nn.Conv2d)
    return head


def _probs(head: torch.nn.Module, feats: np.ndarray, flip: bool = False) -> np.ndarray:
    out = []
    with torch.inference_mode():
        for i in range(0, len(feats), 16):
            p = torch.softmax(head(torch.from_numpy(feats[i: i + 16]).float()), dim=1)
            if flip:  # prediction of the mirror image, mirrored back: right and left lung swap
                p = torch.flip(p, dims=[-1])[:, [0, 2, 1]]
            out.append(p.numpy())
    return np.concatenate(out)


def _dice(probs: np.ndarray, labels: np.ndarray) -> float:
    pred = probs.argmax(1)
    scores = []
    for p, t in zip(pred, labels, strict=True):
        for v in (1, 2):
            a, b = p == v, t == v
            s = a.sum() + b.sum()
            scores.append(2.0 * (a & b).sum() / s if s else 1.0)
    return float(np.mean(scores))


def _train(base: torch.nn.Conv2d, feats: np.ndarray, labels: np.ndarray, seed: int, steps: int = 40,
           crop: int = 128) -> torch.nn.Conv2d:
    """Fine-tune a copy of ``base`` on random ``crop`` x ``crop`` windows of the labelled images.

    The head is a 3x3 convolution, so windows train the same per-pixel map as whole images at a
    quarter of the cost (the Dice term is then per batch of windows).
    """
    head = torch.nn.Conv2d(16, 3, 3, padding=1)
    head.load_state_dict(base.state_dict())
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)
    g = np.random.default_rng(seed)
    n, size = len(feats), feats.shape[-1]
    for _ in range(steps):
        idx = g.choice(n, size=min(8, n), replace=False)
        ys, xs = g.integers(0, size - crop + 1, size=(2, len(idx)))
        x = torch.from_numpy(np.stack([feats[i, :, y:y + crop, x_:x_ + crop] for i, y, x_ in zip(idx, ys, xs,
                                                                                                strict=True)])).float()
        y = torch.from_numpy(np.stack([labels[i, y:y + crop, x_:x_ + crop] for i, y, x_ in zip(idx, ys, xs,
                                                                                              strict=True)])).long()
        logits = head(x)
        p = torch.softmax(logits, 1)
        onehot = F.one_hot(y, 3).permute(0, 3, 1, 2).float()
        inter = (p * onehot).sum((0, 2, 3))
        dice = (2 * inter + 1) / (p.sum((0, 2, 3)) + onehot.sum((0, 2, 3)) + 1)
        loss = F.cross_entropy(logits, y) + (1 - dice[1:]).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return head.eval()


def _pick(strategy: str, head: torch.nn.Module, c: dict[str, np.ndarray], pool: list[int], k: int,
          rng: random.Random, seed: int) -> list[int]:
    if strategy == "random":
        return rng.sample(pool, k)
    p = _probs(head, c["feats"][pool])
    pf = _probs(head, c["feats_flip"][pool], flip=True)
    u = [case_uncertainty(p[i], pf[i])["uncertainty"] for i in range(len(pool))]
    feats = None
    diversity = 0.0
    if strategy == "diverse":
        t = torch.from_numpy(p[:, 1:].sum(1, keepdims=True))
        feats = F.adaptive_avg_pool2d(t, 16).reshape(len(pool), -1).numpy()
        diversity = 0.3
    chosen = select_for_annotation(u, k, features=feats, diversity=diversity, seed=seed)
    return [pool[i] for i in chosen]


def _t95(n: int) -> float:
    return {1: float("nan"), 2: 12.71, 3: 4.30, 4: 3.18, 5: 2.78, 6: 2.57, 7: 2.45, 8: 2.36, 9: 2.31, 10: 2.26}.get(n, 2.0)


def main() -> None:
    here = Path(__file__).resolve().parents[1]
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=here / ".." / "shared" / "data" / "cxr_lung_v7_covid")
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--max-labels", type=int, default=32)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--target", type=float, default=0.95)
    ap.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=["uncertainty", "diverse", "random"])
    ap.add_argument("--out", type=Path, default=Path("runs/al_v7"))
    ap.add_argument("--plot", type=Path, default=here / "docs" / "img" / "al_curve_v7.png")
    args = ap.parse_args()
    torch.set_num_threads(2)
    c = _cache(args.data, args.out / "features.npz")
    val = np.flatnonzero(c["is_val"])
    pool_all = [int(i) for i in np.flatnonzero(~c["is_val"])]
    base = _head()
    d0 = _dice(_probs(base, c["feats"][val]), c["labels"][val])
    print(f"pool {len(pool_all)}, val {len(val)}; shipped model on V7 val (256 grid): Dice {d0:.4f}", flush=True)
    sizes = list(range(args.k, args.max_labels + 1, args.k))
    curves: dict[str, dict[int, list[float]]] = {s: {0: [], **{n: [] for n in sizes}} for s in args.strategies}
    t0 = time.time()
    for seed in args.seeds:
        for strategy in args.strategies:
            rng = random.Random(seed)
            labelled: list[int] = []
            head: torch.nn.Module = base
            curves[strategy][0].append(d0)
            for n in sizes:
                pool = [i for i in pool_all if i not in labelled]
                labelled += _pick(strategy, head, c, pool, args.k, rng, seed)
                idx = np.asarray(labelled)
                head = _train(base, c["feats"][idx], c["labels"][idx], seed)
                d = _dice(_probs(head, c["feats"][val]), c["labels"][val])
                curves[strategy][n].append(d)
            print(f"seed {seed} {strategy:11s} " + " ".join(f"{curves[strategy][n][-1]:.3f}" for n in sizes)
                  + f"  ({time.time() - t0:.0f} s)", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "curves.json").write_text(json.dumps({s: {str(n): v for n, v in cv.items()} for s, cv in curves.items()}))
    print(_report(curves, [0, *sizes], args.target, len(args.seeds), len(pool_all), len(val)))
    _plot(curves, [0, *sizes], args.target, args.plot)


def _reach(values_by_n: dict[int, list[float]], sizes: list[int], target: float, s: int) -> float:
    for n in sizes:
        if values_by_n[n][s] >= target:
            return float(n)
    return math.inf


def _report(curves: dict[str, dict[int, list[float]]], sizes: list[int], target: float, n_seeds: int,
            n_pool: int, n_val: int) -> str:
    lines = [f"pool {n_pool} images, validation {n_val} images, {n_seeds} seeds; mean Dice ± 95 % t-interval", "",
             "| labelled | " + " | ".join(curves) + " |", "|---|" + "---|" * len(curves)]
    for n in sizes:
        cells = []
        for s in curves:
            v = curves[s][n]
            half = _t95(len(v)) * statistics.stdev(v) / math.sqrt(len(v)) if len(v) > 1 else 0.0
            cells.append(f"{statistics.mean(v):.4f} ± {half:.4f}")
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    lines += ["", f"labels needed to reach Dice {target} (per seed; inf = not reached):", ""]
    rng = np.random.default_rng(0)
    for s in curves:
        per_seed = [_reach(curves[s], sizes, target, i) for i in range(n_seeds)]
        finite = [v for v in per_seed if math.isfinite(v)]
        if len(finite) == n_seeds:
            boots = [float(np.mean(rng.choice(finite, n_seeds))) for _ in range(2000)]
            ci = f"95 % bootstrap [{np.percentile(boots, 2.5):.1f}, {np.percentile(boots, 97.5):.1f}]"
            lines.append(f"- {s}: mean {statistics.mean(finite):.1f} {ci}; per seed {per_seed}")
        else:
            lines.append(f"- {s}: reached by {len(finite)}/{n_seeds} seeds; per seed {per_seed}")
    return "\n".join(lines)


def _plot(curves: dict[str, dict[int, list[float]]], sizes: list[int], target: float, path: Path,
          title: str = "Adapting the shipped model's head to the V7 protocol") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for s, colour in zip(curves, ("tab:red", "tab:blue", "tab:purple"), strict=False):
        m = np.asarray([statistics.mean(curves[s][n]) for n in sizes])
        sd = np.asarray([statistics.stdev(curves[s][n]) if len(curves[s][n]) > 1 else 0.0 for n in sizes])
        half = sd * _t95(len(curves[s][sizes[0]])) / math.sqrt(len(curves[s][sizes[0]]))
        ax.plot(sizes, m, marker="o", ms=3, color=colour, label=s)
        ax.fill_between(sizes, m - half, m + half, color=colour, alpha=0.15)
    ax.axhline(target, color="grey", ls="--", lw=0.8)
    ax.set_xlabel("V7 images labelled")
    ax.set_ylabel("validation Dice (V7 protocol, 256 grid)")
    ax.set_title(title, fontsize=9)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
