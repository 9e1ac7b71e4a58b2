"""Post-processing of predicted label maps so the labels mean what they say.

Hand-written on scipy.ndimage (MONAI's ``KeepLargestConnectedComponent``/``FillHoles`` work on
tensors per class but know nothing about anatomy): keep the largest component of each lung, fill
holes, and make "left lung" lie on the patient's left (+x in LPS; for a radiograph shown PA, the
image's right-hand side unless the DICOM PatientOrientation says otherwise).

Radiographs also get an anatomy rule (``anatomy=True``, the default): **no lung in gas below the
diaphragm**. A network that has seen few films labels the gastric bubble / colon gas under the left
hemidiaphragm as lung, because it is as dark as aerated lung. In the image such a pocket is dark
air separated from the aerated lung above it by bright tissue (the diaphragm and the stomach wall):
inside the predicted lung, after smoothing, it is a dark component of its own lying directly below
the main aerated region. Those pockets, and the bright band above them, are removed column by
column (see :func:`remove_subdiaphragmatic_gas`).
"""

from __future__ import annotations

import logging

import numpy as np
from scipy import ndimage

from medseg.image import Image, label_boxes, patient_left_sign
from medseg.structures import LabelMap
from medseg.utils import percentiles

log = logging.getLogger(__name__)

__all__ = [
    "postprocess_labels",
    "lung_side_labels",
    "patient_left_sign",
    "summarise_labels",
    "remove_subdiaphragmatic_gas",
    "decision_shape",
    "refine_labels",
]


def lung_side_labels(label_names: LabelMap | dict[int, str]) -> tuple[int | None, int | None]:
    """The label values of the right and left lung, by any spelling (None when absent)."""
    return LabelMap.coerce(label_names).side_values("lung")


def _largest_components(mask: np.ndarray, n: int) -> list[np.ndarray]:
    lab, count = ndimage.label(mask)
    if count == 0:
        return []
    # component sizes in slabs: ndimage.sum_labels would make float64/int64 copies of the volume
    # (~1.2 GB for a 512x512x300 CT)
    flat = lab.reshape(-1)
    step = 1 << 22
    sizes = np.zeros(count + 1, np.int64)
    for i in range(0, flat.size, step):
        sizes += np.bincount(flat[i : i + step], minlength=count + 1)
    sizes = sizes[1:]
    order = np.argsort(sizes)[::-1][:n]
    return [lab == (i + 1) for i in order]


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """Holes filled (per axial slice for a volume: 3-D filling would also fill airways closed at
    both ends). Works inside the mask's bounding box only: background on the box's edge touches the
    background outside it, so the result is the same as on the whole grid, at a fraction of the cost."""
    out = mask.astype(bool, copy=True)
    box = label_boxes(out).get(1)
    if box is None:
        return out
    inner = out[box]
    if mask.ndim == 3:
        for k in range(inner.shape[0]):
            inner[k] = ndimage.binary_fill_holes(inner[k])
    else:
        inner[...] = ndimage.binary_fill_holes(inner)
    return out


def _grey(image: Image) -> np.ndarray:
    """The radiograph as float32 ``(y, x)``, scaled to [0, 1] between its 1st and 99th percentiles."""
    arr = np.asarray(image.array, dtype=np.float32)
    if arr.ndim == 3:  # (y, x, channels) picture
        arr = arr.mean(axis=-1)
    lo, hi = percentiles(arr[:: max(1, arr.shape[0] // 512), :: max(1, arr.shape[1] // 512)], (1.0, 99.0))
    return np.clip((arr - lo) / max(float(hi - lo), 1e-6), 0.0, 1.0)


def _feet_down(image: Image) -> bool:
    """False only when the DICOM PatientOrientation says the rows run towards the head (film upside down)."""
    if not image.source.datasets:
        return True
    value = getattr(image.source.datasets[0], "PatientOrientation", None)
    if not value or len(value) < 2 or not str(value[1]).strip():
        return True
    return str(value[1]).strip()[0].upper() != "H"


def remove_subdiaphragmatic_gas(
    mask: np.ndarray,
    other: np.ndarray,
    grey: np.ndarray,
    *,
    contrast: float = 0.6,
    gas: float = 0.6,
    base_level: float = 0.8,
    below_other: bool = True,
    margin: float = 0.05,
) -> np.ndarray:
    """Cut gas below the diaphragm out of one lung mask of a frontal radiograph.

    Args:
        mask: bool ``(y, x)``, one lung (rows run head -> feet).
        other: bool ``(y, x)``, the other lung (its extent gives the level of the diaphragm).
        grey: float ``(y, x)`` image in [0, 1], larger = denser (brighter on film).
        contrast: bright threshold between aerated lung (25th percentile inside ``mask``) and soft
            tissue (90th percentile of the lungs' bounding box outside the lungs), as a fraction.
        gas: the same kind of fraction: pixels below the bright band darker than this are gas.
        base_level: only rows below this fraction of the other lung's height (from its apex) are
            searched: the diaphragm lies at the level of the lung bases.
        below_other: cut only columns in which ``mask`` reaches below the other lung's lowest row
            by more than ``margin`` times the other lung's height (the left dome normally lies
            1-2 cm, about 5 % of the lung height, below the right one).

    Returns the cleaned mask (bool). Per column, below ``base_level``: where the smoothed image
    inside ``mask`` turns bright (above the threshold for at least 0.5 % of the image height: the
    diaphragm / stomach wall) **and** darker pixels of ``mask`` follow further down (gas: the
    stomach bubble or colon), everything of ``mask`` from the bright band down is removed. A base
    that stays bright to the bottom of the mask (dense basal opacity, effusion) has no gas below and
    is kept.
    """
    if mask.sum() < 100 or other.sum() < 100:
        return mask
    h = mask.shape[0]
    smooth = ndimage.gaussian_filter(grey, sigma=max(1.0, 0.004 * h))
    air = float(np.percentile(smooth[mask], 25))
    rows, cols = np.nonzero(mask | other)
    box = (slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1))
    outside = ~(mask | other)[box]
    if outside.sum() < 100:
        return mask
    tissue = float(np.percentile(smooth[box][outside], 90))
    if tissue - air < 0.1:  # no usable contrast (flat or inverted picture)
        return mask
    thr = air + contrast * (tissue - air)
    o_rows = np.flatnonzero(other.any(axis=1))
    level = int(o_rows[0] + base_level * (o_rows[-1] - o_rows[0]))
    run = max(2, int(round(0.005 * h)))
    search = np.zeros_like(mask)
    search[level:] = mask[level:]
    bright = ndimage.binary_opening(search & (smooth > thr), structure=np.ones((run, 1), bool))
    dark = search & (smooth <= air + gas * (tissue - air))
    row_idx = np.arange(h)[:, None]
    first_bright = np.where(bright, row_idx, h).min(axis=0)
    # darker mask pixels below the band (the band itself excluded): gas under the diaphragm
    below = dark & (row_idx >= first_bright[None, :] + run)
    gas_cols = below.sum(axis=0) >= run
    if below_other:
        # only columns where this lung reaches clearly below the other lung's lowest row: a normal
        # base ends near the other base, gas pockets below it
        bottom = np.where(mask, row_idx, -1).max(axis=0)
        gas_cols &= bottom > o_rows[-1] + margin * (o_rows[-1] - o_rows[0])
    out = mask.copy()
    cut = gas_cols[None, :] & (row_idx >= first_bright[None, :])
    out &= ~cut
    if cut.any():
        log.debug("cut %d px of gas below the diaphragm in %d columns", int((mask & cut).sum()), int(gas_cols.sum()))
    return out


def postprocess_labels(
    labels: np.ndarray,
    image: Image,
    label_names: LabelMap | dict[int, str],
    *,
    keep_largest: bool = True,
    fill_holes: bool = True,
    anatomy: bool = True,
) -> np.ndarray:
    """Clean an argmax label map on the image grid (same shape as ``image.array``).

    Lungs: the union of the lung labels is split into its two largest components (when the second
    is at least 5% of the first); each is named left/right by the side of the patient it lies on.
    When the lungs touch (one component), the model's own left/right voxels are kept. With
    ``anatomy`` (radiographs only: 2-D, rows running head -> feet) gas pockets below the diaphragm
    are removed from each lung (:func:`remove_subdiaphragmatic_gas`). Then each lung keeps its
    largest component and holes are filled. Other labels (e.g. nodules) are left as predicted.
    """
    out = labels.copy()
    structures = LabelMap.coerce(label_names)
    right, left = structures.side_values("lung")
    if right is not None and left is not None:
        union = (labels == right) | (labels == left)
        comps = _largest_components(union, 2)
        if len(comps) == 2 and comps[1].sum() >= 0.05 * comps[0].sum():
            axis_x = labels.ndim - 1  # x is the last array axis
            # mean x of each component from its per-x voxel counts (np.argwhere would allocate
            # 24 bytes per voxel: ~0.5 GB per lung of a 300-slice CT)
            xs = [c.sum(axis=tuple(a for a in range(c.ndim) if a != axis_x)) for c in comps]
            centres = [float(np.dot(np.arange(x.size), x) / x.sum()) for x in xs]
            sign = patient_left_sign(image)
            left_comp = int(np.argmax([sign * c for c in centres]))
            relabelled = np.where(union, out, 0)
            out[union] = 0
            for i, comp in enumerate(comps):
                out[comp] = left if i == left_comp else right
            # voxels of the union outside the two main components keep their predicted label
            rest = union & (out == 0)
            out[rest] = relabelled[rest]
    if anatomy and labels.ndim == 2 and right is not None and left is not None and _feet_down(image):
        grey = _grey(image)
        if grey.shape == labels.shape:
            for v, o in ((right, left), (left, right)):
                mask = out == v
                cleaned = remove_subdiaphragmatic_gas(mask, out == o, grey)
                out[mask & ~cleaned] = 0
    for v in structures.lung_values():
        mask = out == v
        if not mask.any():
            continue
        if keep_largest:
            comps = _largest_components(mask, 1)
            out[mask & ~comps[0]] = 0
            mask = comps[0]
        if fill_holes:
            filled = _fill_holes(mask)
            out[filled & (out == 0)] = v
    return out


def decision_shape(shape: tuple[int, int], max_px: int) -> tuple[int, int]:
    """The grid ``(y, x)`` on which a radiograph of ``shape`` is labelled: its longer side at most
    ``max_px`` (aspect kept); ``shape`` itself when it is small enough or ``max_px`` is 0."""
    longest = max(shape)
    if max_px <= 0 or longest <= max_px:
        return (int(shape[0]), int(shape[1]))
    return (max(1, round(shape[0] * max_px / longest)), max(1, round(shape[1] * max_px / longest)))


def _bilinear_at(probs: np.ndarray, size: tuple[int, int], ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """``probs`` ``(K, h, w)`` resized bilinearly to ``size`` (``align_corners=False``, no
    anti-aliasing: torch ``interpolate``), evaluated only at the output pixels ``(ys, xs)``:
    ``(K, n)``. Hand-written: torch/MONAI resize whole grids, here only a boundary band is needed."""
    _, h, w = probs.shape

    def taps(idx: np.ndarray, n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        src = np.maximum((idx + 0.5) * (n_in / n_out) - 0.5, 0.0)
        i0 = np.minimum(src.astype(np.int64), n_in - 1)
        i1 = np.minimum(i0 + 1, n_in - 1)
        return i0, i1, (src - i0).astype(np.float32)

    y0, y1, ly = taps(ys, h, size[0])
    x0, x1, lx = taps(xs, w, size[1])
    top = probs[:, y0, x0] * (1 - lx) + probs[:, y0, x1] * lx
    bottom = probs[:, y1, x0] * (1 - lx) + probs[:, y1, x1] * lx
    return np.asarray(top * (1 - ly) + bottom * ly, dtype=np.float32)


def refine_labels(decided: np.ndarray, probs: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Labels decided on a coarse grid -> the full grid ``size``, boundaries from the probabilities.

    Args:
        decided: uint8 ``(h', w')`` post-processed labels on the decision grid
            (:func:`decision_shape`).
        probs: float ``(K, h, w)`` class probabilities on the network grid.
        size: the input's grid ``(H, W)``.

    Returns uint8 ``(H, W)``. Away from label boundaries each pixel takes its decision-grid label
    (nearest neighbour). Within one decision pixel of a boundary it takes the class of highest
    bilinearly restored probability **among the labels present in the 3 x 3 decision-grid
    neighbourhood**, so the boundary is as sharp as a full-resolution argmax while everything the
    post-processing removed, filled or renamed stays so. Costs ~the boundary band, not ``H x W x K``.
    """
    h2, w2 = decided.shape
    if (h2, w2) == tuple(size):
        return decided.astype(np.uint8, copy=True)
    rows = np.minimum(((np.arange(size[0]) + 0.5) * (h2 / size[0])).astype(np.int64), h2 - 1)
    cols = np.minimum(((np.arange(size[1]) + 0.5) * (w2 / size[1])).astype(np.int64), w2 - 1)
    out = decided.astype(np.uint8).take(rows, axis=0).take(cols, axis=1)
    square = np.ones((3, 3), bool)
    edge = ndimage.grey_dilation(decided, footprint=square) != ndimage.grey_erosion(decided, footprint=square)
    if not edge.any():
        return out
    band = edge.take(rows, axis=0).take(cols, axis=1)
    ys, xs = np.nonzero(band)
    p = _bilinear_at(np.asarray(probs, dtype=np.float32), size, ys, xs)
    near_rows, near_cols = rows[ys], cols[xs]
    allowed = np.zeros(p.shape, bool)
    for c in range(p.shape[0]):
        near_c = ndimage.binary_dilation(decided == c, structure=square)
        allowed[c] = near_c[near_rows, near_cols]
    p[~allowed] = -1.0
    out[ys, xs] = np.argmax(p, axis=0).astype(np.uint8)
    return out


def summarise_labels(labels: Image, label_names: dict[int, str]) -> dict[str, dict[str, float]]:
    """Per structure: voxel count, volume (mL, 3-D) or area (cm², 2-D; px when spacing unknown), components."""
    summary: dict[str, dict[str, float]] = {}
    arr = np.asarray(labels.array)
    # one pass finds every structure's bounding box; each is counted and labelled inside its box
    # only (labelling a 2000 x 2000 film per structure cost as much as the network's forward pass)
    boxed = arr.dtype.kind in "ui" and arr.size > 0
    boxes = label_boxes(arr)
    for value, name in sorted(label_names.items()):
        value = int(value)
        if boxed and value > 0:
            box = boxes.get(value)
            inside = arr[box] == value if box is not None else np.zeros(0, bool)
            count = int(inside.sum())
            n_comp = ndimage.label(inside)[1] if count else 0
        else:
            mask = arr == value
            count = int(mask.sum())
            n_comp = ndimage.label(mask)[1]
        row: dict[str, float] = {"label": value, "voxels": count, "components": int(n_comp)}
        if labels.ndim == 3:
            row["volume_ml"] = count * labels.voxel_volume / 1000.0
        elif labels.spacing_known:
            row["area_cm2"] = count * labels.voxel_volume / 100.0
        else:
            row["area_px"] = count
        summary[name] = row
    return summary
