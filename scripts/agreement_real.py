"""Inter-reader agreement on real double annotation, and the shipped model against each reader.

    python scripts/agreement_real.py [--data ../shared/data/cxr_lung_covid19_gb] \
        [--out runs/agreement_real] [--picture docs/img/agreement_real.png] [--no-model]

Readers: **A** = the set's own masks (``masks/X_lungs.png``, radiologists' polygons, lungs stop at
the cardiac border), **B** = the V7 Darwin masks of the same images (``second_reader_v7/``, a
protocol that includes the lung behind the heart). **M** = the shipped chest X-ray model
(``Predictor.from_checkpoint(task="cxr")``, default post-processing).

Per image and lung (1 right, 2 left), from :func:`medseg.labelling.agreement` (pairs A-B, A-M,
B-M): Dice, HD95 and signed size difference (rater - reference, % of reference). These PNG/JPEG
images carry no pixel spacing, so distances are in **pixels** (the script says so; with DICOM input
they would be mm). "Which reader includes what": the pixels only B marks (B \\ A) and only A marks
(A \\ B), as % of A's lung, split by where they lie relative to A's lung on the same image row:
*medial* (between A's lung and the midline: behind the heart / mediastinum), *lateral*, and
*cranio-caudal* (rows A's lung does not reach: apex, costophrenic angles / below the diaphragm).

Writes ``OUT/agreement_per_image.csv``, ``OUT/summary.md`` (the markdown tables of
docs/labelling.md) and the picture (A-only red, B-only blue, both green; model outline yellow).
"""

from __future__ import annotations

import argparse
import csv
import statistics
from pathlib import Path

import numpy as np

from medseg.image import Image
from medseg.io import read_image
from medseg.labelling import agreement

LUNGS = {1: "right lung", 2: "left lung"}


def _where(extra: np.ndarray, ref: np.ndarray, medial_sign: int) -> dict[str, int]:
    """Split ``extra`` pixels by where they lie relative to the reference lung ``ref``.

    Rows ``ref`` does not reach are ``beyond`` (apex / below the diaphragm). On the other rows a
    pixel is medial when it lies on the midline side of the row's centre of ``ref``
    (``medial_sign`` = +1: midline at larger columns), else lateral; medial pixels in the lowest
    third of ``ref``'s rows are ``lower_medial`` (the cardiophrenic region, behind the heart).
    """
    ys, xs = np.nonzero(extra)
    covered = ref.any(axis=1)
    width = ref.shape[1]
    lo = np.where(covered, ref.argmax(axis=1), 0)
    hi = np.where(covered, width - 1 - ref[:, ::-1].argmax(axis=1), 0)
    centre = (lo + hi) / 2.0
    rows = np.flatnonzero(covered)
    low_start = rows[0] + 2.0 * (rows[-1] - rows[0]) / 3.0 if len(rows) else 0.0
    on_row = covered[ys]
    medial = on_row & ((xs - centre[ys]) * medial_sign > 0)
    lower = ys >= low_start
    return {"lower_medial": int((medial & lower).sum()), "upper_medial": int((medial & ~lower).sum()),
            "lateral": int((on_row & ~medial).sum()), "beyond": int((~on_row).sum())}


def _medial_sign(a: np.ndarray, v: int) -> int:
    """+1 if the midline lies at larger column than lung ``v`` of mask ``a``, else -1."""
    xs_v = np.nonzero(a == v)[1]
    xs_all = np.nonzero(a > 0)[1]
    if not len(xs_v) or not len(xs_all):
        return 1
    midline = (np.nonzero(a == 1)[1].mean() + np.nonzero(a == 2)[1].mean()) / 2.0 if (a == 2).any() and (a == 1).any() \
        else xs_all.mean()
    return 1 if midline > xs_v.mean() else -1


def _model_splits(data: Path) -> dict[Path, str]:
    """image -> "train"/"val": the shipped model's split of this folder (its config's seed and fraction)."""
    import json

    from medseg.data.manifest import build_manifest, split_entries
    from medseg.infer.predictor import shipped_checkpoint

    cfg = json.loads((shipped_checkpoint("cxr") / "config.json").read_text())["config"]["data"]
    entries = split_entries(build_manifest(data), cfg["val_fraction"], cfg["split_seed"])
    return {e.image.resolve(): str(e.split) for e in entries}


def _label(arr: np.ndarray, like: Image) -> Image:
    return Image(arr.astype(np.uint8), like.affine, "label", like.modality)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
                    / "cxr_lung_covid19_gb")
    ap.add_argument("--out", type=Path, default=Path("runs/agreement_real"))
    ap.add_argument("--picture", type=Path, default=Path("docs/img/agreement_real.png"))
    ap.add_argument("--no-model", action="store_true", help="readers only (no inference)")
    args = ap.parse_args()

    second = sorted((args.data / "second_reader_v7").glob("*_lungs.png"))
    splits = _model_splits(args.data)
    predictor = None
    if not args.no_model:
        from medseg.infer.predictor import Predictor

        predictor = Predictor.from_checkpoint(task="cxr", device="cpu")
    rows: list[dict[str, object]] = []
    pictures = []
    unit = "px"
    for b_path in second:
        stem = b_path.name[: -len("_lungs.png")]
        image_path = next(p for p in (args.data / "images").glob(stem + ".*"))
        a = read_image(args.data / "masks" / b_path.name, kind="label")
        b = read_image(b_path, kind="label")
        image = read_image(image_path)
        raters = {"A": a, "B": b}
        if predictor is not None:
            pred = predictor.predict(image).labels
            raters["M"] = _label(np.asarray(pred.array), a)
        for ref, rat in (("A", "B"), ("A", "M"), ("B", "M")):
            if rat not in raters:
                continue
            rep = agreement([raters[ref], raters[rat]], labels=LUNGS, names=[ref, rat])
            unit = rep.distance_unit if hasattr(rep, "distance_unit") else unit
            for r in rep.rows:
                row: dict[str, object] = {"image": stem, "pair": f"{ref}-{rat}", "lung": r.structure,
                                          "dice": r.dice, "hd95": r.hd95, "size_ref": r.size_reference,
                                          "size_rater": r.size_rater, "size_diff_pct": r.size_diff_pct,
                                          "hd95_pct_width": 100.0 * r.hd95 / a.shape[1],
                                          "model_split": splits.get(image_path.resolve(), "not used")}
                if (ref, rat) == ("A", "B"):
                    av, bv = np.asarray(a.array) == r.label, np.asarray(b.array) == r.label
                    sign = _medial_sign(np.asarray(a.array), r.label)
                    n_a = max(int(av.sum()), 1)
                    for who, extra in (("B_only", bv & ~av), ("A_only", av & ~bv)):
                        where = _where(extra, av, sign)
                        row[f"{who}_pct"] = 100.0 * extra.sum() / n_a
                        for k, n in where.items():
                            row[f"{who}_{k}_pct"] = 100.0 * n / n_a
                rows.append(row)
        pictures.append((stem, np.asarray(image.array), np.asarray(a.array), np.asarray(b.array),
                         np.asarray(raters["M"].array) if "M" in raters else None))
        print(f"{stem}: done", flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    keys = sorted({k for r in rows for k in r}, key=lambda k: list(rows[0]).index(k) if k in rows[0] else 99)
    with (args.out / "agreement_per_image.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    md = _summary(rows, unit, len(second))
    (args.out / "summary.md").write_text(md)
    print(md)
    _picture(pictures, args.picture)
    print(f"wrote {args.out} and {args.picture}")


def _ms(values: list[float], digits: int) -> str:
    vals = [v for v in values if v == v]
    if not vals:
        return "-"
    sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return f"{statistics.mean(vals):.{digits}f} ± {sd:.{digits}f}"


def _summary(rows: list[dict[str, object]], unit: str, n: int) -> str:
    out = [f"{n} images, mean ± SD over images. HD95 in {unit} (no pixel spacing in these pictures) and in % of "
           "the image width. M rows: *val* = images of the shipped model's held-out patients, *train* = images it "
           "was trained on (in-sample, optimistic).", "",
           "| pair | images | lung | Dice | HD95 (px) | HD95 (% width) | size diff (rater − ref, % of ref) |",
           "|---|---|---|---|---|---|---|"]
    for pair in ("A-B", "A-M", "B-M"):
        groups = [("all", None)] if pair == "A-B" else [("val", "val"), ("train", "train")]
        for gname, split in groups:
            for lung in LUNGS.values():
                sel = [r for r in rows if r["pair"] == pair and r["lung"] == lung
                       and (split is None or r["model_split"] == split)]
                if sel:
                    out.append(f"| {pair} | {gname} ({len(sel)}) | {lung} | {_ms([float(r['dice']) for r in sel], 3)} | "
                               f"{_ms([float(r['hd95']) for r in sel], 1)} | "
                               f"{_ms([float(r['hd95_pct_width']) for r in sel], 1)} | "
                               f"{_ms([float(r['size_diff_pct']) for r in sel], 1)} |")
    out += ["", "Which reader includes what (A = this set, B = V7): pixels only one reader marks, in % of A's lung "
            "area, mean over images, by where they lie relative to A's lung (lower medial = medial half of the "
            "lowest third of A's rows: cardiophrenic region / behind the heart; beyond = rows A does not reach):", "",
            "| lung | only B | lower medial | upper medial | lateral | beyond | only A | lower medial | upper medial "
            "| lateral | beyond |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for lung in LUNGS.values():
        sel = [r for r in rows if r["pair"] == "A-B" and r["lung"] == lung]
        cells = []
        for who in ("B_only", "A_only"):
            for k in ("", "_lower_medial", "_upper_medial", "_lateral", "_beyond"):
                cells.append(f"{statistics.mean(float(r[f'{who}{k}_pct']) for r in sel):.1f}")
        out.append(f"| {lung} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def _picture(pictures: list, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from skimage.measure import find_contours

    k = min(8, len(pictures))
    cols = 4
    nrows = (k + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(3.3 * cols, 3.4 * nrows))
    for ax in np.atleast_1d(axes).ravel()[k:]:
        ax.axis("off")
    for ax, (stem, img, a, b, m) in zip(np.atleast_1d(axes).ravel(), pictures[:k], strict=False):
        g = img.astype(np.float32)
        g = (g - g.min()) / max(float(g.max() - g.min()), 1e-6)
        rgb = np.stack([g] * 3, -1) * 0.8
        la, lb = a > 0, b > 0
        for mask, colour in ((la & lb, (0.1, 0.8, 0.1)), (la & ~lb, (0.95, 0.1, 0.1)), (lb & ~la, (0.2, 0.4, 1.0))):
            rgb[mask] = 0.45 * rgb[mask] + 0.55 * np.asarray(colour)
        ax.imshow(rgb)
        if m is not None:
            for c in find_contours((m > 0).astype(float), 0.5):
                ax.plot(c[:, 1], c[:, 0], color="yellow", lw=0.8)
        ax.set_title(stem[:28], fontsize=7)
        ax.axis("off")
    fig.suptitle("green: both readers; red: only A (this set); blue: only B (V7 protocol); yellow: model outline",
                 fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
