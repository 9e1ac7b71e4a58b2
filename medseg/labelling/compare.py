"""Agreement between annotators: pairwise metrics, STAPLE / majority-vote consensus, CSV report.

Every mask must be on the same grid (shape and affine); nothing is resampled. Distances are in mm
when every mask knows its pixel spacing (NIfTI, DICOM, DICOM-SEG) and in **pixels** otherwise
(PNG/JPEG masks carry no spacing); sizes are mL (3-D), cm^2 (2-D) or pixel/voxel counts likewise.
The report says which (``distance_unit``, ``size_unit``).
"""

from __future__ import annotations

import csv
import io
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from itertools import combinations
from os import PathLike
from pathlib import Path
from typing import Literal

import numpy as np

from medseg.errors import ConfigError, ExportError, GeometryError, InputError
from medseg.image import Image
from medseg.labelling.checks import require_label_map
from medseg.metrics import per_label_metrics
from medseg.structures import LabelMap
from medseg.utils import atomic_path

__all__ = [
    "AgreementRow",
    "AgreementReport",
    "agreement",
    "consensus",
    "check_consensus_path",
    "ConsensusMethod",
]

logger = logging.getLogger(__name__)

ConsensusMethod = Literal["staple", "majority"]
MaskInput = str | PathLike[str] | Image


@dataclass(frozen=True)
class AgreementRow:
    """One comparison of one structure between a reference and a rater.

    ``comparison`` is ``"pair"`` (two raters), ``"vs consensus"`` (a rater against the STAPLE or
    majority consensus, which is the reference) or ``"pairwise mean"`` (mean over all rater pairs;
    sizes are NaN there). ``size_diff = size_rater - size_reference``; ``size_diff_pct`` is relative
    to the reference. ``sensitivity``/``specificity`` are STAPLE's estimates for the rater (else None).
    """

    structure: str
    label: int
    comparison: str
    reference: str
    rater: str
    dice: float
    hd95: float
    hausdorff: float
    size_reference: float
    size_rater: float
    size_diff: float
    size_diff_pct: float
    sensitivity: float | None = None
    specificity: float | None = None


@dataclass
class AgreementReport:
    """Result of :func:`agreement`: a table of :class:`AgreementRow` plus context.

    Attributes:
        rows: the table, grouped by structure (label order).
        raters: rater names (file names or those given), input order.
        labels: label value -> structure name compared.
        method: consensus method for 3+ raters, ``None`` for 2.
        distance_unit: ``"mm"`` or ``"px"`` (spacing unknown for at least one mask).
        size_unit: ``"mL"``, ``"cm2"``, ``"voxels"`` or ``"px"``.
        consensus: the consensus label map (3+ raters), on the raters' grid.
        notes: caveats to show the user (e.g. distances in pixels).
        sources: the input files (never overwritten by :meth:`to_csv` / :meth:`save_consensus`).
        reference_image: the annotated image (``source=`` of :func:`agreement`), if given; a
            DICOM one lets :meth:`save_consensus` write a DICOM-SEG.
    """

    rows: list[AgreementRow]
    raters: list[str]
    labels: dict[int, str]
    method: str | None
    distance_unit: str
    size_unit: str
    consensus: Image | None = None
    notes: list[str] = field(default_factory=list)
    sources: list[Path] = field(default_factory=list)
    reference_image: Image | None = None

    def as_dicts(self) -> list[dict[str, object]]:
        """The rows as plain dicts (plus the units), e.g. for a DataFrame."""
        return [
            {**asdict(r), "distance_unit": self.distance_unit, "size_unit": self.size_unit} for r in self.rows
        ]

    def to_csv(self, path: str | PathLike[str]) -> Path:
        """Write the table as CSV (atomically: temp file + rename; never over an input). Returns the path."""
        buf = io.StringIO()
        names = [f.name for f in fields(AgreementRow)] + ["distance_unit", "size_unit"]
        writer = csv.DictWriter(buf, fieldnames=names, lineterminator="\n")
        writer.writeheader()
        for row in self.as_dicts():
            writer.writerow({k: _fmt(v) for k, v in row.items()})
        target = Path(path)
        with atomic_path(target, protect=tuple(self.sources)) as tmp:
            tmp.write_text(buf.getvalue())
        logger.info("wrote agreement table %s (%d rows)", target, len(self.rows))
        return target

    def save_consensus(self, path: str | PathLike[str]) -> Path:
        """Write the consensus label map atomically; the format follows the suffix.

        ``.nii.gz``/``.nii``/``.mha``/``.nrrd``/``.png`` via :func:`medseg.io.write_label_map`
        (which uses :func:`medseg.io.write_image`); ``.dcm`` writes a DICOM-SEG when the report has
        a DICOM ``reference_image`` (``agreement(..., source=CT)``). Never over an input.

        Raises:
            ExportError: no consensus (fewer than 3 raters), an input path, or an unusable suffix.
        """
        if self.consensus is None:
            raise ExportError(
                f"no consensus to save: {len(self.raters)} masks given",
                path=path,
                hint="a consensus (STAPLE / majority) needs 3 or more masks",
            )
        target = check_consensus_path(path, self.sources, source=self.reference_image)
        from medseg.io import write_label_map

        out = write_label_map(self.consensus, target, source=self.reference_image, label_names=self.labels)
        logger.info("wrote %s consensus %s", self.method, out)
        return out


def check_consensus_path(
    path: str | PathLike[str],
    inputs: Sequence[str | PathLike[str]],
    *,
    source: Image | str | PathLike[str] | None = None,
    n_masks: int | None = None,
) -> Path:
    """Validate a consensus output path before any work: a label-map suffix, not a folder, not an
    input, and for ``.dcm`` (DICOM-SEG) an annotated image ``source`` (a DICOM one: checked here
    when ``source`` is an Image, else when writing). ``n_masks``: how many masks will be compared
    (a consensus needs 3 or more).

    Raises:
        ConfigError / ExportError: naming ``path`` with the fix.
    """
    from medseg.io import check_label_map_path

    if n_masks is not None and n_masks < 3:
        raise ConfigError(
            f"--consensus-out needs 3 or more masks, got {n_masks}", path="--consensus-out",
            hint="a STAPLE / majority consensus of two raters is not defined here; pass a third mask",
        )
    target = Path(path)
    if any(Path(x).resolve() == target.resolve() for x in inputs):
        raise ExportError("refusing to overwrite an input file", path=target, hint="choose another output path")
    if target.name.lower().endswith(".dcm") and source is None:
        raise ExportError(
            "a DICOM-SEG consensus needs the annotated DICOM image",
            path=target,
            hint="pass the DICOM series with --image (Python: source=), or write .nii.gz / .png",
        )
    return check_label_map_path(target, source=source if isinstance(source, Image) else None)


def _fmt(v: object) -> object:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return v


def _unique_names(inputs: Sequence[MaskInput]) -> list[str]:
    names: list[str] = []
    for i, item in enumerate(inputs):
        if isinstance(item, Image):
            path = item.source.path
            names.append(Path(path).name if path is not None else f"rater{i + 1}")
        else:
            names.append(Path(item).name)
    if len(set(names)) < len(names):  # same file name in different folders: add the parent
        names = [
            f"{Path(x).parent.name}/{n}" if not isinstance(x, Image) else n
            for x, n in zip(inputs, names, strict=True)
        ]
    if len(set(names)) < len(names):
        names = [f"{i + 1}:{n}" for i, n in enumerate(names)]
    return names


def _load(
    inputs: Sequence[MaskInput], label_names: Mapping[int, str] | None, source: Image | None
) -> tuple[list[Image], dict[int, str]]:
    from medseg.io import read_label_map

    images: list[Image] = []
    names: dict[int, str] = {}
    for item in inputs:
        seg_names: dict[int, str] = {}
        if isinstance(item, Image):
            img = item
        else:
            img, seg_names = read_label_map(item, label_names=label_names, source=source)
        require_label_map(img)
        for k, v in seg_names.items():
            names.setdefault(k, v)
        images.append(img)
    return images, names


def _reindexed(ref: Image, img: Image, atol: float) -> Image | None:
    """``img`` on ``ref``'s grid when both grids hold the same voxel centres in another index order
    (axes flipped or permuted, e.g. a DICOM-SEG stored top-down vs a NIfTI stored bottom-up), else None.

    Done with numpy flips/transposes (exact) because resampling would be lossy for any other grid.
    """
    n = ref.ndim
    if img.ndim != n:
        return None
    m = np.linalg.inv(ref.affine) @ img.affine  # img index (x, y[, z]) -> ref index
    lin, shift = m[:n, :n], m[:n, n]
    perm = np.round(lin)
    if not np.allclose(lin, perm, atol=atol) or not np.allclose(np.abs(perm).sum(axis=0), 1):
        return None
    if not np.allclose(np.abs(perm).sum(axis=1), 1):
        return None
    ref_axis = [int(np.argmax(np.abs(perm[:, i]))) for i in range(n)]  # img index axis i -> ref axis
    sign = [float(perm[ref_axis[i], i]) for i in range(n)]
    for i in range(n):
        a = ref_axis[i]
        if img.size[i] != ref.size[a]:
            return None
        expected = 0.0 if sign[i] > 0 else ref.size[a] - 1.0
        if abs(shift[a] - expected) > 1e-3:
            return None
    data = np.transpose(img.array)  # index order (x, y[, z])
    order = [ref_axis.index(a) for a in range(n)]  # ref axis a comes from img axis order[a]
    data = np.transpose(data, order)
    for a in range(n):
        if sign[order[a]] < 0:
            data = np.flip(data, axis=a)
    return ref.with_array(np.ascontiguousarray(np.transpose(data)), kind="label").replace(source=img.source)


def _check_geometry(images: list[Image], raters: Sequence[str], atol: float) -> None:
    """Raise GeometryError naming the file unless every image is on ``images[0]``'s grid.

    Grids with the same voxel centres in another index order are re-indexed in place (exact).
    """
    ref = images[0]
    for idx in range(1, len(images)):
        img, name = images[idx], raters[idx]
        if img.shape == ref.shape and np.allclose(img.affine, ref.affine, atol=atol):
            continue
        same = _reindexed(ref, img, atol)
        if same is not None:
            logger.info("%s: same grid as %s in another index order; re-indexed", name, raters[0])
            images[idx] = same
            continue
        if img.shape != ref.shape:
            raise GeometryError(
                f"mask of rater {name!r} has shape {img.shape}, but {raters[0]!r} has {ref.shape}",
                path=img.source.path or name,
                hint="all annotations must be drawn on the same image grid; resample them first",
            )
        raise GeometryError(
            f"mask of rater {name!r} has another position/spacing/orientation than {raters[0]!r} "
            f"(spacing {_mm(img.spacing)} vs {_mm(ref.spacing)}, origin {_mm(img.origin)} vs {_mm(ref.origin)}, "
            f"orientation {img.orientation} vs {ref.orientation})",
            path=img.source.path or name,
            hint="all annotations must be on the same image grid; resample them onto one reference",
        )


def _mm(values: Sequence[float]) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in values) + ")"


def _resolve_labels(
    labels: Mapping[int, str] | Iterable[int] | None, images: Sequence[Image], names: Mapping[int, str]
) -> tuple[dict[int, str], bool]:
    """``({value: structure name}, whether the default lung names were used)``.

    Names: the given mapping (checked by :class:`medseg.structures.LabelMap`), else DICOM-SEG
    segment labels, else the project's default :class:`LabelMap` (1 right lung, 2 left lung),
    else ``"label <value>"``.
    """
    if isinstance(labels, Mapping):
        given = {int(k): str(v) for k, v in labels.items() if int(k) != 0}
        return LabelMap.coerce(given).display_names(), False
    if labels is not None:
        values = sorted({int(v) for v in labels} - {0})
    else:
        present: set[int] = set()
        for img in images:
            present.update(int(v) for v in np.unique(img.array))
        values = sorted(present - {0})
    default = LabelMap.coerce(None).display_names()
    out: dict[int, str] = {}
    used_default = False
    for v in values:
        if v in names:
            out[v] = names[v]
        elif v in default:
            out[v] = default[v]
            used_default = True
        else:
            out[v] = f"label {v}"
    return out, used_default


def consensus(
    images: Sequence[Image],
    labels: Iterable[int],
    *,
    method: ConsensusMethod = "staple",
    max_iterations: int = 200,
) -> tuple[Image, dict[int, list[tuple[float, float]]]]:
    """Consensus label map of several raters on one grid.

    * ``"staple"``: SimpleITK ``STAPLEImageFilter`` run per structure on the binary masks
      (foreground 1); a voxel gets the structure with the highest STAPLE probability if that is
      >= 0.5, else background. Returns each rater's (sensitivity, specificity) per structure.
    * ``"majority"``: SimpleITK ``LabelVoting`` (plurality vote over the listed labels; values not
      listed count as background); ties -> background. No sensitivity/specificity (``{}``).

    The geometry of the images is not checked here (see :func:`agreement`); the result carries the
    geometry of ``images[0]``.
    """
    import SimpleITK as sitk

    values = [int(v) for v in labels if int(v) != 0]
    if len(images) < 2:
        raise InputError(f"a consensus needs at least 2 raters, got {len(images)}")
    first = images[0]
    if method == "majority":
        dtype = np.uint8 if max(values, default=0) < 256 else np.uint16
        votes = []
        for img in images:
            arr = np.where(np.isin(img.array, values), img.array, 0).astype(dtype)
            votes.append(sitk.GetImageFromArray(arr))
        out = sitk.GetArrayFromImage(sitk.LabelVoting(votes, 0)).astype(dtype)
        return first.with_array(out, kind="label"), {}
    if method != "staple":
        raise InputError(f"unknown consensus method {method!r}", hint="use 'staple' or 'majority'")
    best = np.zeros(first.shape, dtype=np.float32)
    out_arr = np.zeros(first.shape, dtype=np.uint8 if max(values, default=0) < 256 else np.uint16)
    stats: dict[int, list[tuple[float, float]]] = {}
    for value in values:
        masks = [img.array == value for img in images]
        if not any(m.any() for m in masks):
            stats[value] = [(math.nan, math.nan)] * len(images)
            continue
        filt = sitk.STAPLEImageFilter()
        filt.SetForegroundValue(1.0)
        filt.SetMaximumIterations(max_iterations)
        prob_img = filt.Execute([sitk.GetImageFromArray(m.astype(np.uint8)) for m in masks])
        prob = sitk.GetArrayFromImage(prob_img).astype(np.float32)
        stats[value] = list(zip(filt.GetSensitivity(), filt.GetSpecificity(), strict=True))
        take = (prob >= 0.5) & (prob > best)
        out_arr[take] = value
        best = np.maximum(best, np.where(prob >= 0.5, prob, 0.0).astype(np.float32))
        logger.debug("STAPLE label %d: %d iterations", value, filt.GetElapsedIterations())
    return first.with_array(out_arr, kind="label"), stats


def agreement(
    paths_or_images: Sequence[MaskInput],
    *,
    labels: Mapping[int, str] | Iterable[int] | None = None,
    method: ConsensusMethod = "staple",
    names: Sequence[str] | None = None,
    source: Image | str | PathLike[str] | None = None,
    geometry_atol: float = 1e-3,
) -> AgreementReport:
    """Compare the annotations of 2 or more raters of the same image, structure by structure.

    Args:
        paths_or_images: label maps (files: PNG/NIfTI/NRRD/DICOM/DICOM-SEG, or label Images), all
            on the same grid (else :class:`GeometryError` naming the file). A grid with the same
            voxel centres in another index order (e.g. slices stored top-down) is re-indexed.
        labels: ``{value: name}`` or values to compare; default every non-zero value present, named
            by DICOM-SEG segment labels when available, else by the default lung
            :class:`~medseg.structures.LabelMap` (1 right lung, 2 left lung; a note says so), else
            ``"label <value>"``. With a mapping, DICOM-SEG segments are matched to values by
            segment label (case-insensitive).
        method: consensus for 3+ raters: ``"staple"`` (default) or ``"majority"``.
        names: rater names (default: the file names).
        source: the image that was annotated (Image or file). DICOM-SEG inputs are then placed on
            its grid (needed when a SEG covers only some slices); every mask must match it.
        geometry_atol: tolerance in mm on the affines.

    Returns:
        2 raters: one ``"pair"`` row per structure (first rater = reference). 3+ raters: per
        structure, each rater ``"vs consensus"``, every ``"pair"``, and the ``"pairwise mean"``.
    """
    if isinstance(paths_or_images, (str, PathLike, Image)):  # one path, not a list of characters
        paths_or_images = [paths_or_images]
    inputs = list(paths_or_images)
    if len(inputs) < 2:
        raise InputError(
            f"agreement needs at least 2 annotations, got {len(inputs)}", hint="pass two or more mask files"
        )
    if names is not None and len(names) != len(inputs):
        raise InputError(f"{len(names)} rater names given for {len(inputs)} masks")
    ref_image: Image | None = None
    if source is not None:
        if isinstance(source, Image):
            ref_image = source
        else:
            from medseg.io import read_image

            ref_image = read_image(source)
    images, seg_names = _load(inputs, labels if isinstance(labels, Mapping) else None, ref_image)
    raters = list(names) if names is not None else _unique_names(inputs)
    if ref_image is not None:  # every mask must be on the annotated image's grid
        ref_name = Path(ref_image.source.path).name if ref_image.source.path else "source image"
        checked = [ref_image.with_array(np.zeros(ref_image.shape, np.uint8), kind="label"), *images]
        _check_geometry(checked, [ref_name, *raters], geometry_atol)
        images = checked[1:]
    _check_geometry(images, raters, geometry_atol)
    label_map, default_names = _resolve_labels(labels, images, seg_names)
    if not label_map:
        raise InputError(
            "no structure to compare: every mask is empty", hint="check the masks or pass labels"
        )
    spacing_known = all(img.spacing_known for img in images)
    spacing = tuple(reversed(images[0].spacing)) if spacing_known else None
    notes = [] if spacing_known else ["pixel spacing unknown for at least one mask: distances in pixels"]
    if default_names:
        notes.append(
            "structure names follow the default labels "
            + ", ".join(f"{v}={n}" for v, n in LabelMap.coerce(None).display_names().items())
            + " (pass labels / --labels if your masks use others)"
        )

    def compare(a: Image, b: Image) -> dict[int, dict[str, float | str]]:
        return per_label_metrics(a.array, b.array, label_map, spacing)

    pair_metrics = {(i, j): compare(images[i], images[j]) for i, j in combinations(range(len(images)), 2)}
    any_metrics = next(iter(pair_metrics.values()))
    first_label = next(iter(label_map))
    distance_unit = str(any_metrics[first_label]["distance_unit"])
    size_unit = str(any_metrics[first_label]["size_unit"])

    rows: list[AgreementRow] = []
    cons_img: Image | None = None
    cons_metrics: list[dict[int, dict[str, float | str]]] = []
    stats: dict[int, list[tuple[float, float]]] = {}
    cons_name = ""
    if len(images) >= 3:
        cons_img, stats = consensus(images, label_map, method=method)
        cons_name = f"consensus ({method})"
        cons_metrics = [compare(cons_img, img) for img in images]

    for value, structure in label_map.items():
        for r, m in enumerate(cons_metrics):
            sens_spec = stats.get(value, [(None, None)] * len(images))[r]
            rows.append(_row(structure, value, "vs consensus", cons_name, raters[r], m[value], *sens_spec))
        for (i, j), m in pair_metrics.items():
            rows.append(_row(structure, value, "pair", raters[i], raters[j], m[value]))
        if len(images) >= 3:
            vals = [m[value] for m in pair_metrics.values()]
            rows.append(
                AgreementRow(
                    structure=structure,
                    label=value,
                    comparison="pairwise mean",
                    reference="all pairs",
                    rater="all pairs",
                    dice=float(np.mean([float(v["dice"]) for v in vals])),
                    hd95=float(np.mean([float(v["hd95"]) for v in vals])),
                    hausdorff=float(np.mean([float(v["hausdorff"]) for v in vals])),
                    size_reference=math.nan,
                    size_rater=math.nan,
                    size_diff=math.nan,
                    size_diff_pct=math.nan,
                )
            )
    return AgreementReport(
        rows=rows,
        raters=raters,
        labels=label_map,
        method=method if len(images) >= 3 else None,
        distance_unit=distance_unit,
        size_unit=size_unit,
        consensus=cons_img,
        notes=notes,
        sources=[Path(x) for x in [*inputs, source] if x is not None and not isinstance(x, Image)],
        reference_image=ref_image,
    )


def _row(
    structure: str,
    label: int,
    comparison: str,
    reference: str,
    rater: str,
    m: Mapping[str, float | str],
    sensitivity: float | None = None,
    specificity: float | None = None,
) -> AgreementRow:
    return AgreementRow(
        structure=structure,
        label=label,
        comparison=comparison,
        reference=reference,
        rater=rater,
        dice=float(m["dice"]),
        hd95=float(m["hd95"]),
        hausdorff=float(m["hausdorff"]),
        size_reference=float(m["size_a"]),
        size_rater=float(m["size_b"]),
        size_diff=float(m["size_diff"]),
        size_diff_pct=float(m["size_diff_pct"]),
        sensitivity=None if sensitivity is None else float(sensitivity),
        specificity=None if specificity is None else float(specificity),
    )
