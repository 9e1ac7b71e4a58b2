"""End-to-end nodule detection: CT -> lung + nodule segmentation -> candidates -> CSV, DICOM-SEG, SR, PNG.

:func:`detect_nodules` runs a lung + nodule model (a :class:`~medseg.infer.Predictor`, e.g. one
trained with ``configs/ct_nodule.yaml``), takes the softmax probability of the label named
``nodule`` on the CT grid, keeps the above-threshold components that touch the predicted lung
(grown by ``lung_margin_mm``) and turns them into :class:`~medseg.detect.Detection` objects with
:func:`~medseg.detect.detect_candidates` (equivalent diameter filter, NMS).

Why "touch the lung" and not "inside the lung": the argmax labels a nodule voxel *nodule*, not
*lung*, so the predicted lung has a notch where a juxtapleural nodule sits; masking the voxels by
the lung would cut such a nodule in pieces. A whole component is kept when any of its voxels lies
within ``lung_margin_mm`` of the lung; components away from the lung (bowel, body wall) are dropped.

:func:`write_nodule_outputs` writes ``candidates.csv`` (LUNA16), and for a DICOM CT ``seg.dcm``
(DICOM-SEG: the lung segment(s) + **one** *Nodule* segment holding every detected nodule) and
``sr.dcm`` (TID 1500 SR: one measurement group per nodule, referencing the SEG's nodule segment),
plus ``overlay.png``. World coordinates are mm in the DICOM patient frame (LPS); arrays are
``(z, y, x)``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import numpy as np
from scipy import ndimage

from medseg.detect.candidates import Detection, detect_candidates, write_candidates_csv
from medseg.errors import GeometryError, InputError, ModelError
from medseg.export.outputs import CaseContext, OutputSpec, register_output
from medseg.image import Image
from medseg.infer.predictor import Prediction, Predictor
from medseg.io.formats import stem_of
from medseg.structures import LabelMap, parse_structure

__all__ = ["NoduleResult", "detect", "detect_nodules", "write_nodule_outputs", "OUTPUT_FILES"]

log = logging.getLogger(__name__)

#: output name per kind written by :func:`write_nodule_outputs`
OUTPUT_FILES = {"csv": "candidates.csv", "seg": "seg.dcm", "sr": "sr.dcm", "overlay": "overlay.png"}
_STRUCTURE = np.ones((3, 3, 3), dtype=bool)  # 26-connectivity, as detect_candidates


@dataclass(frozen=True)
class NoduleResult:
    """What :func:`detect_nodules` returns.

    Attributes:
        detections: nodule candidates sorted by decreasing score (centres in world mm, LPS).
        prediction: the model output (``labels`` on the CT grid, ``probabilities`` ``(K, z, y, x)``).
        nodule_components: ``uint16`` label Image on the CT grid: value ``n`` marks the voxels of
            ``detections[n - 1]`` (its above-threshold component); 0 elsewhere.
        lung_labels: the model's lung label values -> names (e.g. ``{1: "lung"}`` or right/left).
        nodule_value: the model's label value of the nodule class.
        threshold: the probability threshold used.
    """

    detections: list[Detection]
    prediction: Prediction
    nodule_components: Image
    lung_labels: dict[int, str]
    nodule_value: int
    threshold: float

    def segmentation(self) -> tuple[Image, dict[int, str]]:
        """Label map for export: the predicted lung labels, the detected nodules painted on top
        with ``nodule_value`` (one class for all nodules). Returns ``(labels, {value: name})``."""
        pred = np.asarray(self.prediction.labels.array)
        out = np.where(np.isin(pred, list(self.lung_labels)), pred, 0).astype(np.uint8)
        out[np.asarray(self.nodule_components.array) > 0] = self.nodule_value
        names = {**self.lung_labels, self.nodule_value: self.prediction.label_names[self.nodule_value]}
        return self.prediction.labels.with_array(out, kind="label"), names


def _label_values(names: dict[int, str], organ_name: str) -> dict[int, str]:
    """Label values whose structure is ``organ_name``'s organ, any side, any spelling."""
    organ = parse_structure(organ_name).organ
    structures = LabelMap.coerce(names)
    return {v: names[v] for v, s in structures.items() if s.organ == organ}


def _touching_lung(fg: np.ndarray, lung: np.ndarray, image: Image, margin_mm: float) -> np.ndarray:
    """The 26-connected components of ``fg`` with a voxel within ``margin_mm`` (world mm) of ``lung``.

    Only the bounding box of ``fg`` grown by the margin is examined (a lung-sized distance
    transform would cost seconds and hundreds of MB on a whole CT).
    """
    if not fg.any() or not lung.any():
        return np.zeros_like(fg)
    sx, sy, sz = image.spacing
    spacing = (sz, sy, sx)
    pad = [int(math.ceil(max(margin_mm, 0.0) / s)) + 1 for s in spacing]
    nz = np.nonzero(fg)
    box = tuple(
        slice(max(int(ax.min()) - p, 0), min(int(ax.max()) + p + 1, n))
        for ax, p, n in zip(nz, pad, fg.shape, strict=True)
    )
    lung_box = lung[box]
    if not lung_box.any():
        return np.zeros_like(fg)
    near = ndimage.distance_transform_edt(~lung_box, sampling=spacing) <= max(margin_mm, 0.0)
    comps, _ = ndimage.label(fg[box], structure=_STRUCTURE)
    ids = np.unique(comps[near & (comps > 0)])
    out = np.zeros_like(fg)
    out[box] = np.isin(comps, ids[ids > 0])
    return out


def _component_map(keep: np.ndarray, prob: np.ndarray, detections: list[Detection]) -> np.ndarray:
    """``uint16`` map: value n on the component whose probability-weighted centroid is detection n's."""
    out = np.zeros(keep.shape, dtype=np.uint16)
    if not detections or not keep.any():
        return out
    comps, n = ndimage.label(keep, structure=_STRUCTURE)
    idx = np.arange(1, n + 1)
    com = np.asarray(ndimage.center_of_mass(prob, comps, idx), dtype=np.float64).reshape(n, 3)[:, ::-1]
    for rank, det in enumerate(detections, start=1):
        j = int(np.argmin(np.sum((com - np.asarray(det.center_index)) ** 2, axis=1)))
        out[comps == j + 1] = rank
    return out


def detect_nodules(
    image: Image,
    predictor: Predictor,
    *,
    threshold: float = 0.5,
    min_diameter_mm: float = 3.0,
    lung_label: str | None = "lung",
    nodule_label: str = "nodule",
    lung_margin_mm: float = 5.0,
    nms_distance_mm: float | None = None,
) -> NoduleResult:
    """Detect lung nodules in a CT with a lung + nodule segmentation model.

    Args:
        image: the CT, 3-D ``(z, y, x)`` in HU with an LPS affine (DICOM series or NIfTI).
        predictor: a model whose labels include ``nodule_label`` (and ``lung_label``, or
            "right <lung_label>" / "left <lung_label>"), e.g. trained with ``configs/ct_nodule.yaml``.
        threshold: on the nodule probability (softmax channel of the nodule label).
        min_diameter_mm: smallest equivalent-sphere diameter kept (LUNA16: 3 mm).
        lung_label: name of the lung label(s); ``None`` keeps candidates anywhere in the scan.
        nodule_label: name of the nodule label.
        lung_margin_mm: a component is kept when one of its voxels is this close to the predicted lung.
        nms_distance_mm: see :func:`~medseg.detect.non_max_suppression` (None = sum of radii).

    Returns:
        :class:`NoduleResult` (detections sorted by decreasing score).

    Raises:
        ModelError: the model has no label named ``nodule_label`` / ``lung_label``.
        GeometryError: the image is not 3-D.
        InputError: bad threshold, or the predictor's own input checks.
    """
    if image.ndim != 3:
        raise GeometryError(
            f"nodule detection needs a 3-D CT, got a {image.ndim}-D image of shape {image.shape}",
            path=image.source.path,
            hint="pass a CT series folder or a 3-D NIfTI",
        )
    if not 0.0 < threshold <= 1.0:
        raise InputError(f"threshold must be in (0, 1], got {threshold}", hint="e.g. --threshold 0.5")
    names = predictor.label_names
    nodules = _label_values(names, nodule_label)
    if len(nodules) != 1:
        raise ModelError(
            f"the model has {'no label' if not nodules else 'several labels'} named {nodule_label!r} (labels {names})",
            hint="use a lung + nodule model, e.g. one trained with configs/ct_nodule.yaml",
        )
    nodule_value = next(iter(nodules))
    lung_labels: dict[int, str] = {}
    if lung_label is not None:
        lung_labels = _label_values(names, lung_label)
        if not lung_labels:
            raise ModelError(
                f"the model has no label named {lung_label!r} (or right/left {lung_label!r}); labels {names}",
                hint="pass lung_label=None to keep candidates anywhere in the scan",
            )

    prediction = predictor.predict(image, return_probabilities=True)
    # softmax of a linear interpolation stays in [0, 1] up to rounding
    prob = np.clip(np.asarray(prediction.probabilities[nodule_value], dtype=np.float32), 0.0, 1.0)
    fg = prob >= threshold
    if lung_labels:
        lung = np.isin(np.asarray(prediction.labels.array), list(lung_labels))
        if lung.any():
            fg = _touching_lung(fg, lung, image, lung_margin_mm)
        else:
            log.warning("%s: no lung predicted; candidates are not restricted to the lung", image.source.path or "CT")
    # the mask already holds exactly the kept components: no further dilation
    detections = detect_candidates(
        prob, image, lung_mask=fg, threshold=threshold, min_diameter_mm=min_diameter_mm,
        nms_distance_mm=nms_distance_mm, lung_margin_mm=0.0,
    )
    components = _component_map(fg, prob, detections)
    log.info("%s: %d nodule candidate(s) at threshold %.2f", image.source.path or "CT", len(detections), threshold)
    return NoduleResult(
        detections=detections,
        prediction=prediction,
        nodule_components=image.with_array(components, kind="label"),
        lung_labels=lung_labels,
        nodule_value=nodule_value,
        threshold=float(threshold),
    )


def _series_name(image: Image, seriesuid: str | None) -> str:
    if seriesuid:
        return seriesuid
    uid = image.source.series_instance_uid
    if uid:
        return uid
    path = image.source.path
    if path is None:
        raise InputError(
            "the CT has no SeriesInstanceUID and no file name to name it by in candidates.csv",
            hint="pass seriesuid=",
        )
    return stem_of(path)  # LUNA16 names its .mhd files by the series UID


def _overlay_crop(image: Image, labels: Image, result: NoduleResult, n: int = 6) -> tuple[Image, Image]:
    """The slab of slices spanned by the ``n`` best nodules (the montage then shows them), else everything."""
    comp = np.asarray(result.nodule_components.array)
    top = np.isin(comp, np.arange(1, min(n, len(result.detections)) + 1))
    zs = np.flatnonzero(top.any(axis=(1, 2)))
    if zs.size == 0:
        return image, labels
    z0, z1 = int(zs.min()), int(zs.max()) + 1
    affine = image.affine.copy()
    affine[:3, 3] = image.index_to_world(np.array([0.0, 0.0, float(z0)]))
    crop = Image(np.asarray(image.array)[z0:z1], affine, "intensity", image.modality)
    return crop, crop.with_array(np.asarray(labels.array)[z0:z1], kind="label")


def write_nodule_outputs(
    result: NoduleResult,
    image: Image,
    out_dir: str | PathLike[str],
    *,
    seriesuid: str | None = None,
) -> dict[str, Path]:
    """Write the detection results of one CT into ``out_dir`` (created; every file atomically).

    * ``candidates.csv``: LUNA16 ``seriesuid,coordX,coordY,coordZ,probability`` (mm, LPS; header
      only when nothing was found). ``seriesuid``: given, else the CT's SeriesInstanceUID, else
      the file name without extension (LUNA16 names ``.mhd`` files by their series UID).
    * ``seg.dcm`` (DICOM CT only, when any lung or nodule voxel): DICOM-SEG with the lung
      segment(s) and one *Nodule* segment holding all detected nodules.
    * ``sr.dcm`` (DICOM CT with at least one detection): TID 1500 Comprehensive 3D SR, one group
      per nodule (centre point, diameter, volume, probability), referencing the SEG's nodule segment.
    * ``overlay.png``: lung + nodule contours on axial slices through the best nodules, and a
      coronal view.

    Returns:
        ``{"csv": path, "seg": path, "sr": path, "overlay": path}`` for the files written.

    Raises:
        GeometryError: ``image`` is not the CT the result was computed on.
        ExportError: a DICOM writer failed.
    """
    from medseg.export.outputs import CaseContext, write_case_outputs

    if not result.nodule_components.same_geometry(image, atol=1e-3):
        raise GeometryError(
            f"the result ({result.nodule_components.shape}) was not computed on this CT ({image.shape})",
            path=image.source.path,
            hint="pass the CT given to detect_nodules",
        )
    out = Path(out_dir)
    labels, names = result.segmentation()
    if not image.source.is_dicom:
        log.info("%s is not DICOM: no DICOM-SEG/SR (they must reference the DICOM series)", image.source.path)
    ctx = CaseContext(
        image=image, labels=labels, label_names=names, dicom_source=image if image.source.is_dicom else None,
        protect=tuple(Path(p) for p in image.source.files),
        extra={"detections": result.detections, "seriesuid": _series_name(image, seriesuid),
               "nodule_value": result.nodule_value, "overlay_view": _overlay_crop(image, labels, result),
               "seg_options": {"algorithm_name": "medseg nodule detection",
                               "series_description": "medseg lung + nodules"}},
    )
    formats = ["candidates", "seg", "sr", "overlay"] if image.source.is_dicom else ["candidates", "overlay"]
    written = write_case_outputs(ctx, out, out.name, formats, layout="case")
    return {("csv" if k == "candidates" else k): v for k, v in written.items()}


def _write_candidates(ctx: CaseContext, path: Path) -> Path | None:
    return write_candidates_csv(path, ctx.extra["seriesuid"], ctx.extra.get("detections", []))


def _write_sr(ctx: CaseContext, path: Path) -> Path | None:
    from medseg.detect.sr import write_nodule_sr

    detections = ctx.extra.get("detections", [])
    if ctx.dicom_source is None or not detections:
        log.info("%s: no nodule found; no SR written (TID 1500 needs a finding)", ctx.image.source.path)
        return None
    has_nodule = bool(np.any(np.asarray(ctx.labels.array) == ctx.extra.get("nodule_value", -1)))
    return write_nodule_sr(detections, ctx.dicom_source, path, seg=ctx.written.get("seg") if has_nodule else None)


# detection's own case outputs, in the one table (written after seg: the SR refers to it)
register_output(OutputSpec("candidates", "LUNA16 candidates CSV (seriesuid, coordX/Y/Z mm LPS, probability)",
                           lambda k: OUTPUT_FILES["csv"] if k.ndim == 3 else None, _write_candidates))
register_output(OutputSpec("sr", "TID 1500 DICOM SR: one finding per nodule, referring to the SEG",
                           lambda k: OUTPUT_FILES["sr"] if k.dicom and k.ndim == 3 else None, _write_sr))


def detect(
    ct: str | PathLike[str],
    checkpoint: str | PathLike[str],
    out_dir: str | PathLike[str],
    *,
    threshold: float | None = None,
    device: str = "auto",
) -> tuple[NoduleResult, dict[str, Path]]:
    """Detect nodules in a CT file or DICOM folder and write its outputs (library verb of ``medseg detect``).

    Detection settings come from the checkpoint's ``detect`` config section (validated with the
    config); ``threshold`` overrides ``detect.threshold``. Outputs as :func:`write_nodule_outputs`.

    Returns:
        ``(result, {"csv"|"seg"|"sr"|"overlay": path})``.
    """
    from medseg.infer.batch import resolve_checkpoint
    from medseg.io import read_image

    folder = resolve_checkpoint(checkpoint)
    predictor = Predictor.from_checkpoint(folder, device=device)
    settings = predictor.config.detect
    image = read_image(ct, modality="CT")
    result = detect_nodules(
        image, predictor, threshold=settings.threshold if threshold is None else threshold,
        min_diameter_mm=settings.min_diameter_mm, lung_margin_mm=settings.lung_margin_mm,
        nms_distance_mm=settings.nms_distance_mm or None,
    )
    return result, write_nodule_outputs(result, image, out_dir)
