"""Plausibility checks (QC) for lung masks: each implausible finding becomes a :class:`QCFlag`.

Checks (only on labels whose name says lung: "right lung", "left lung", "lungs", "Lung_R", ...;
other structures such as nodules may legitimately be empty or scattered and are not checked):

* ``empty``: a lung label has no voxel.
* ``tiny`` / ``huge``: lung size outside a plausible range (:class:`QCLimits`). CT (3-D): volume in
  mL; the ``tiny`` test is skipped when the lung reaches the first or last slice (scan range cuts
  it, so the volume is a lower bound). Radiograph (2-D): fraction of the image area (pixel
  spacing of PNG/JPEG is unknown, so an absolute area cannot be used).
* ``components``: more connected components (8/26-connectivity) than a lung has (1 per lung, 2
  for a combined "lungs" label), ignoring specks smaller than ``speck_fraction`` of the label. In
  3-D, gaps of up to ``max_gap_slices`` empty slices are bridged first: clinical RT contours
  often skip slices (the shared NSCLC-Radiomics LUNG1-002 left lung has 1-2 slice gaps).
* ``swapped``: left and right lung on the wrong sides. CT: world x of the centroids in LPS (+x =
  patient left), so the left lung must have the larger x. Radiograph: assumes a frontal (PA/AP)
  film in standard radiological display, patient's left on the **image right** (larger column),
  unless a DICOM source says otherwise in PatientOrientation (row direction ``R``).
* ``border``: the mask touches the image border over more than a fraction of its outline
  (radiographs: whole border; CT: in-plane border only, as scans are cut in z on purpose).
* ``outside_body`` (CT, with the intensity image): lung voxels in air outside the body, i.e. air
  (HU < ``air_hu``) connected in-plane to the slice border.
* ``unknown_label``: values in the mask that no label name covers (e.g. a 0/255 mask).
* ``no_lung_label``: no label name is a lung, so none of the checks above could run.

The ranges are plausibility bounds, not a population study; see :class:`QCLimits` for where they
come from.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from os import PathLike

import numpy as np

from medseg.config import QCConfig
from medseg.errors import GeometryError, InputError
from medseg.image import Image, patient_left_sign
from medseg.structures import DEFAULT_LUNG_LABELS, parse_structure

__all__ = [
    "QCFlag",
    "QCLimits",
    "qc",
    "qc_files",
    "lung_role",
    "require_label_map",
    "MAX_LABEL_VALUES",
    "DEFAULT_LUNG_LABELS",
]

logger = logging.getLogger(__name__)

#: More distinct non-zero values than this and an array is taken for an intensity image, not a
#: label map. Label maps hold a handful of structures; 8-bit radiographs hold ~200-256 grey values
#: (the shared CXR images: 200-256), CT volumes thousands.
MAX_LABEL_VALUES = 64

MaskArg = Image | str | PathLike[str]


@dataclass(frozen=True)
class QCFlag:
    """One implausible finding.

    Attributes:
        check: ``"empty"``, ``"tiny"``, ``"huge"``, ``"components"``, ``"swapped"``, ``"border"``,
            ``"outside_body"``, ``"unknown_label"`` or ``"no_lung_label"``.
        structure: structure name (e.g. ``"left lung"``).
        label: label value (None for checks about several labels).
        reason: one human sentence with the measured value and the limit.
        value: the measured value (mL, fraction, component count, ...), if any.
        path: the mask file, when known.
    """

    check: str
    structure: str
    label: int | None
    reason: str
    value: float | None = None
    path: str | None = None

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"{where}{self.structure}: {self.check}: {self.reason}"


# Thresholds of :func:`qc`.
#
# Sources / approximations:
#
# * CT lung volume per lung 250-5000 mL (combined label 500-10000 mL): adult total lung capacity
#   is about 4-8 L (GLI/ERS reference ranges, taller men up to ~9 L) with each lung holding
#   roughly 45-55 %; residual volume at full expiration is about 1-2 L. The bounds are widened
#   for children, small adults, collapse and hyperinflation: only gross errors are flagged.
#   The shared NSCLC-Radiomics planning CTs have 1730-2190 mL per lung.
# * Radiograph lung area as a fraction of the image: 0.03-0.50 per lung (0.06-0.80 combined).
#   Chosen by us as wide bounds around what frontal chest films show; the 25 shared COVID-19
#   CXR masks have 0.11-0.29 per lung. Tightly cropped or heavily collimated images may fall
#   outside, which is exactly what a reviewer should look at.
# * ``speck_fraction`` 0.02: components under 2 % of the label are brush specks, not extra lobes.
# * ``border_fraction`` 0.15 (radiograph) / 0.001 (CT, in-plane): share of the mask outline on
#   the image border. Real CXR masks touch it by up to ~4 % (cropped films); CT lungs never
#   should.
# * ``outside_body_fraction`` 0.005 of the lung in outside air; ``air_hu`` -500 HU.
#
QCLimits = QCConfig  # the limits are a config section (``qc:`` in YAML), validated there


def lung_role(name: str) -> str | None:
    """``"right"``, ``"left"``, ``"both"`` for lung structure names, else ``None``.

    Asks :func:`medseg.structures.parse_structure`, so every spelling it accepts works here too.
    """
    s = parse_structure(name)
    if not s.is_lung:
        return None
    return s.laterality or "both"


@dataclass
class _LungStats:
    value: int
    name: str
    role: str
    centroid_xyz: np.ndarray


def _components(crop: np.ndarray, limits: QCLimits) -> int:
    from scipy import ndimage as ndi

    grown = crop
    if crop.ndim == 3 and limits.max_gap_slices > 0:
        r = math.ceil(limits.max_gap_slices / 2)
        grown = ndi.binary_dilation(crop, structure=np.ones((2 * r + 1, 1, 1), dtype=bool))
    lab, n = ndi.label(grown, structure=ndi.generate_binary_structure(crop.ndim, crop.ndim))
    if n <= 1:
        return n
    sizes = np.bincount(lab[crop], minlength=n + 1)[1:]
    return int(np.sum(sizes >= limits.speck_fraction * crop.sum()))


def _border_fraction(mask: np.ndarray, crop: np.ndarray) -> float:
    from scipy import ndimage as ndi

    # outline = mask minus its erosion; the crop is the exact bounding box, so eroding with
    # background outside the crop equals eroding the whole mask.
    outline = int(np.count_nonzero(crop & ~ndi.binary_erosion(crop)))
    inner = mask[..., 1:-1, 1:-1]  # in-plane interior: y and x border rows/columns removed
    on_border = int(np.count_nonzero(mask)) - int(np.count_nonzero(inner))
    return on_border / max(outline, 1)


def _outside_air(image: Image, air_hu: float) -> np.ndarray:
    """Air voxels connected (within their axial slice) to the slice border: outside the body."""
    from scipy import ndimage as ndi

    air = image.array < air_hu
    structure = np.zeros((3, 3, 3), dtype=bool)
    structure[1] = ndi.generate_binary_structure(2, 1)  # in-plane connectivity only
    lab, _ = ndi.label(air, structure=structure)
    edge = np.unique(
        np.concatenate(
            [lab[:, 0, :].ravel(), lab[:, -1, :].ravel(), lab[:, :, 0].ravel(), lab[:, :, -1].ravel()]
        )
    )
    edge = edge[edge > 0]
    return np.isin(lab, edge)


def _present_values(arr: np.ndarray) -> set[int]:
    if arr.dtype in (np.uint8, np.uint16, np.bool_):  # bincount is much faster than unique here
        counts = np.bincount(arr.ravel())
        return {int(v) for v in np.flatnonzero(counts)}
    return {int(v) for v in np.unique(arr)}


def require_label_map(labels: Image, *, max_values: int = MAX_LABEL_VALUES) -> None:
    """Raise :class:`InputError` (one line naming the file) unless ``labels`` looks like a label map.

    A label map is an integer image with few values: an image of kind ``"intensity"``, one with
    negative values (CT in HU), non-whole values, or more than ``max_values`` distinct non-zero
    values (a radiograph or CT read as labels) is refused. ``labels`` is ``(y, x)`` or ``(z, y, x)``.
    """
    path = labels.source.path
    hint = "pass the mask (an integer label map), not the image it segments; give the image as --image / image="
    if labels.kind != "label":
        raise InputError("expected a label map, got an intensity image", path=path, hint=hint)
    arr = labels.array
    if arr.size == 0:
        return
    if not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_):
        if not np.array_equal(arr, np.round(arr)):
            raise InputError("not a label map: its values are not whole numbers; it looks like an intensity image",
                             path=path, hint=hint)
    lo = float(arr.min())
    if lo < 0:
        raise InputError(
            f"not a label map: values {lo:.0f}..{float(arr.max()):.0f} (labels are 0 or positive); "
            "it looks like an intensity image",
            path=path,
            hint=hint,
        )
    n = len(_present_values(arr) - {0})
    if n > max_values and path is not None and str(path).lower().endswith((".jpg", ".jpeg")):
        hint = ("if this is a mask saved as JPEG, its lossy edges hold many grey values: threshold it "
                "and save it as PNG; else " + hint)
    if n > max_values:
        raise InputError(
            f"not a label map: {n} distinct values (a label map has at most {max_values}); "
            "it looks like an intensity image",
            path=path,
            hint=hint,
        )


def _read_mask(
    labels: MaskArg, label_names: Mapping[int, str] | None
) -> tuple[Image, Mapping[int, str] | None]:
    """``(label Image, names)``: a path is read with :func:`medseg.io.read_label_map`; the names are
    ``label_names`` if given, else a DICOM-SEG's segment labels, else None (the default lung labels)."""
    if isinstance(labels, Image):
        return labels, label_names
    if not isinstance(labels, (str, PathLike)):
        raise InputError(
            f"expected a mask file or a label Image, got {type(labels).__name__}",
            hint="pass a path (PNG, NIfTI, DICOM-SEG, ...) or medseg.Image",
        )
    from medseg.io import read_label_map

    img, seg_names = read_label_map(labels, label_names=label_names)
    return img, (label_names if label_names is not None else (seg_names or None))


def qc(
    labels: MaskArg,
    *,
    label_names: Mapping[int, str] | None = None,
    image: Image | str | PathLike[str] | None = None,
    limits: QCLimits | None = None,
) -> list[QCFlag]:
    """Flag implausible lung masks.

    Args:
        labels: label map ``(y, x)`` (radiograph) or ``(z, y, x)`` (CT), kind ``"label"``, or its
            file (PNG, NIfTI, NRRD/MHA, DICOM, DICOM-SEG; read with
            :func:`medseg.io.read_label_map`). 3-D masks are treated as CT (volume in mL from the
            spacing), 2-D ones as frontal radiographs.
        label_names: label value -> structure name; default: a DICOM-SEG's segment labels, else
            ``{1: "right lung", 2: "left lung"}``.
        image: optional CT intensity image in HU on the same grid (Image or file), enables
            ``outside_body``.
        limits: thresholds (default :class:`QCLimits`).

    Returns:
        The flags, in check order per label (empty list = plausible).

    Raises:
        InputError: the mask is an intensity image (see :func:`require_label_map`) or unreadable.
    """
    from scipy import ndimage as ndi

    labels, label_names = _read_mask(labels, label_names)
    require_label_map(labels)
    if image is not None and not isinstance(image, Image):
        from medseg.io import read_image

        image = read_image(image, kind="intensity")
    lim = limits or QCLimits()
    names = dict(DEFAULT_LUNG_LABELS if label_names is None else label_names)
    path = None if labels.source.path is None else str(labels.source.path)
    arr = labels.array
    is_ct = labels.ndim == 3
    flags: list[QCFlag] = []

    def flag(check: str, structure: str, label: int | None, reason: str, value: float | None = None) -> None:
        flags.append(QCFlag(check, structure, label, reason, value, path))

    present = _present_values(arr) - {0}
    unknown = sorted(present - set(names))
    if unknown:
        flag(
            "unknown_label",
            "mask",
            None,
            f"label values {unknown} are not named (expected {sorted(names)})",
            float(len(unknown)),
        )

    outside: np.ndarray | None = None
    if image is not None:
        if not labels.same_geometry(image, atol=1e-3):
            raise GeometryError(
                f"the image (shape {image.shape}) is not on the mask's grid (shape {labels.shape})",
                path=image.source.path,
                hint="pass the image the mask was drawn on",
            )
        if not is_ct:
            logger.info("outside-body check is only done for CT volumes; skipped for %s", path)
        elif float(image.array.min()) > -200:
            logger.warning(
                "image %s does not look like CT in HU (min > -200); outside-body check skipped", path
            )
        else:
            outside = _outside_air(image, lim.air_hu)

    if not any(lung_role(name) for value, name in names.items() if value != 0):
        flag(
            "no_lung_label",
            "mask",
            None,
            f"no lung structure among the label names {dict(names)}; nothing was checked",
        )

    lungs: list[_LungStats] = []
    for value, name in names.items():
        role = lung_role(name)
        if role is None or value == 0:
            continue
        mask = arr == value
        count = int(np.count_nonzero(mask))
        if count == 0:
            flag("empty", name, value, "no voxel has this label")
            continue
        bbox = ndi.find_objects(mask.astype(np.uint8))[0]
        crop = mask[bbox]

        if is_ct:
            ml = count * labels.voxel_volume / 1000.0
            lo, hi = lim.ct_lungs_ml if role == "both" else lim.ct_lung_ml
            truncated = bbox[0].start == 0 or bbox[0].stop == arr.shape[0]
            if ml < lo and not truncated:
                flag("tiny", name, value, f"volume {ml:.0f} mL is below {lo:.0f} mL", ml)
            elif ml < lo:
                logger.info("%s: %s is cut by the scan range (%.0f mL); tiny check skipped", path, name, ml)
            if ml > hi:
                flag("huge", name, value, f"volume {ml:.0f} mL is above {hi:.0f} mL", ml)
        else:
            frac = count / arr.size
            lo, hi = lim.cxr_lungs_fraction if role == "both" else lim.cxr_lung_fraction
            if frac < lo:
                flag("tiny", name, value, f"covers {frac:.1%} of the image, below {lo:.0%}", frac)
            if frac > hi:
                flag("huge", name, value, f"covers {frac:.1%} of the image, above {hi:.0%}", frac)

        expected = 2 if role == "both" else 1
        n = _components(crop, lim)
        if n > expected:
            flag(
                "components",
                name,
                value,
                f"{n} components larger than {lim.speck_fraction:.0%} of the label (expected {expected})",
                float(n),
            )

        border = _border_fraction(mask, crop)
        border_limit = lim.ct_border_fraction if is_ct else lim.cxr_border_fraction
        if border > border_limit:
            flag(
                "border",
                name,
                value,
                f"{border:.1%} of its outline lies on the {'in-plane ' if is_ct else ''}image border "
                f"(limit {border_limit:.0%})",
                border,
            )

        if outside is not None:
            out_frac = int(np.count_nonzero(mask & outside)) / count
            if out_frac > lim.outside_body_fraction:
                flag(
                    "outside_body",
                    name,
                    value,
                    f"{out_frac:.1%} of its voxels are air outside the body (HU < {lim.air_hu:.0f}, "
                    "connected to the slice border)",
                    out_frac,
                )

        offset = np.array([sl.start for sl in bbox], dtype=np.float64)
        idx = np.array(ndi.center_of_mass(crop)) + offset  # array order (z, y, x) / (y, x)
        lungs.append(_LungStats(value, name, role, idx[::-1].copy()))

    right = [lung for lung in lungs if lung.role == "right"]
    left = [lung for lung in lungs if lung.role == "left"]
    if right and left:
        r, lft = right[0], left[0]
        if is_ct:
            rx = float(labels.index_to_world(r.centroid_xyz)[0])
            lx = float(labels.index_to_world(lft.centroid_xyz)[0])
            if lx < rx:
                flag(
                    "swapped",
                    f"{r.name}/{lft.name}",
                    None,
                    f"left lung centroid x={lx:.1f} mm is right of the right lung's x={rx:.1f} mm "
                    "(LPS: +x is the patient's left)",
                    lx - rx,
                )
        else:
            rc, lc = float(r.centroid_xyz[0]), float(lft.centroid_xyz[0])
            on_right = patient_left_sign(labels) > 0
            if (lc < rc) if on_right else (lc > rc):
                side = "right" if on_right else "left"
                flag(
                    "swapped",
                    f"{r.name}/{lft.name}",
                    None,
                    f"left lung centroid (column {lc:.0f}) is not on the image {side} of the right lung "
                    f"(column {rc:.0f}); assumes a frontal film with the patient's left on the image {side}",
                    lc - rc,
                )
    return flags


def qc_files(
    masks: Sequence[str | PathLike[str]],
    *,
    images: Sequence[str | PathLike[str]] | None = None,
    label_names: Mapping[int, str] | None = None,
    limits: QCLimits | None = None,
) -> dict[str, list[QCFlag]]:
    """Read each mask (and optionally its CT image) and run :func:`qc`; ``{mask path: flags}``.

    ``images`` is ``None`` or one intensity image per mask, in the same order. Label names:
    ``label_names`` if given, else the segment labels of a DICOM-SEG, else
    ``{1: "right lung", 2: "left lung"}``.
    """
    if images is not None and len(images) != len(masks):
        raise InputError(
            f"{len(images)} images given for {len(masks)} masks",
            hint="give one --image per mask, in the same order, or none",
        )
    out: dict[str, list[QCFlag]] = {}
    for i, path in enumerate(masks):
        image = None if images is None else images[i]
        out[str(path)] = qc(path, label_names=label_names, image=image, limits=limits)
    return out
