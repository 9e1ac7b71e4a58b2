"""DICOM Segmentation objects (DICOM-SEG) for 3D Slicer, OHIF and PACS, written and read with highdicom.

Writing (:func:`write_dicom_seg`) builds the SEG straight from the source DICOM headers and the
label array (never through NIfTI): each source slice (instance, or frame of a multi-frame file)
gets the label slice at its Image Position (Patient), after checking that every source slice lies
exactly on a slice of the label :class:`~medseg.image.Image` grid (``GeometryError`` otherwise). One segment per structure, coded with
:func:`medseg.structures.concept_for`; empty frames are not stored.

Reading (:func:`read_dicom_seg`) decodes a SEG written by any tool back to a label map on the
grid of its source image, purely geometrically where the SEG has a frame of reference (so SEGs
that do not cite source instances per frame still work) and by source instance otherwise
(radiographs). Without a source, volumes come back index-aligned with ``read_image`` of the
source series (same slice order and affine) and 2-D SEGs keep their pixel spacing. BINARY and
LABELMAP SEGs (the two SEG SOP classes, ``medseg.io.dicom.SEG_SOP_CLASSES``) are read alike;
big-endian SEGs are re-encoded in memory for highdicom.

Choices, measured (see ``scripts/bench_seg.py`` and ``docs/benchmarks.md``):

* ``BINARY`` (default) is the most widely read type; it is stored uncompressed, 1 bit per pixel.
* ``LABELMAP`` (one frame per slice, pixel value = segment number) is smaller and faster. It is
  RLE Lossless by default: JPEG-LS Lossless is 3x smaller still, but dcmqi/DCMTK (the SEG reader
  of 3D Slicer) refuses to decode JPEG-LS segmentations, so it is opt-in (``compression="jpeg-ls"``).
"""

from __future__ import annotations

import copy
import logging
import warnings
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor
from os import PathLike
from pathlib import Path
from typing import Any, Literal, NamedTuple

import highdicom as hd
import numpy as np
import pydicom
from pydicom.multival import MultiValue
from pydicom.sr.codedict import codes

from medseg import __version__
from medseg.colours import RGB, label_colours
from medseg.errors import DicomInputError, ExportError, GeometryError, InputError
from medseg.image import Image, ImageSource, present_labels
from medseg.io._common import check_image, reader_guard
from medseg.io.dicom import SEG_SOP_CLASSES, check_seg_dataset, read_dataset
from medseg.structures import concept_for
from medseg.utils import atomic_path

__all__ = ["write_dicom_seg", "read_dicom_seg", "DicomSeg", "SegmentationType", "Compression"]

log = logging.getLogger(__name__)

SegmentationType = Literal["BINARY", "LABELMAP"]
Compression = Literal["auto", "none", "rle", "jpeg-ls"]


# Attributes highdicom copies from the first source header without a default (Type 2 in the
# SEG): old or anonymised files may lack them, so a copy of that header gets empty values.
_TYPE2_FROM_SOURCE = (
    "PatientID",
    "PatientName",
    "PatientBirthDate",
    "PatientSex",
    "AccessionNumber",
    "StudyID",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
)
_REFERENCE_KEYWORDS = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")
# text VRs whose values are checked (numbers were parsed by pydicom; UIDs are never blanked)
_CHECKED_VRS = {"AE", "AS", "CS", "DA", "DT", "TM", "LO", "LT", "SH", "ST", "PN", "UC", "UR"}


class DicomSeg(NamedTuple):
    """What :func:`read_dicom_seg` returns (unpacks as ``labels, names``).

    Attributes:
        labels: label map (kind ``"label"``, ``uint8``/``uint16``), ``(z, y, x)`` or ``(y, x)``.
        names: ``{label value: segment label}`` for every segment of the SEG.
    """

    labels: Image
    names: dict[int, str]


# ---------------------------------------------------------------------------------------------
# writing
# ---------------------------------------------------------------------------------------------
def write_dicom_seg(
    labels: Image,
    source: Image | None,
    path: str | PathLike[str],
    *,
    label_names: Mapping[int, str],
    segmentation_type: SegmentationType = "BINARY",
    algorithm_name: str = "medseg",
    algorithm_version: str = __version__,
    model_name: str | None = None,
    series_description: str | None = None,
    content_creator: str = "medseg",
    series_number: int | None = None,
    compression: Compression = "auto",
    colours: Mapping[int, RGB] | None = None,
    workers: int | Executor = 0,
) -> Path:
    """Write a label map as a DICOM-SEG that refers to every instance of its source DICOM series.

    Args:
        labels: integer label map (0 = background), ``(z, y, x)`` for a CT/MR series or
            ``(y, x)`` for one radiograph, on exactly the grid of the source DICOM.
        source: the DICOM :class:`Image` the labels were made from; ``None`` to use
            ``labels.source`` (e.g. labels made with ``image.with_array(..., kind="label")``).
            When given, ``labels`` must have its geometry.
        path: output ``.dcm`` file (written atomically; an input file is never overwritten).
        label_names: ``{label value: structure name}``; names are coded with
            :func:`medseg.structures.concept_for` (e.g. "left lung" = Lung + modifier Left).
        segmentation_type: ``"BINARY"`` (one 1-bit frame per segment and slice, widest support)
            or ``"LABELMAP"`` (one frame per slice, pixel value = segment number).
        algorithm_name, algorithm_version, model_name: Segmentation Algorithm Identification
            (family "Artificial Intelligence"; the model name is stored as an algorithm parameter
            and as the Manufacturer's Model Name).
        series_description: Series Description (default ``"<model or algorithm> segmentation"``).
        content_creator: Content Creator's Name.
        series_number: Series Number (default: source series number + 1000).
        compression: ``"auto"`` (BINARY: none; LABELMAP: RLE Lossless), ``"none"``, ``"rle"`` or
            ``"jpeg-ls"`` (LABELMAP only).
        colours: ``{label value: (r, g, b)}`` display colours (default: :func:`label_colour`).
        workers: processes that compress LABELMAP frames (highdicom's ``workers``): 0 = none,
            n > 0 = a new pool of n per call, -1 = all CPUs, or a ``ProcessPoolExecutor`` to reuse
            across calls (cheapest in batch runs).

    Segment numbers: BINARY numbers the present labels 1..K in increasing label value (DICOM
    requires consecutive numbers); LABELMAP keeps the label values as segment numbers. Both
    store each segment's label value in a private element (``_PRIVATE_GROUP``), so
    :func:`read_dicom_seg` gives the same label values back for either type. Labels in
    ``label_names`` with no voxel are left out with a warning.

    Any source that :func:`medseg.io.read_image` reads is accepted where a SEG can refer to it:
    header gaps are filled in copies of the source headers (empty/missing Specific Character
    Set, Type 2 attributes, empty Slice Thickness, Patient Orientation and pixel spacing of 2-D
    images, an unreadable Number Of Frames); see ``docs/interop.md``.

    Returns:
        ``path``.

    Raises:
        ExportError: no DICOM source; a source the SEG cannot refer to (no Study/Series/SOP
            Instance UID; a volume without Frame Of Reference UID; a multi-frame IOD without
            functional groups), naming the attribute; unnamed label values; an all-empty mask;
            an impossible option. highdicom's own messages go to the log, not into the error.
        GeometryError: labels not on the source grid (shape, spacing, orientation or slice
            positions differ).
    """
    path = Path(path)
    seg_type = _check_segmentation_type(segmentation_type, path)
    datasets, files = _source_headers(labels, source, path)
    datasets = _writable_sources(datasets, labels, path)
    frame_slices = _check_grid(labels, source, datasets, path)
    array, present = _present_labels(labels, path)
    segments = _choose_segments(present, label_names, seg_type, path)
    pixel_array = _segment_number_array(array, segments, seg_type)
    if frame_slices is not None:  # highdicom pairs pixel_array[i] with source slice/frame i
        pixel_array = pixel_array[frame_slices]
    transfer_syntax = _transfer_syntax(seg_type, compression, path)

    first = datasets[0]
    colour_of = label_colours([v for v, _, _ in segments], colours)
    family = codes.cid7162.ArtificialIntelligence
    algorithm = hd.AlgorithmIdentificationSequence(
        name=algorithm_name,
        family=family,
        version=str(algorithm_version),
        source="medseg",
        parameters={"model": model_name} if model_name else None,
    )
    descriptions = [
        _segment_description(number, name, algorithm, colour_of[value]) for value, number, name in segments
    ]
    description = (series_description or f"{model_name or algorithm_name} segmentation")[:64]
    try:
        with warnings.catch_warnings():
            # highdicom warns about one-component patient names copied from the source; not ours to fix
            warnings.filterwarnings("ignore", message=".*unlikely to represent the intended person name")
            seg = hd.seg.Segmentation(
                source_images=list(datasets),
                pixel_array=pixel_array,
                segmentation_type=seg_type,
                segment_descriptions=descriptions,
                series_instance_uid=hd.UID(),
                series_number=series_number if series_number is not None else _default_series_number(first),
                sop_instance_uid=hd.UID(),
                instance_number=1,
                manufacturer="medseg",
                manufacturer_model_name=(model_name or algorithm_name)[:64],
                software_versions=f"{algorithm_name} {algorithm_version}"[:64],
                device_serial_number="0",
                content_description=description,
                content_creator_name=_person_name(content_creator),
                content_label="MEDSEG",
                transfer_syntax_uid=transfer_syntax,
                omit_empty_frames=True,
                workers=workers if transfer_syntax.is_encapsulated else 0,
                specific_character_set=specific_character_set(first),
            )
    except (ValueError, TypeError, AttributeError, KeyError) as err:
        # highdicom's own words stay in the log and the traceback; the user gets what to fix
        log.debug("%s: highdicom refused the SEG: %s: %s", path, type(err).__name__, err)
        raise ExportError(
            f"the source DICOM headers ({_sop_name(first)}) do not allow a DICOM-SEG to be built "
            f"({type(err).__name__} in highdicom)",
            path=path,
            hint="check the source series with `dciodvfy` and export it again from the PACS; "
            "or write the labels as NIfTI (medseg.io.write_image)",
        ) from err

    seg.SeriesDescription = description
    seg.SeriesDate = seg.ContentDate
    seg.SeriesTime = seg.ContentTime
    if first.get("BodyPartExamined"):
        seg.BodyPartExamined = first.BodyPartExamined
    value_of = {number: value for value, number, _ in segments}
    for item in seg.SegmentSequence:
        if int(item.SegmentNumber) in value_of:  # not the background segment 0 of a LABELMAP
            _set_label_value(item, value_of[int(item.SegmentNumber)])
    _fix_pixel_measures(seg, first, labels, source)
    _blank_invalid_values(seg, path)

    with atomic_path(path, protect=tuple(files)) as tmp:
        seg.save_as(tmp, enforce_file_format=True)
    log.info(
        "%s: %s DICOM-SEG, %d segment(s) %s, %d frame(s), %s",
        path,
        seg_type,
        len(segments),
        [name for _, _, name in segments],
        int(seg.NumberOfFrames),
        transfer_syntax.name,
    )
    return path


def _check_segmentation_type(segmentation_type: str, path: Path) -> SegmentationType:
    value = str(segmentation_type).upper()
    if value == "BINARY":
        return "BINARY"
    if value == "LABELMAP":
        return "LABELMAP"
    raise ExportError(
        f"segmentation_type must be 'BINARY' or 'LABELMAP', got {segmentation_type!r}",
        path=path,
        hint="use BINARY for the widest viewer support",
    )


def _source_headers(
    labels: Image, source: Image | None, path: Path
) -> tuple[tuple[pydicom.Dataset, ...], tuple[Path, ...]]:
    """The DICOM headers (slice order) the SEG refers to: ``source``'s, else the labels' own."""
    if source is not None and source.source.is_dicom:
        src = source.source
    elif labels.source.is_dicom:
        src = labels.source
    else:
        raise ExportError(
            "no DICOM to refer to; write NIfTI instead or give the DICOM series it came from "
            "(neither the labels nor the source image were read from DICOM)",
            path=path,
            hint="medseg.export.write_mask(labels, 'labels.nii.gz'), or pass the DICOM Image as `source`",
        )
    for i, ds in enumerate(src.datasets):
        missing = [k for k in _REFERENCE_KEYWORDS if not ds.get(k)]
        if missing:
            where = src.files[i] if i < len(src.files) else src.path
            raise ExportError(
                f"the source DICOM header of {where} lacks {', '.join(missing)}, so a SEG cannot refer to it",
                path=path,
                hint="export the source series from the PACS again (complete headers) or write NIfTI",
            )
    return tuple(src.datasets), tuple(Path(f) for f in src.files)


def _check_grid(
    labels: Image, source: Image | None, datasets: Sequence[pydicom.Dataset], path: Path
) -> np.ndarray | None:
    """Raise GeometryError unless ``labels`` lies exactly on the grid the DICOM headers describe.

    Returns the label slice of each source slice/frame, or ``None`` when it is slice k for k.
    """
    fix = "resample the labels onto the source image grid (nearest neighbour) before writing the SEG"
    if source is not None and not labels.same_geometry(source, atol=1e-3):
        raise GeometryError(
            f"the labels (shape {labels.shape}, spacing {_fmt(labels.spacing)}, origin {_fmt(labels.origin)}) "
            f"are not on the source image grid (shape {source.shape}, spacing {_fmt(source.spacing)}, "
            f"origin {_fmt(source.origin)})",
            path=path,
            hint=fix,
        )
    first = datasets[0]
    rows, cols = int(first.get("Rows") or 0), int(first.get("Columns") or 0)
    frames = _frames(first)
    if labels.ndim == 2:
        if len(datasets) != 1 or frames != 1:
            raise GeometryError(
                f"2-D labels need one single-frame source image, the source has {len(datasets)} file(s) "
                f"and {frames} frame(s)",
                path=path,
                hint="give 3-D (z, y, x) labels for a series or a multi-frame image",
            )
        if labels.shape != (rows, cols):
            raise GeometryError(
                f"the labels are {labels.shape} (rows, columns) but the source image is {(rows, cols)}",
                path=path,
                hint=fix,
            )
        return None
    nz = labels.shape[0]
    if labels.shape[1:] != (rows, cols):
        raise GeometryError(
            f"the label slices are {labels.shape[1:]} (rows, columns) but the source images are {(rows, cols)}",
            path=path,
            hint=fix,
        )
    if len(datasets) == 1 and frames > 1:
        positions, orientation, pixel_spacing = _multiframe_geometry(first)
    else:
        positions = [ds.get("ImagePositionPatient") for ds in datasets]
        orientation = first.get("ImageOrientationPatient")
        pixel_spacing = first.get("PixelSpacing")
        for ds in datasets[1:]:
            other = ds.get("ImageOrientationPatient")
            if other is None or not np.allclose(
                np.asarray(other, float), np.asarray(orientation, float), atol=1e-4
            ):
                raise GeometryError(
                    "the source slices have different ImageOrientationPatient",
                    path=path,
                    hint="give one series with one orientation",
                )
    if len(positions) != nz:
        raise GeometryError(
            f"the labels have {nz} slices but the source DICOM has {len(positions)}",
            path=path,
            hint=fix,
        )
    if orientation is None or pixel_spacing is None or any(p is None for p in positions):
        raise GeometryError(
            "the source DICOM lacks ImagePositionPatient, ImageOrientationPatient or PixelSpacing, "
            "so the slices of a volume SEG cannot be placed",
            path=path,
            hint="use a CT/MR series with complete geometry headers",
        )
    iop = np.asarray(orientation, dtype=np.float64)
    direction = labels.direction
    if not (
        np.allclose(iop[:3], direction[:, 0], atol=1e-3) and np.allclose(iop[3:], direction[:, 1], atol=1e-3)
    ):
        raise GeometryError(
            f"the label axes {_fmt(direction[:, 0])}, {_fmt(direction[:, 1])} differ from the source "
            f"ImageOrientationPatient {_fmt(iop)}",
            path=path,
            hint=fix,
        )
    ps = np.asarray(pixel_spacing, dtype=np.float64)  # (row spacing = y, column spacing = x)
    if not np.allclose(ps[::-1], labels.spacing[:2], rtol=1e-3):
        raise GeometryError(
            f"the label spacing (x, y) {_fmt(labels.spacing[:2])} mm differs from the source PixelSpacing "
            f"(x, y) {_fmt(ps[::-1])} mm",
            path=path,
            hint=fix,
        )
    # Each source slice/frame must sit on a label slice (0.1 voxel tolerance); usually slice k is
    # source k, but an enhanced multi-frame file may store its frames in another order.
    index = labels.world_to_index(np.asarray(positions, dtype=np.float64))
    k = np.rint(index[:, 2]).astype(np.int64)
    offset = np.abs(np.concatenate([index[:, :2], (index[:, 2] - k)[:, None]], axis=1)).max(axis=1)
    outside = (offset > 0.1) | (k < 0) | (k >= nz)
    if np.any(outside):
        bad = int(np.argmax(outside))
        raise GeometryError(
            f"source slice {bad} at {_fmt(positions[bad])} mm is not on the label grid (label index "
            f"{_fmt(index[bad])}): the labels are on another grid or the series has other slices",
            path=path,
            hint="build the labels from the Image read from this series",
        )
    if len(np.unique(k)) != nz:
        raise GeometryError(
            "two source slices lie at the same position", path=path, hint="give one series without duplicates"
        )
    return None if np.array_equal(k, np.arange(nz)) else k


def _multiframe_geometry(ds: pydicom.Dataset) -> tuple[list[Any], Any, Any]:
    """Per-frame positions, orientation and pixel spacing of an enhanced multi-frame header."""
    shared = (
        ds.SharedFunctionalGroupsSequence[0] if "SharedFunctionalGroupsSequence" in ds else pydicom.Dataset()
    )
    per_frame = list(ds.get("PerFrameFunctionalGroupsSequence") or [])

    def find(item: pydicom.Dataset, seq: str, keyword: str) -> Any:
        if seq in item and len(item[seq].value) and keyword in item[seq].value[0]:
            return item[seq].value[0].get(keyword)
        return None

    positions = [find(f, "PlanePositionSequence", "ImagePositionPatient") for f in per_frame]
    orientation = find(shared, "PlaneOrientationSequence", "ImageOrientationPatient")
    spacing = find(shared, "PixelMeasuresSequence", "PixelSpacing")
    if per_frame:
        orientation = (
            orientation
            if orientation is not None
            else find(per_frame[0], "PlaneOrientationSequence", "ImageOrientationPatient")
        )
        spacing = (
            spacing if spacing is not None else find(per_frame[0], "PixelMeasuresSequence", "PixelSpacing")
        )
    return positions, orientation, spacing


def _present_labels(labels: Image, path: Path) -> tuple[np.ndarray, list[int]]:
    """The label array (bool as uint8) and the sorted label values > 0 that occur in it."""
    array = labels.array
    if array.dtype == bool:
        array = array.view(np.uint8)
    if labels.kind != "label" or not np.issubdtype(array.dtype, np.integer):
        raise ExportError(
            f"a DICOM-SEG is written from an integer label map, got a {labels.kind} image of {array.dtype}",
            path=path,
            hint="pass the predicted labels (kind='label'), not the intensity image",
        )
    if array.size == 0:
        raise ExportError("the label map has no voxels", path=path)
    low, high = int(array.min()), int(array.max())
    if low < 0 or high > 65535:
        raise ExportError(
            f"label values must be 0..65535, got {low}..{high}",
            path=path,
            hint="DICOM segment numbers are 16-bit; renumber the labels",
        )
    return array, present_labels(array)


def _choose_segments(
    present: list[int], label_names: Mapping[int, str], seg_type: SegmentationType, path: Path
) -> list[tuple[int, int, str]]:
    """``[(label value, segment number, name)]`` for the non-empty labels."""
    names = {int(k): str(v) for k, v in label_names.items() if int(k) != 0}
    unnamed = [v for v in present if v not in names]
    if unnamed:
        raise ExportError(
            f"label value(s) {unnamed} occur in the mask but have no name in label_names {names}",
            path=path,
            hint="add a name for every label value (e.g. {3: 'nodule'}) or set those voxels to 0",
        )
    empty = [v for v in sorted(names) if v not in present]
    for v in empty:
        log.warning("%s: segment %r (label %d) is empty and is left out of the DICOM-SEG", path, names[v], v)
    if not present:
        raise ExportError(
            "the mask is empty (no voxel > 0): a DICOM-SEG needs at least one non-empty segment",
            path=path,
            hint="check the prediction; keep an empty result as NIfTI with write_mask if needed",
        )
    for v in present:
        if not _clean_label(names[v]):
            raise ExportError(f"label {v} has an empty name", path=path, hint="give every label a name")
    if seg_type == "BINARY":
        return [(v, i + 1, _clean_label(names[v])) for i, v in enumerate(present)]
    return [(v, v, _clean_label(names[v])) for v in present]


def _clean_label(name: str) -> str:
    """A Segment Label (LO: at most 64 characters, no backslash or control characters)."""
    text = "".join(c for c in str(name) if c.isprintable() and c != "\\").strip()
    return text[:64]


def _segment_number_array(
    array: np.ndarray, segments: list[tuple[int, int, str]], seg_type: SegmentationType
) -> np.ndarray:
    """The label-map-style array highdicom takes: pixel value = segment number (uint8/uint16)."""
    top = max(number for _, number, _ in segments)
    dtype = np.uint8 if top < 256 else np.uint16
    if all(value == number for value, number, _ in segments):
        return array if array.dtype == dtype else array.astype(dtype)
    lut = np.zeros(int(array.max()) + 1, dtype=dtype)
    for value, number, _ in segments:
        lut[value] = number
    return lut[array]


def _transfer_syntax(seg_type: SegmentationType, compression: str, path: Path) -> pydicom.uid.UID:
    from pydicom.pixels import get_encoder
    from pydicom.uid import ExplicitVRLittleEndian, JPEGLSLossless, RLELossless

    choices = {
        "auto": RLELossless,
        "none": ExplicitVRLittleEndian,
        "rle": RLELossless,
        "jpeg-ls": JPEGLSLossless,
    }
    if compression not in choices:
        raise ExportError(
            f"compression must be one of {sorted(choices)}, got {compression!r}", path=path, hint="use 'auto'"
        )
    if seg_type == "BINARY":
        if compression not in ("auto", "none"):
            raise ExportError(
                f"a BINARY SEG is stored uncompressed (1 bit per pixel); compression={compression!r} is for LABELMAP",
                path=path,
                hint="use segmentation_type='LABELMAP' for a compressed SEG",
            )
        return ExplicitVRLittleEndian
    uid = choices[compression]
    if uid.is_encapsulated and not get_encoder(uid).is_available:
        if compression == "auto":
            log.warning("%s: no RLE encoder available; writing the LABELMAP SEG uncompressed", path)
            return ExplicitVRLittleEndian
        raise ExportError(
            f"no {uid.name} encoder is installed",
            path=path,
            hint="install pyjpegls for JPEG-LS, or use compression='auto'",
        )
    return uid


def _segment_description(
    number: int, name: str, algorithm: hd.AlgorithmIdentificationSequence, colour: RGB
) -> hd.seg.SegmentDescription:
    concept = concept_for(name)
    description = hd.seg.SegmentDescription(
        segment_number=number,
        segment_label=name,
        segmented_property_category=concept.category,
        segmented_property_type=concept.type,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm,
        display_color=hd.color.CIELabColor.from_rgb(*colour),
    )
    if concept.modifier is not None:
        # Laterality of the structure ("Lung" + "Right"): Segmented Property Type Modifier Code
        # Sequence inside the type item, as 3D Slicer/dcmqi write it. highdicom has no argument.
        description.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence = [
            hd.sr.CodedConcept.from_code(concept.modifier)
        ]
    return description


def _frames(ds: pydicom.Dataset) -> int:
    """Number Of Frames as an int (1 when absent; ``_writable_sources`` has repaired bad values)."""
    try:
        return max(1, int(ds.get("NumberOfFrames") or 1))
    except (TypeError, ValueError):
        return 1


def _sop_name(ds: pydicom.Dataset) -> str:
    uid = str(ds.get("SOPClassUID", "") or "")
    return pydicom.uid.UID(uid).name if uid else "no SOP class"


def _writable_sources(
    datasets: Sequence[pydicom.Dataset], labels: Image, path: Path
) -> tuple[pydicom.Dataset, ...]:
    """The source headers as highdicom needs them: repaired copies where a reader-accepted header
    lacks what the SEG copies (the caller's datasets are never modified).

    * missing Type 2 patient/study attributes -> empty values (``_TYPE2_FROM_SOURCE``);
    * an unreadable Number Of Frames (e.g. ``1A``) -> the number of frames medseg read;
    * a volume (3-D labels) without Frame Of Reference UID, or a multi-frame IOD without
      functional groups (e.g. a one-frame RT Dose): refused, naming the attribute, because a
      SEG of such a source cannot say where its frames lie.
    """
    first = datasets[0]
    repairs: dict[str, Any] = {k: None for k in _TYPE2_FROM_SOURCE if k not in first}
    raw_frames = first.get("NumberOfFrames")
    if raw_frames is not None:
        try:
            ok = int(raw_frames) >= 1
        except (TypeError, ValueError):
            ok = False
        if not ok:
            read = labels.shape[0] if labels.ndim == 3 and len(datasets) == 1 else 1
            repairs["NumberOfFrames"] = read
            log.warning(
                "%s: the source NumberOfFrames %r is not a number; the SEG uses the %d frame(s) read",
                path,
                str(raw_frames),
                read,
            )
    if labels.ndim == 3 and not first.get("FrameOfReferenceUID"):
        raise ExportError(
            f"the source {_sop_name(first)} header has ImagePositionPatient but no FrameOfReferenceUID, "
            "which a SEG of a volume needs to place its frames",
            path=path,
            hint="export the series again from the PACS with complete headers, or write the labels as NIfTI",
        )
    if "SharedFunctionalGroupsSequence" not in first and _is_multiframe_iod(first):
        raise ExportError(
            f"the source is a {_sop_name(first)} object (a multi-frame IOD) without "
            "SharedFunctionalGroupsSequence, from which a SEG of a multi-frame object takes its geometry",
            path=path,
            hint="write the labels as NIfTI (medseg.io.write_image), or convert the source to "
            "single-frame images first",
        )
    if not repairs:
        return tuple(datasets)
    out = copy.deepcopy(first)  # never modify the caller's headers
    for keyword, value in repairs.items():
        setattr(out, keyword, value)
    missing = [k for k, v in repairs.items() if v is None]
    if missing:
        log.info("source header lacks %s; the SEG gets empty values", ", ".join(missing))
    return (out, *datasets[1:])


def with_type2_attributes(ds: pydicom.Dataset) -> pydicom.Dataset:
    """``ds``, or a copy of it with empty values for the Type 2 patient/study attributes it lacks.

    highdicom copies these from the first source header into a SEG or SR without defaults; old
    or anonymised files may lack them. The caller's dataset is never modified.
    """
    missing = [k for k in _TYPE2_FROM_SOURCE if k not in ds]
    if not missing:
        return ds
    out = copy.deepcopy(ds)
    for keyword in missing:
        setattr(out, keyword, None)
    log.info("source header lacks %s; the new object gets empty values", ", ".join(missing))
    return out


def _is_multiframe_iod(ds: pydicom.Dataset) -> bool:
    """Whether the source's IOD is multi-frame (highdicom then reads its functional groups)."""
    from highdicom._standard_utils import is_multiframe_image  # highdicom's own test, same decision

    try:
        return bool(is_multiframe_image(ds))
    except Exception:  # unknown SOP class: highdicom treats it as single-frame
        return False


def specific_character_set(ds: pydicom.Dataset) -> str | list[str] | None:
    """A valid Specific Character Set for an object that copies text from ``ds``.

    pydicom has already decoded the source's text, so any repertoire that can encode it works:
    the source's own terms when they are valid (empty values dropped: an empty or missing
    charset is the default repertoire), else ``ISO_IR 192`` (UTF-8) when text is not ASCII.
    Used by the SEG and SR writers.
    """
    raw = ds.get("SpecificCharacterSet")
    terms = [raw] if isinstance(raw, str) else list(raw or [])
    terms = [str(t).strip().upper().replace("ISO IR", "ISO_IR").replace("ISO-IR", "ISO_IR") for t in terms]
    if len(terms) > 1 and not terms[0]:
        terms[0] = "ISO 2022 IR 6"  # an empty first term of a code-extension list is the default one
    terms = [t for t in terms if t]
    if terms == ["ISO_IR 6"]:  # the default repertoire, written as "no value"
        terms = []
    if not terms:
        return "ISO_IR 192" if _has_non_ascii_text(ds) else None
    valid = {v.value for v in hd.enum.SpecificCharacterSetValues}
    if all(t in valid for t in terms):
        return terms[0] if len(terms) == 1 else terms
    log.info("source SpecificCharacterSet %r is not a defined term; the object is written in UTF-8", raw)
    return "ISO_IR 192"


def _has_non_ascii_text(ds: pydicom.Dataset) -> bool:
    for element in ds:
        if element.VR in ("PN", "LO", "SH", "ST", "LT", "UT", "UC") and element.value not in (None, ""):
            if not str(element.value).isascii():
                return True
    return False


#: Private block where each Segment Sequence item keeps its medseg label value (a BINARY SEG
#: must number its segments 1..K, so the label values {1, 2, 5} would otherwise come back as
#: {1, 2, 3}). Standard readers ignore it; :func:`read_dicom_seg` uses it when present.
_PRIVATE_GROUP, _PRIVATE_CREATOR, _PRIVATE_LABEL_VALUE = 0x0071, "medseg", 0x01


def _set_label_value(item: pydicom.Dataset, value: int) -> None:
    item.private_block(_PRIVATE_GROUP, _PRIVATE_CREATOR, create=True).add_new(
        _PRIVATE_LABEL_VALUE, "US", int(value)
    )


def _label_value(item: pydicom.Dataset) -> int | None:
    """The medseg label value stored in a Segment Sequence item, or None."""
    try:
        element = item.private_block(_PRIVATE_GROUP, _PRIVATE_CREATOR)[_PRIVATE_LABEL_VALUE]
    except KeyError:
        return None
    value = element.value
    try:
        if isinstance(value, bytes):  # read as UN (implicit VR without a private dictionary)
            return int.from_bytes(value[:2], "little") if len(value) >= 2 else None
        return int(value)
    except (TypeError, ValueError):
        return None


def _default_series_number(first: pydicom.Dataset) -> int:
    try:
        return int(first.get("SeriesNumber") or 0) + 1000
    except (TypeError, ValueError):
        return 1000


def _person_name(name: str) -> str:
    text = str(name).strip()
    return text if "^" in text or not text else f"{text}^"  # family-name component, no PN warning


def _valid_thickness(ds: pydicom.Dataset) -> float | None:
    try:
        value = float(ds.get("SliceThickness"))
    except (TypeError, ValueError):
        return None
    return value if np.isfinite(value) and value > 0 else None


def _fix_pixel_measures(
    seg: hd.seg.Segmentation, first: pydicom.Dataset, labels: Image, source: Image | None
) -> None:
    """Complete what highdicom leaves out for sources with partial geometry headers.

    * Volumes: Slice Thickness (Type 1C in Pixel Measures) missing or empty in the source -> the
      label slice spacing.
    * 2-D images (radiographs, secondary captures, with or without a frame of reference): the
      shared Pixel Measures item gets the image's pixel spacing (whichever of PixelSpacing /
      ImagerPixelSpacing / NominalScannedPixelSpacing the reader used; none when the spacing is
      unknown and there is no frame of reference) and a Slice Thickness (the source's, else 1 mm:
      a projection has no slices, but readers, highdicom's included, require the value next to
      Pixel Spacing); Patient Orientation (Type 2C without plane orientation) is copied.
    """
    shared = seg.SharedFunctionalGroupsSequence[0]
    measures = shared.PixelMeasuresSequence[0] if "PixelMeasuresSequence" in shared else None
    if labels.ndim == 3:
        if measures is not None and _valid_thickness(measures) is None:
            measures.SliceThickness = _ds_number(float(labels.spacing[2]))
        if measures is not None and labels.shape[0] == 1:
            # one slice has no spacing to measure: keep the one medseg read (SpacingBetweenSlices,
            # else SliceThickness) so the SEG read alone has the source's geometry
            measures.SpacingBetweenSlices = _ds_number(float(labels.spacing[2]))
        return
    orientation = first.get("PatientOrientation")
    seg.PatientOrientation = orientation if orientation else None
    image = source if source is not None and source.source.is_dicom else labels
    known = image.source.spacing_tag is not None
    has_for = "FrameOfReferenceUID" in seg
    if not known and not has_for:
        if measures is not None:
            del shared.PixelMeasuresSequence
        return
    item = pydicom.Dataset()
    col_spacing, row_spacing = (float(v) for v in labels.spacing[:2])
    item.PixelSpacing = [_ds_number(row_spacing), _ds_number(col_spacing)]
    item.SliceThickness = _ds_number(_valid_thickness(first) or 1.0)
    shared.PixelMeasuresSequence = pydicom.Sequence([item])


def _ds_number(value: float) -> str:
    """A DS string (at most 16 characters) for ``value``."""
    from pydicom.valuerep import format_number_as_ds

    return str(format_number_as_ds(float(value)))


def _blank_invalid_values(seg: pydicom.Dataset, path: Path) -> None:
    """Empty top-level values copied from a non-conformant source (e.g. Patient's Age ``62``).

    Copied patient/study attributes are Type 2 or 3 in the SEG, for which an empty value is valid;
    a value that breaks its VR would make the SEG fail validation (dciodvfy) and some readers.
    """
    from pydicom import config
    from pydicom.valuerep import validate_value

    for element in seg:
        if element.VR not in _CHECKED_VRS or element.value in (None, "", b""):
            continue
        values = element.value if isinstance(element.value, (MultiValue, list, tuple)) else [element.value]
        try:
            for value in values:
                validate_value(element.VR, str(value), config.RAISE)
        except (ValueError, TypeError) as err:
            log.warning(
                "%s: empty %s in the SEG: the source value %r is invalid (%s)",
                path,
                element.keyword,
                element.value,
                err,
            )
            element.value = None


def _fmt(values: Any) -> str:
    return "(" + ", ".join(f"{float(v):.4g}" for v in np.asarray(values, dtype=np.float64).ravel()) + ")"


# ---------------------------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------------------------
@reader_guard(  # issue #13: only one-line medseg errors leave; the result is checked
    DicomInputError, "DICOM-SEG", check=lambda r, p: check_image(r.labels.array, r.labels.affine, p, "the SEG geometry")
)
def read_dicom_seg(
    path: str | PathLike[str],
    source: Image | None = None,
    *,
    label_names: Mapping[int, str] | None = None,
) -> DicomSeg:
    """Decode a DICOM-SEG (BINARY, LABELMAP or FRACTIONAL; any writer) to a label map.

    Args:
        path: the SEG file.
        source: the image the SEG belongs to. When given, the labels are returned on its grid
            (same shape and affine; voxels the SEG does not cover are 0) and keep its
            provenance, so ``write_dicom_seg(labels, None, ...)`` refers to the same DICOM. SEGs
            with a frame of reference are placed by geometry; projection SEGs (no frame of
            reference) by the source SOP Instance UID. ``None``: the SEG's own grid (the range
            of its frames for volumes; one frame for a radiograph, 1 mm pixels if unknown).
        label_names: ``{label value: name}`` to map segments to label values by segment label
            (case-insensitive), e.g. a project's label map. Default: the label values medseg
            stored in the SEG (BINARY or LABELMAP), else value = segment number.

    FRACTIONAL segments are thresholded at 0.5. Where segments overlap, the later segment (in
    SEG order) wins and a warning is logged.

    Returns:
        :class:`DicomSeg` ``(labels, names)``: the label :class:`Image` (``uint8`` or
        ``uint16``, ``(z, y, x)`` or ``(y, x)``) and ``{label value: segment label}``.

    Raises:
        DicomInputError: not a readable DICOM-SEG.
        GeometryError: the SEG cannot be placed on ``source`` (other frame of reference,
            other orientation, no shared instances).
        InputError: a segment label is not in ``label_names``.
    """
    path = Path(path)
    seg, pixel_spacing = _load_seg(path)
    numbers = [int(n) for n in seg.segment_numbers]
    seg_names = {n: str(seg.get_segment_description(n).SegmentLabel) for n in numbers}
    values = _segment_values(seg_names, label_names, path, _stored_values(seg, numbers))
    if source is not None:
        masks = _masks_on_source(seg, numbers, source, path)
        affine, provenance = source.affine, source.source
    else:
        masks, affine = _masks_on_own_grid(seg, numbers, pixel_spacing, path)
        provenance = ImageSource(path=path, format="dicom-seg")

    top = max(values.values()) if values else 0
    out = np.zeros(masks.shape[:-1], dtype=np.uint8 if top < 256 else np.uint16)
    occupied = np.zeros(masks.shape[:-1], dtype=bool)
    overlapping: list[str] = []
    for i, n in enumerate(numbers):
        mask = masks[..., i] >= 0.5 if masks.dtype.kind == "f" else masks[..., i] > 0
        if occupied.any() and np.any(mask & occupied):
            overlapping.append(seg_names[n])
        out[mask] = values[n]
        occupied |= mask
    if overlapping:
        log.warning(
            "%s: segment(s) %s overlap earlier segments; the later segment wins in the label map",
            path,
            overlapping,
        )
    names: dict[int, str] = {}
    for n in numbers:
        if label_names is not None:
            names[values[n]] = str(label_names[values[n]])
        else:
            names.setdefault(values[n], seg_names[n])
    labels = Image(out, affine, kind="label", modality="SEG", source=provenance)
    return DicomSeg(labels, names)


def _load_seg(path: Path) -> tuple[hd.seg.Segmentation, Any]:
    """The parsed SEG and the Pixel Spacing of its shared Pixel Measures (``None`` if absent)."""
    try:
        ds = read_dataset(path)  # issue #13: parsed from a memory map, corrupt lengths cannot allocate
    except (OSError, pydicom.errors.InvalidDicomError) as err:
        raise DicomInputError(
            f"cannot read the file as DICOM ({type(err).__name__})", path=path, hint="give a DICOM-SEG file"
        ) from err
    if str(ds.get("SOPClassUID", "")) not in SEG_SOP_CLASSES:
        raise DicomInputError(
            f"not a DICOM Segmentation (SOP class {ds.get('SOPClassUID', 'missing')}, modality "
            f"{ds.get('Modality', 'missing')})",
            path=path,
            hint="give a SEG object (modality SEG)",
        )
    check_seg_dataset(ds, path)  # issue #13: sizes, geometry and structure checked before highdicom
    _to_little_endian(ds, path)
    shared = ds.get("SharedFunctionalGroupsSequence")
    pixel_spacing = None
    if shared and "PixelMeasuresSequence" in shared[0] and shared[0].PixelMeasuresSequence:
        measures = shared[0].PixelMeasuresSequence[0]
        pixel_spacing = measures.get("PixelSpacing")
        if "SliceThickness" not in measures or "PixelSpacing" not in measures:
            # highdicom's reader needs both; projection SEGs (and older medseg ones) may hold
            # Pixel Spacing only. Without plane positions the item places nothing: kept on the side.
            del shared[0].PixelMeasuresSequence
    try:
        return hd.seg.Segmentation.from_dataset(ds, copy=False), pixel_spacing
    except (ValueError, TypeError, AttributeError, KeyError, IndexError, RuntimeError) as err:
        log.debug("%s: highdicom cannot parse the SEG: %s: %s", path, type(err).__name__, err)
        raise DicomInputError(
            f"the SEG's headers are incomplete or inconsistent ({type(err).__name__} in highdicom)",
            path=path,
            hint="check the file with `dciodvfy`; ask its writer for a conformant SEG",
        ) from err


def _to_little_endian(ds: pydicom.Dataset, path: Path) -> None:
    """Re-encode the pixel data of a big-endian SEG in memory (highdicom reads little endian only).

    pydicom decodes Explicit VR Big Endian (retired, still written by some tools); the frames are
    packed again as highdicom expects (1 bit per pixel for BINARY, native words otherwise).
    """
    from pydicom.pixels import pack_bits
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian

    meta = getattr(ds, "file_meta", None)
    if meta is None or meta.get("TransferSyntaxUID") != ExplicitVRBigEndian:
        return
    try:
        pixels = np.asarray(ds.pixel_array)
    except Exception as err:  # pydicom raises several types for broken pixel data
        raise DicomInputError(
            f"the big-endian pixel data cannot be decoded ({type(err).__name__})", path=path
        ) from err
    if int(ds.BitsAllocated) == 1:
        ds.PixelData = pack_bits(pixels.astype(np.uint8).ravel())
    else:
        ds.PixelData = pixels.astype(pixels.dtype.newbyteorder("<")).tobytes()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    log.info("%s: big-endian SEG re-encoded as little endian for reading", path)


def _stored_values(seg: pydicom.Dataset, numbers: list[int]) -> dict[int, int] | None:
    """``{segment number: label value}`` from medseg's private tag, when every segment has one."""
    stored = {int(item.SegmentNumber): _label_value(item) for item in seg.SegmentSequence}
    values = {n: stored.get(n) for n in numbers}
    if any(v is None or v <= 0 for v in values.values()) or len(set(values.values())) != len(values):
        return None
    return {n: int(v) for n, v in values.items() if v is not None}


def _segment_values(
    seg_names: dict[int, str],
    label_names: Mapping[int, str] | None,
    path: Path,
    stored: dict[int, int] | None = None,
) -> dict[int, int]:
    """``{segment number: label value}``: by name with ``label_names``, else the label values
    medseg stored (so BINARY and LABELMAP give the same values back), else the segment numbers."""
    if label_names is None:
        return stored if stored is not None else {n: n for n in seg_names}
    by_name = {str(v).strip().casefold(): int(k) for k, v in label_names.items() if int(k) != 0}
    out: dict[int, int] = {}
    for n, name in seg_names.items():
        key = name.strip().casefold()
        if key not in by_name:
            raise InputError(
                f"segment {n} {name!r} is not in label_names {dict(label_names)}",
                path=path,
                hint="add that name to label_names, or leave label_names out to use segment numbers",
            )
        out[n] = by_name[key]
    return out


def _hd_affine(affine: np.ndarray) -> np.ndarray:
    """Our index order (x, y, z) <-> highdicom's (slice, row, column): swap the columns."""
    return np.asarray(affine)[:, [2, 1, 0, 3]]


def _masks_on_source(seg: hd.seg.Segmentation, numbers: list[int], source: Image, path: Path) -> np.ndarray:
    """Segment masks ``(*source.shape, n_segments)`` on the source grid.

    By geometry when the SEG has a frame of reference (the same one as the source, if known);
    otherwise, or when the frames are not on the source grid, by the source SOP instances the
    frames cite (single-frame sources only).
    """
    has_frame_of_reference = "FrameOfReferenceUID" in seg and seg.coordinate_system is not None
    single_frames = len(source.source.datasets) == (source.shape[0] if source.ndim == 3 else 1)
    reason = "the SEG has no frame of reference"
    if source.ndim == 3 and has_frame_of_reference:
        source_for = source.source.frame_of_reference_uid
        if source_for and source_for != seg.FrameOfReferenceUID:
            reason = f"the SEG is in frame of reference {seg.FrameOfReferenceUID}, the source image in {source_for}"
        else:
            try:
                volume = seg.get_volume(
                    combine_segments=False, skip_overlap_checks=True, rescale_fractional=True
                )
                target = hd.VolumeGeometry(
                    _hd_affine(source.affine),
                    source.shape,
                    coordinate_system="PATIENT",
                    frame_of_reference_uid=seg.FrameOfReferenceUID,
                )
                return volume.match_geometry(target).array.reshape(*source.shape, len(numbers))
            except Exception as err:  # highdicom raises several types for SEGs it cannot make a volume of
                log.debug("%s: highdicom could not match the source grid: %s: %s", path, type(err).__name__, err)
                reason = "the SEG frames are not on the source grid"
    uids = list(source.source.sop_instance_uids)
    referenced = {uid for _, _, uid in seg.get_source_image_uids()}
    if not (uids and single_frames and referenced.intersection(uids)):
        raise GeometryError(
            f"{reason}, and the SEG refers to none of the source image's SOP instances",
            path=path,
            hint="give the image (DICOM series or radiograph) the SEG was made from",
        )
    log.info("%s: placing SEG frames by the source instances they cite (%s)", path, reason)
    try:
        array = seg.get_pixels_by_source_instance(
            uids,
            ignore_spatial_locations=True,
            assert_missing_frames_are_empty=True,
            skip_overlap_checks=True,
            rescale_fractional=True,
        )
    except Exception as err:  # as above: surface any highdicom failure as a geometry problem
        log.debug("%s: highdicom get_pixels_by_source_instance: %s: %s", path, type(err).__name__, err)
        raise GeometryError(
            "cannot map the SEG frames to the source instances they cite (other frame counts or sizes)",
            path=path,
            hint="give the image the SEG was made from",
        ) from err
    if tuple(array.shape[1:3]) != tuple(source.shape[-2:]):
        raise GeometryError(
            f"the SEG frames are {tuple(array.shape[1:3])} but the source images are {tuple(source.shape[-2:])}",
            path=path,
        )
    return array[0] if source.ndim == 2 else array


def _masks_on_own_grid(
    seg: hd.seg.Segmentation, numbers: list[int], pixel_spacing: Any, path: Path
) -> tuple[np.ndarray, np.ndarray]:
    """Segment masks on the SEG's own grid and the matching affine (index x, y[, z] -> LPS).

    Volumes come back in :func:`medseg.io.read_image`'s slice order (ascending along
    ``row direction x column direction``), so the array is index-aligned with the source series
    read by medseg. SEGs without plane positions (projection images, 2-D images with only a
    frame of reference) come back 2-D with the SEG's pixel spacing (1 mm if it has none).
    """
    if _has_plane_positions(seg):
        try:
            volume = seg.get_volume(combine_segments=False, skip_overlap_checks=True, rescale_fractional=True)
        except (RuntimeError, ValueError) as err:
            log.debug("%s: highdicom get_volume: %s: %s", path, type(err).__name__, err)
            raise GeometryError(
                "the SEG frames do not form a regular volume (irregular or missing slice positions)",
                path=path,
                hint="give the source image so the frames are placed on its grid",
            ) from err
        array, affine = np.asarray(volume.array), _hd_affine(volume.affine)
        if array.shape[0] == 1:  # highdicom cannot know the spacing of one slice; read_image's rule
            thickness = _single_slice_spacing(seg)
            if thickness is not None:
                affine = affine.copy()
                affine[:3, 2] *= thickness / float(np.linalg.norm(affine[:3, 2]))
        normal = np.cross(affine[:3, 0], affine[:3, 1])
        if float(normal @ affine[:3, 2]) < 0:  # highdicom stacked against the slice normal
            array = array[::-1]
            affine = affine.copy()
            affine[:3, 3] = affine[:3, 3] + (array.shape[0] - 1) * affine[:3, 2]
            affine[:3, 2] = -affine[:3, 2]
        return np.ascontiguousarray(array), affine
    referenced = [uid for _, _, uid in seg.get_source_image_uids()]
    if len(set(referenced)) != 1:
        raise GeometryError(
            f"a SEG without slice positions refers to {len(set(referenced))} images; cannot choose one",
            path=path,
            hint="give the source image",
        )
    array = seg.get_pixels_by_source_instance(
        referenced[:1], ignore_spatial_locations=True, skip_overlap_checks=True, rescale_fractional=True
    )[0]
    row_spacing, col_spacing = (
        (float(pixel_spacing[0]), float(pixel_spacing[1])) if pixel_spacing else (1.0, 1.0)
    )
    return array, np.diag([col_spacing, row_spacing, 1.0])


def _single_slice_spacing(seg: pydicom.Dataset) -> float | None:
    """Spacing Between Slices, else Slice Thickness, of the SEG's shared Pixel Measures."""
    groups = seg.get("SharedFunctionalGroupsSequence")
    if not groups or not groups[0].get("PixelMeasuresSequence"):
        return None
    measures = groups[0].PixelMeasuresSequence[0]
    for keyword in ("SpacingBetweenSlices", "SliceThickness"):
        try:
            value = float(measures.get(keyword))
        except (TypeError, ValueError):
            continue
        if np.isfinite(value) and value > 0:
            return value
    return None


def _has_plane_positions(seg: pydicom.Dataset) -> bool:
    """Whether the SEG places its frames in patient space (frame of reference + plane positions)."""
    if "FrameOfReferenceUID" not in seg or getattr(seg, "coordinate_system", None) is None:
        return False
    for keyword in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        groups = seg.get(keyword)
        if groups and "PlanePositionSequence" in groups[0]:
            return True
    return False
