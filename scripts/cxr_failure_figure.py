"""Picture of the worst validation films of each shipped chest X-ray model on its own protocol.

    python scripts/cxr_failure_figure.py --model cxr_lung=medseg/weights/cxr_lung:gb \
        --model cxr_lung_v7=medseg/weights/cxr_lung_v7:v7 [--n 2] [--out docs/img/cxr_failure_modes.png]

For each model, every validation image of the protocol's manifest (``data_prepared/cxr_lung/<protocol>.csv``,
``split == val``) is predicted with the shipped pipeline (``Predictor.predict``); the ``--n`` films with
the lowest mean Dice of the two lungs are drawn: the film, the reference lungs (green) and the model's
right (orange) and left (red) lung, with the Dice and below-diaphragm leak in the title.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from medseg.data.manifest import read_manifest
from medseg.infer import Predictor
from medseg.io import read_image
from medseg.metrics import dice

HERE = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", required=True, help="NAME=CHECKPOINT_DIR:PROTOCOL")
    ap.add_argument("--n", type=int, default=2)
    ap.add_argument("--out", type=Path, default=HERE / "docs" / "img" / "cxr_failure_modes.png")
    args = ap.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from eval_cxr_protocols import leak_px

    panels = []
    for spec in args.model:
        name, rest = spec.split("=", 1)
        ckpt, protocol = rest.rsplit(":", 1)
        predictor = Predictor.from_checkpoint(Path(ckpt), task="cxr", device="cpu")
        scored = []
        for e in read_manifest(HERE / "data_prepared" / "cxr_lung" / f"{protocol}.csv"):
            if e.split != "val" or e.label is None:
                continue
            image = read_image(e.image)
            ref = np.asarray(read_image(e.label, kind="label").array)
            lab = np.asarray(predictor.predict(image).labels.array)
            d = (dice(lab == 1, ref == 1), dice(lab == 2, ref == 2))
            below, total = leak_px(lab, ref)
            scored.append((float(np.mean(d)), e.image, image, ref, lab, d, 100.0 * below / max(total, 1)))
        scored.sort(key=lambda t: t[0])
        panels += [(name, protocol, *t[1:]) for t in scored[: args.n]]
        print(f"{name} on {protocol}: worst " + ", ".join(f"{t[1].stem} {t[0]:.3f}" for t in scored[: args.n]))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.6))
    for ax, (name, protocol, path, image, ref, lab, d, leak) in zip(np.atleast_1d(axes), panels, strict=True):
        arr = np.asarray(image.array, dtype=np.float32)
        step = max(1, max(arr.shape) // 800)
        ax.imshow(arr[::step, ::step], cmap="gray")
        ax.contour((ref[::step, ::step] > 0).astype(float), [0.5], colors="lime", linewidths=1.2)
        for v, colour in ((1, "orange"), (2, "red")):
            ax.contour((lab[::step, ::step] == v).astype(float), [0.5], colors=colour, linewidths=1.0)
        ax.set_title(f"{name} on {protocol.upper()}: {path.stem[:28]}\nDice R {d[0]:.3f} L {d[1]:.3f}, leak {leak:.1f} %",
                     fontsize=8)
        ax.axis("off")
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=90)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
