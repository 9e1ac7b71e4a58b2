"""Post-processing of predicted label maps so the labels mean what they say.

Hand-written on scipy.ndimage (MONAI's ``KeepLargestConnectedComponent``/``FillHoles`` work on
tensors per class but know nothing about anatomy): keep the largest component of each lung, fill
holes, and make "left lung" lie on the patient's left (+x in LPS; for a radiograph shown PA, the
image's right-hand side unless the DICOM PatientOrientation says otherwise).
"""

from __future__ import annotations

import logging

import numpy as np
from scipy import ndimage

from medseg.image import Image, patient_left_sign
from medseg.structures import LabelMap

log = logging.getLogger(__name__)

__all__ = ["postprocess_labels", "lung_side_labels", "patient_left_sign", "summarise_labels"]


def lung_side_labels(label_names: LabelMap | dict[int, str]) -> tuple[int | None, int | None]:
    """The label values of the right and left lung, by any spelling (None when absent)."""
    return LabelMap.coerce(label_names).side_values("lung")


def _largest_components(mask: np.ndarray, n: int) -> list[np.ndarray]:
    lab, count = ndimage.label(mask)
    if count == 0:
        return []
    sizes = ndimage.sum_labels(mask, lab, index=np.arange(1, count + 1))
    order = np.argsort(sizes)[::-1][:n]
    return [lab == (i + 1) for i in order]


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    if mask.ndim == 3:  # per axial slice: 3-D filling would also fill airways closed at both ends
        return np.stack([ndimage.binary_fill_holes(s) for s in mask]).astype(bool)
    return ndimage.binary_fill_holes(mask).astype(bool)


def postprocess_labels(
    labels: np.ndarray,
    image: Image,
    label_names: LabelMap | dict[int, str],
    *,
    keep_largest: bool = True,
    fill_holes: bool = True,
) -> np.ndarray:
    """Clean an argmax label map on the image grid (same shape as ``image.array``).

    Lungs: the union of the lung labels is split into its two largest components (when the second
    is at least 5% of the first); each is named left/right by the side of the patient it lies on.
    When the lungs touch (one component), the model's own left/right voxels are kept. Then each
    lung keeps its largest component and holes are filled. Other labels (e.g. nodules) are left
    as predicted.
    """
    out = labels.copy()
    structures = LabelMap.coerce(label_names)
    right, left = structures.side_values("lung")
    if right is not None and left is not None:
        union = (labels == right) | (labels == left)
        comps = _largest_components(union, 2)
        if len(comps) == 2 and comps[1].sum() >= 0.05 * comps[0].sum():
            axis_x = labels.ndim - 1  # x is the last array axis
            centres = [np.argwhere(c)[:, axis_x].mean() for c in comps]
            sign = patient_left_sign(image)
            left_comp = int(np.argmax([sign * c for c in centres]))
            relabelled = np.where(union, out, 0)
            out[union] = 0
            for i, comp in enumerate(comps):
                out[comp] = left if i == left_comp else right
            # voxels of the union outside the two main components keep their predicted label
            rest = union & (out == 0)
            out[rest] = relabelled[rest]
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


def summarise_labels(labels: Image, label_names: dict[int, str]) -> dict[str, dict[str, float]]:
    """Per structure: voxel count, volume (mL, 3-D) or area (cm², 2-D; px when spacing unknown), components."""
    summary: dict[str, dict[str, float]] = {}
    arr = labels.array
    for value, name in sorted(label_names.items()):
        mask = arr == value
        count = int(mask.sum())
        _, n_comp = ndimage.label(mask)
        row: dict[str, float] = {"label": value, "voxels": count, "components": int(n_comp)}
        if labels.ndim == 3:
            row["volume_ml"] = count * labels.voxel_volume / 1000.0
        elif labels.spacing_known:
            row["area_cm2"] = count * labels.voxel_volume / 100.0
        else:
            row["area_px"] = count
        summary[name] = row
    return summary
