"""Classic (non-learned) CT lung auto-labeller: threshold + morphology, right/left lung labels.

:func:`autolabel_ct_lungs` turns a chest CT in Hounsfield units into a label map
(0 background, 1 right lung, 2 left lung) on the same grid. It needs no model and no GPU, so it
pre-labels CT for annotators and bootstraps training data. Steps (all on the input grid):

1. **Check** the input looks like CT in HU (air near -1000, tissue around 0).
2. **Body**: largest 3-D component of ``HU > -500``, holes filled slice by slice, so outside-body
   air and the table (separated from the patient by air) are excluded.
3. **Air candidates**: ``HU < -320`` inside the body; components touching the in-plane border
   of the field of view are dropped (air connected to the outside).
4. **Airways**: 3-D region growing (SimpleITK ``ConnectedThreshold``) from a trachea seed found
   in the upper slices (a round, dark ``HU < -900`` blob near the body's midline), with explosion
   control: the threshold is raised from -990 HU while the airway volume grows smoothly and the
   last value before a jump (leak into the lung) is kept. The airway tree, dilated by about 2 mm,
   is removed from the candidates. Chosen over per-slice "small round blob" rules because it
   follows the trachea into both main bronchi through the carina, where 2-D rules fail.
5. **Lungs**: a small box opening (about 5 mm) cuts thin air bridges (partial volume through a
   thin diaphragm into colon gas, a thin anterior junction line); the two largest opened
   components are the lung cores. A single large core (lungs joined along a broader front) is
   eroded in-plane until it falls apart in two, failing that split at the body midline. Every air
   voxel then goes to the core it reaches first by growing inside the air (marker flood), while
   other sizeable air bodies (bowel gas) flood their own surroundings and stay out.
6. **Side**: by world x in LPS (patient left = +x): the part with the larger mean x is the left
   lung (label 2). If only one lung is found (or both parts lie on one side of the body), each
   part is labelled by its side of the body's centre.
7. **Clean-up** per lung: vessels and airway walls inside the lung are filled slice by slice,
   then a morphological closing (about 5 mm, in-plane) smooths the border and takes in
   juxta-pleural vessels; the result stays inside the body and does not cross into the other
   lung.

Slice-wise steps need axial slices along the first array axis: a volume stored in another
orientation is permuted/flipped to LPS first (``SimpleITK.DICOMOrient``, exact) and the labels
are put back on the input grid.

Implementation: SimpleITK for 3-D connected components, relabelling by size and region growing
(multithreaded, several times faster than ``scipy.ndimage.label`` + ``bincount`` on a 512x512x110
volume), ``scipy.ndimage`` for per-slice hole filling and small structuring-element morphology.
"""

from __future__ import annotations

import logging
import time
from os import PathLike
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from medseg.config import AutolabelConfig
from medseg.errors import GeometryError, InputError
from medseg.image import Image

__all__ = [
    "LUNG_LABELS",
    "autolabel",
    "AutolabelParams",
    "autolabel_ct_lungs",
]

log = logging.getLogger(__name__)

#: label values written by the lung auto-labeller (same convention as the shipped lung masks)
LUNG_LABELS: dict[int, str] = {1: "right lung", 2: "left lung"}


#: the labeller's parameters are a config section (``autolabel:`` in YAML, validated there)
AutolabelParams = AutolabelConfig


def _check_ct(ct: Image) -> None:
    where = ct.source.path
    if ct.ndim != 3:
        raise InputError(
            f"the lung auto-labeller needs a 3-D CT volume, got a {ct.ndim}-D image of shape {ct.shape}",
            path=where,
            hint="pass a CT series folder or a 3-D NIfTI",
        )
    if ct.kind != "intensity":
        raise InputError("the lung auto-labeller needs an intensity CT, got a label image", path=where)
    if min(ct.shape) < 3:
        raise GeometryError(f"CT volume too small to label: shape {ct.shape} (z, y, x)", path=where)
    a = ct.array
    if not np.issubdtype(a.dtype, np.number) or np.issubdtype(a.dtype, np.complexfloating):
        raise InputError(f"CT voxels must be real numbers, got {a.dtype}", path=where)
    if np.issubdtype(a.dtype, np.floating) and not np.all(np.isfinite(a)):
        raise InputError(
            "the CT contains NaN or infinite voxels", path=where, hint="repair or mask the volume first"
        )
    lo, hi = float(a.min()), float(a.max())
    n = a.size
    air = np.count_nonzero(a < -700) / n
    tissue = np.count_nonzero((a > -200) & (a < 300)) / n
    if lo > -700 or hi < 0 or air < 0.01 or tissue < 0.01:
        raise InputError(
            "the image does not look like a CT in Hounsfield units "
            f"(range {lo:.6g}..{hi:.6g}, {air:.1%} voxels below -700, {tissue:.1%} between -200 and 300;"
            " expected air near -1000 and soft tissue near 0)",
            path=where,
            hint="pass a chest CT in HU (DICOM readers apply RescaleSlope/RescaleIntercept; "
            "check that the NIfTI is not a mask or rescaled to 0..1 or 0..4095)",
        )
    if ct.modality not in ("CT", "OT", ""):
        log.warning("autolabelling a %s image as CT: results are only meaningful for CT in HU", ct.modality)


def _sitk_mask(mask: np.ndarray, spacing: tuple[float, ...]):  # -> sitk.Image
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(mask.astype(np.uint8, copy=False))
    img.SetSpacing(spacing)
    return img


def _components(mask: np.ndarray, spacing: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """3-D components (face connectivity) relabelled by size: ``(labels (z, y, x), voxel counts)``.

    ``counts[i]`` is the size of component ``i + 1`` (largest first).
    """
    import SimpleITK as sitk

    cc = sitk.ConnectedComponent(_sitk_mask(mask, spacing), False)
    relabel = sitk.RelabelComponentImageFilter()
    out = relabel.Execute(cc)
    counts = np.asarray(relabel.GetSizeOfObjectsInPixels(), dtype=np.int64)
    return sitk.GetArrayFromImage(out), counts


def _fill_per_slice(mask: np.ndarray, max_hole_px: int | None = None) -> np.ndarray:
    """Fill holes slice by slice (axial, in-plane 4-connectivity); only holes up to ``max_hole_px`` pixels if given."""
    out = mask.copy()
    for k in np.flatnonzero(mask.any(axis=(1, 2))):
        filled = ndi.binary_fill_holes(mask[k])
        if max_hole_px is None:
            out[k] = filled
            continue
        holes, n = ndi.label(filled & ~mask[k])
        if n:
            small = np.flatnonzero(np.bincount(holes.ravel())[1:] <= max_hole_px) + 1
            out[k] |= np.isin(holes, small)
    return out


def _disk(radius_mm: float, spacing_xy: tuple[float, float]) -> np.ndarray:
    """In-plane structuring element ``(1, y, x)`` with a radius in mm (at least one voxel: the 4-neighbour cross)."""
    radius_mm = max(radius_mm, *spacing_xy)
    rx = max(1, int(round(radius_mm / spacing_xy[0])))
    ry = max(1, int(round(radius_mm / spacing_xy[1])))
    yy, xx = np.mgrid[-ry : ry + 1, -rx : rx + 1]
    return ((yy * spacing_xy[1]) ** 2 + (xx * spacing_xy[0]) ** 2 <= radius_mm**2 + 1e-6)[None]


def _body_mask(hu: np.ndarray, spacing: tuple[float, ...], p: AutolabelParams) -> np.ndarray:
    labels, counts = _components(hu > p.body_hu, spacing)
    if len(counts) == 0:
        raise InputError("no body found: no voxels above the body threshold", hint="pass a chest CT in HU")
    return _fill_per_slice(labels == 1)


def _trachea_seed(
    hu: np.ndarray, body: np.ndarray, candidates: np.ndarray, spacing: tuple[float, ...], p: AutolabelParams
) -> tuple[int, int, int] | None:
    """A voxel ``(k, j, i)`` inside the trachea, searched from the top slice down; ``None`` if not found."""
    sx, sy = spacing[0], spacing[1]
    pix_mm2 = sx * sy
    nz = hu.shape[0]
    z_with_air = np.flatnonzero(candidates.any(axis=(1, 2)))
    if len(z_with_air) == 0:
        return None
    top = int(z_with_air.max())
    bottom = max(int(z_with_air.min()), top - max(3, int(round(120.0 / spacing[2]))))  # search ~12 cm
    for k in range(min(top, nz - 1), bottom - 1, -1):
        if not body[k].any():
            continue
        xs = np.flatnonzero(body[k].any(axis=0))
        mid_x = 0.5 * (xs.min() + xs.max())
        dark = (hu[k] < p.trachea_seed_hu) & body[k] & candidates[k]
        lab, n = ndi.label(dark)
        if n == 0:
            continue
        areas = np.bincount(lab.ravel())[1:] * pix_mm2
        centres = ndi.center_of_mass(dark, lab, range(1, n + 1))
        best = None
        for idx, (area, (cy, cx)) in enumerate(zip(areas, centres, strict=True), start=1):
            if not p.trachea_area_mm2[0] <= area <= p.trachea_area_mm2[1]:
                continue
            if abs(cx - mid_x) * sx > p.trachea_midline_mm:
                continue
            ys, xs_ = np.nonzero(lab == idx)
            h = (ys.max() - ys.min() + 1) * sy
            w = (xs_.max() - xs_.min() + 1) * sx
            if max(h, w) > 2.5 * min(h, w) or area < 0.4 * h * w:  # not round enough
                continue
            if best is None or abs(cx - mid_x) < best[0]:
                pick = int(np.argmin((ys - cy) ** 2 + (xs_ - cx) ** 2))
                best = (abs(cx - mid_x), (k, int(ys[pick]), int(xs_[pick])))
        if best is not None:
            return best[1]
    return None


def _airways(
    hu: np.ndarray,
    body: np.ndarray,
    seed: tuple[int, int, int],
    spacing: tuple[float, ...],
    p: AutolabelParams,
) -> np.ndarray:
    """Trachea and main bronchi grown from ``seed`` with explosion control (bool ``(z, y, x)``)."""
    import SimpleITK as sitk

    # grow on HU with outside-body voxels pushed up, so the airway cannot leave the body
    img = sitk.GetImageFromArray(np.where(body, hu, 1000).astype(np.int16, copy=False))
    img.SetSpacing(spacing)
    voxel_ml = float(np.prod(spacing)) / 1000.0
    k, j, i = seed
    best: np.ndarray | None = None
    prev_ml = 0.0
    for t in p.airway_thresholds_hu:
        if hu[k, j, i] > t:
            continue
        grown = sitk.GetArrayFromImage(
            sitk.ConnectedThreshold(img, seedList=[(i, j, k)], lower=-4000, upper=t)
        )
        ml = float(np.count_nonzero(grown)) * voxel_ml
        if ml > p.airway_max_ml or (
            best is not None and ml > p.airway_jump * prev_ml and ml - prev_ml > 10.0
        ):
            log.debug("airway growing stops at %g HU: %.1f ml (previous %.1f ml)", t, ml, prev_ml)
            break
        best, prev_ml = grown.astype(bool), ml
    if best is None:
        return np.zeros(hu.shape, dtype=bool)
    log.debug("airways: %.1f ml", prev_ml)
    return ndi.binary_dilation(best, structure=_disk(p.airway_dilation_mm, (spacing[0], spacing[1])))


def _bbox(mask: np.ndarray, pad: int = 0) -> tuple[slice, slice, slice]:
    """Bounding box of a non-empty ``(z, y, x)`` mask, padded in-plane by ``pad`` voxels."""
    zs = np.flatnonzero(mask.any(axis=(1, 2)))
    ys = np.flatnonzero(mask.any(axis=(0, 2)))
    xs = np.flatnonzero(mask.any(axis=(0, 1)))
    return (
        slice(int(zs.min()), int(zs.max()) + 1),
        slice(max(int(ys.min()) - pad, 0), int(ys.max()) + pad + 1),
        slice(max(int(xs.min()) - pad, 0), int(xs.max()) + pad + 1),
    )


def _box_opening(mask: np.ndarray, size: tuple[int, int, int]) -> np.ndarray:
    """Binary opening with a ``(z, y, x)`` box: separable min/max filters, much faster than a ball."""
    u8 = mask.view(np.uint8)
    return ndi.maximum_filter(ndi.minimum_filter(u8, size=size), size=size).astype(bool)


def _flood(region: np.ndarray, markers: np.ndarray, spacing: tuple[float, ...]) -> np.ndarray:
    """Give every ``region`` voxel the marker it reaches first by growing inside ``region``.

    ``markers`` (uint8, ``(z, y, x)``) holds seeds 1..254, 0 elsewhere. SimpleITK's marker
    watershed on a flat image is a one-pass breadth-first flood; voxels outside ``region`` (and
    region voxels no seed reaches) come back 0.
    """
    import SimpleITK as sitk

    mk = np.where(region, markers, 255).astype(np.uint8)
    flat = sitk.GetImageFromArray(np.where(region, 0, 1).astype(np.uint8))
    mk_img = sitk.GetImageFromArray(mk)
    for img in (flat, mk_img):
        img.SetSpacing(spacing)
    ws = sitk.MorphologicalWatershedFromMarkers(flat, mk_img, markWatershedLine=False, fullyConnected=False)
    out = sitk.GetArrayFromImage(ws)
    out[~region | (out == 255)] = 0
    return out


def _split_core(core: np.ndarray, spacing: tuple[float, ...], min_voxels: int) -> np.ndarray | None:
    """Erode one component holding both lungs in-plane (1 mm steps, up to 12 mm) until it falls
    apart into two large parts; returns them labelled 1 and 2 (``None`` if it never splits)."""
    eroded = core
    step = _disk(1.0, (spacing[0], spacing[1]))
    for _ in range(int(round(12.0 / min(spacing[0], spacing[1])))):
        eroded = ndi.binary_erosion(eroded, structure=step)
        labels, counts = _components(eroded, spacing)
        if len(counts) == 0:
            return None
        if len(counts) >= 2 and counts[1] >= min_voxels // 4:
            return np.where(labels <= 2, labels, 0).astype(np.uint8)
    return None


def _separate_lungs(
    air: np.ndarray, spacing: tuple[float, ...], mid_x: float, p: AutolabelParams, min_voxels: int
) -> tuple[np.ndarray, str]:
    """The two lungs in the air mask ``air`` (cropped ``(z, y, x)``), labelled 1 and 2 (sides not yet known).

    1. An opening (box of about ``2 * bridge_mm``) cuts thin bridges made by partial volume, e.g.
       between the lung base and colon gas under a thin diaphragm, or between the two lungs.
    2. The two largest opened components are the lung cores (a single large one is split by
       erosion; failing that, by the body midline ``mid_x`` (array column)).
    3. Every air voxel is flooded from the cores *and* from the other opened components, so air
       that is closer to bowel gas than to a lung core stays out.

    Returns the parts and how they were found (``"components"``, ``"erosion"``, ``"midline"``).
    """
    r_xy = max(1, int(round(p.bridge_mm / min(spacing[0], spacing[1]))))
    r_z = max(1, int(round(p.bridge_mm / spacing[2])))
    opened = _box_opening(air, (2 * r_z + 1, 2 * r_xy + 1, 2 * r_xy + 1))
    labels, counts = _components(opened, spacing)
    if len(counts) == 0 or counts[0] < min_voxels:
        labels, counts = _components(air, spacing)  # nothing survives the opening: tiny lungs
    if len(counts) == 0 or counts[0] < min_voxels:
        return np.zeros(air.shape, dtype=np.uint8), "none"
    # other sizeable air bodies (bowel gas, air under a head mask) keep their own air; small
    # fragments (lung cut off by the opening around vessels or consolidation) are flooded
    blockers = np.flatnonzero(counts >= p.blocker_min_ml * 1000.0 / float(np.prod(spacing))) + 1
    markers = np.where(np.isin(labels, blockers[blockers > 2]), 3, 0).astype(np.uint8)
    if len(counts) >= 2 and counts[1] >= min_voxels and counts[1] >= 0.1 * counts[0]:
        markers[labels == 1] = 1
        markers[labels == 2] = 2
        how = "components"
    else:
        core = labels == 1
        split = _split_core(core, spacing, min_voxels)
        if split is not None:
            markers[core] = split[core]
            how = "erosion"
        else:
            columns = np.arange(air.shape[2])[None, None, :]
            markers[core & (columns < mid_x)] = 1
            markers[core & (columns >= mid_x)] = 2
            how = "midline"
    parts = _flood(air, markers, spacing)
    parts[parts > 2] = 0
    return parts, how


def _via_lps(ct: Image, p: AutolabelParams) -> Image:
    """Label a volume stored in another orientation: permute/flip to LPS, label, permute back."""
    import SimpleITK as sitk

    code = ct.orientation
    lps = Image.from_sitk(sitk.DICOMOrient(ct.to_sitk(), "LPS"), modality=ct.modality, source=ct.source)
    labels = autolabel_ct_lungs(lps, p)
    back = Image.from_sitk(sitk.DICOMOrient(labels.to_sitk(), code), kind="label")
    if not back.same_geometry(ct, atol=1e-3):
        raise GeometryError(
            f"cannot map labels back from LPS to the {code} grid of the input",
            path=ct.source.path,
            hint="resample the CT to an axial grid first",
        )
    return ct.with_array(back.array, kind="label")


def autolabel_ct_lungs(ct: Image, params: AutolabelParams | None = None) -> Image:
    """Label the right and left lung of a chest CT without a model.

    Args:
        ct: a 3-D CT in Hounsfield units, array ``(z, y, x)``, affine to LPS mm (any axis order the
            reader gives; left/right is decided in world coordinates).
        params: thresholds and sizes; :class:`AutolabelParams` defaults suit adult chest CT.

    Returns:
        a ``kind="label"`` uint8 :class:`Image` on the input grid: 0 background, 1 right lung,
        2 left lung (:data:`LUNG_LABELS`). ``source`` and ``modality`` are kept from the CT.

    Raises:
        InputError: the image is not 3-D or does not look like CT in HU (e.g. all zeros, a mask,
            intensities rescaled to 0..1), or no lung-sized air region is found.
    """
    p = params or AutolabelParams()
    _check_ct(ct)
    if ct.orientation != "LPS":
        return _via_lps(ct, p)
    t0 = time.perf_counter()
    hu = np.asarray(ct.array)
    spacing = tuple(float(s) for s in ct.spacing)  # (x, y, z) mm
    voxel_ml = float(np.prod(spacing)) / 1000.0

    body = _body_mask(hu, spacing, p)
    candidates = (hu < p.lung_hu) & body
    labels, counts = _components(candidates, spacing)
    if len(counts):
        border = np.unique(
            np.concatenate(
                [
                    labels[:, 0, :].ravel(),
                    labels[:, -1, :].ravel(),
                    labels[:, :, 0].ravel(),
                    labels[:, :, -1].ravel(),
                ]
            )
        )
        border = border[border > 0]
        if len(border):
            candidates &= ~np.isin(labels, border)

    seed = _trachea_seed(hu, body, candidates, spacing, p)
    if seed is None:
        log.info("no trachea seed found; airways are not removed")
    else:
        candidates &= ~_airways(hu, body, seed, spacing, p)

    if not candidates.any():
        raise InputError(
            "no lung found: no air inside the body",
            path=ct.source.path,
            hint="pass a chest CT that covers the lungs (in HU)",
        )
    min_voxels = int(p.min_lung_ml / voxel_ml)
    body_x = np.flatnonzero(body.any(axis=(0, 1)))
    box = _bbox(candidates, pad=2)
    mid_x = 0.5 * (body_x.min() + body_x.max()) - box[2].start
    parts_sub, how = _separate_lungs(candidates[box], spacing, mid_x, p, min_voxels)
    parts = np.zeros(hu.shape, dtype=np.uint8)
    parts[box] = parts_sub
    sizes = [int(np.count_nonzero(parts_sub == v)) for v in (1, 2)]
    if max(sizes) < min_voxels:
        raise InputError(
            f"no lung found: no air region of at least {p.min_lung_ml:g} ml inside the body",
            path=ct.source.path,
            hint="pass a chest CT that covers the lungs (in HU)",
        )
    log.debug("lungs separated by %s: %s voxels", how, sizes)

    # side by world x (LPS: +x = patient left), whatever the array orientation
    def mean_world_x(mask: np.ndarray) -> float:
        kji = np.argwhere(mask[:, ::4, ::4]) * np.array([1, 4, 4])
        return float(ct.index_to_world(kji[:, ::-1].astype(np.float64))[:, 0].mean())

    body_world_x = mean_world_x(body)
    side: dict[int, int] = {}  # part -> label value
    present = [v for v, n in zip((1, 2), sizes, strict=True) if n >= min_voxels]
    xs = {v: mean_world_x(parts == v) for v in present}
    if len(present) == 2 and (xs[1] - body_world_x) * (xs[2] - body_world_x) < 0:
        side = {1: 1, 2: 2} if xs[1] < xs[2] else {1: 2, 2: 1}
    else:
        if len(present) == 2:
            log.warning(
                "both lung parts lie on one side of the body; labelling each by its side of the midline"
            )
        else:
            log.warning("only one lung found; labelling it by its side of the body midline")
        side = {v: (2 if xs[v] > body_world_x else 1) for v in present}
    right = np.zeros(hu.shape, dtype=bool)
    left = np.zeros(hu.shape, dtype=bool)
    for v, lab in side.items():
        (left if lab == 2 else right)[parts == v] = True

    closing = _disk(p.closing_mm, (spacing[0], spacing[1]))
    max_hole = None if p.max_hole_mm2 is None else int(p.max_hole_mm2 / (spacing[0] * spacing[1]))
    out = np.zeros(hu.shape, dtype=np.uint8)
    for value, mask in ((1, right), (2, left)):
        if not mask.any():
            continue
        box = _bbox(mask, pad=max(closing.shape[1:]))
        m = _fill_per_slice(mask[box], max_hole)
        m = ndi.binary_closing(m, structure=closing) | m
        m = _fill_per_slice(m, max_hole) & body[box] & (out[box] == 0)
        sub = out[box]
        sub[m] = value
    log.info("autolabel_ct_lungs: %.1f s", time.perf_counter() - t0)
    return ct.with_array(out, kind="label")


def autolabel(
    input: str | PathLike[str],
    out: str | PathLike[str],
    params: AutolabelParams | None = None,
) -> tuple[Image, Path]:
    """Label the lungs of a chest CT file or DICOM folder and write the label map (library verb of
    ``medseg autolabel ct-lungs``).

    The output format follows ``out``'s suffix through :func:`medseg.io.write_label_map` (``.dcm`` =
    DICOM-SEG referring to the DICOM CT; ``.nii.gz``, ``.mha``, ``.nrrd`` = label map); the path is
    checked before the (seconds-long) labelling starts.

    Returns:
        ``(labels, path written)``; labels ``(z, y, x)`` with 1 = right lung, 2 = left lung.
    """
    from medseg.io import check_label_map_path, read_image, write_label_map

    check_label_map_path(out)
    ct = read_image(input, modality="CT")
    check_label_map_path(out, source=ct)
    labels = autolabel_ct_lungs(ct, params)
    written = write_label_map(labels, out, source=ct, label_names=LUNG_LABELS,
                              algorithm_name="medseg autolabel ct-lungs")
    return labels, written
