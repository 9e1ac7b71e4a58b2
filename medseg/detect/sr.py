"""Nodule findings as a DICOM Structured Report (TID 1500 Measurement Report, Comprehensive 3D SR).

Each nodule is one *Volumetric ROI Measurements* group (TID 1411) with

* the centre as an SCOORD3D ``POINT`` (Volume Surface, geometric purpose *Center*) in the CT's
  frame of reference (world mm, LPS = DICOM patient coordinates), source series = the CT series;
* measurements *Diameter* (mm, equivalent-sphere), *Volume* (mm3) and *Probability* (unit ``1``,
  the detection score);
* finding type *Nodule*, finding site *Lung*, a tracking identifier ``Nodule <n>`` with a UID.

TID 1411 allows exactly one ROI reference per group, so when a DICOM-SEG is given each nodule gets a
second group with the **same tracking identifier and UID** that references the SEG's nodule segment
(``ReferencedSegment``); the SEG is also listed as evidence. Viewers (OHIF, 3D Slicer) link the two
through the tracking UID.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from medseg.errors import ExportError, InputError
from medseg.image import Image
from medseg.utils import atomic_path

if TYPE_CHECKING:  # pragma: no cover
    import pydicom

    from medseg.detect.candidates import Detection

__all__ = ["write_nodule_sr", "SEGMENTATION_STORAGE"]

log = logging.getLogger(__name__)

#: SOP Class UID of Segmentation Storage (BINARY); LABELMAP SEGs (``...66.7``) are accepted too.
SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
_NODULE_SCT = "27925004"


def _load_seg(seg: str | PathLike[str] | pydicom.Dataset) -> pydicom.Dataset:
    import pydicom

    if isinstance(seg, pydicom.Dataset):
        ds = seg
        where: object = "the SEG dataset"
    else:
        p = Path(seg)
        if not p.is_file():
            raise InputError("DICOM-SEG file not found", path=p, hint="pass the SEG written for this CT")
        try:
            ds = pydicom.dcmread(p)
        except Exception as e:  # pydicom raises several types for non-DICOM files
            raise InputError(f"not a readable DICOM file ({e})", path=p) from e
        where = p
    from medseg.io.dicom import SEG_SOP_CLASSES

    if str(getattr(ds, "SOPClassUID", "")) not in SEG_SOP_CLASSES:
        raise InputError(
            f"not a DICOM-SEG (Segmentation or Label Map Segmentation Storage; SOPClassUID "
            f"{getattr(ds, 'SOPClassUID', None)})",
            path=str(where),
            hint="pass the DICOM-SEG file",
        )
    return ds


def _nodule_segment(seg: pydicom.Dataset, where: str) -> int:
    """The segment number coding a nodule (SCT 27925004 or a label with 'nodule'), else the only one."""
    segments = list(getattr(seg, "SegmentSequence", []))
    if not segments:
        raise InputError("the SEG has no SegmentSequence", path=where)
    hits = []
    for s in segments:
        codes_ = [str(c.CodeValue) for c in getattr(s, "SegmentedPropertyTypeCodeSequence", [])]
        if _NODULE_SCT in codes_ or "nodule" in str(getattr(s, "SegmentLabel", "")).lower():
            hits.append(int(s.SegmentNumber))
    if len(hits) == 1:
        return hits[0]
    if len(segments) == 1:
        return int(segments[0].SegmentNumber)
    raise InputError(
        f"cannot tell which of the SEG's {len(segments)} segments holds the nodules",
        path=where,
        hint="pass segment_number=",
    )


def write_nodule_sr(
    detections: Sequence[Detection],
    source: Image,
    path: str | PathLike[str],
    *,
    seg: str | PathLike[str] | pydicom.Dataset | None = None,
    segment_number: int | None = None,
    series_number: int = 901,
    series_description: str = "medseg nodule candidates",
    manufacturer: str = "medseg",
    algorithm_name: str = "medseg nodule detection",
    algorithm_version: str | None = None,
) -> Path:
    """Write nodule detections as a TID 1500 Comprehensive 3D SR referencing the CT series.

    Args:
        detections: nodules (world centre in mm, LPS; diameter mm; volume mm3; score in [0, 1]),
            e.g. from :func:`medseg.detect.detect_candidates`; at least one (highdicom's TID 1500
            needs a measurement group, so "no nodule found" is not written as an SR).
        source: the CT read from DICOM (``source.source.datasets`` gives study, series and frame
            of reference).
        path: output ``.dcm`` file (written atomically).
        seg: optional DICOM-SEG (path or dataset) of the same CT; each nodule then also references
            its segment.
        segment_number: the SEG segment of the nodules (default: the segment coded *Nodule*, or
            the only segment).
        series_number, series_description, manufacturer: header of the SR series.
        algorithm_name, algorithm_version: the algorithm identification written into each group.

    Returns:
        The path written.

    Raises:
        ExportError: no detections, or the source is not a DICOM CT with a frame of reference.
        InputError: the SEG is unreadable, not a SEG, or of another frame of reference.
    """
    import highdicom as hd
    import pydicom
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    import medseg

    if len(detections) == 0:
        raise ExportError(
            "no nodule to report: a TID 1500 measurement report needs at least one finding",
            path=path,
            hint="skip the SR when detect_candidates returns nothing",
        )
    if not source.source.is_dicom:
        raise ExportError(
            "a DICOM SR must reference the DICOM CT series, but this image was not read from DICOM",
            path=source.source.path,
            hint="read the CT from its DICOM folder (medseg.read_image)",
        )
    if source.ndim != 3:
        raise ExportError("nodule SRs need a 3-D CT", path=source.source.path)
    for_uid = source.source.frame_of_reference_uid
    series_uid = source.source.series_instance_uid
    if not for_uid or not series_uid:
        raise ExportError(
            "the CT has no FrameOfReferenceUID/SeriesInstanceUID",
            path=source.source.path,
            hint="the SR's 3-D points need the CT's frame of reference",
        )
    evidence: list[pydicom.Dataset] = list(source.source.datasets)

    ref_segment = None
    if seg is not None:
        seg_ds = _load_seg(seg)
        where = str(seg) if not isinstance(seg, pydicom.Dataset) else "the SEG dataset"
        if str(getattr(seg_ds, "FrameOfReferenceUID", "")) != for_uid:
            raise InputError(
                "the SEG is in another frame of reference than the CT",
                path=where,
                hint="pass the SEG written for this CT series",
            )
        number = segment_number if segment_number is not None else _nodule_segment(seg_ds, where)
        if number not in [int(s.SegmentNumber) for s in seg_ds.SegmentSequence]:
            raise InputError(f"the SEG has no segment {number}", path=where)
        ref_segment = hd.sr.ReferencedSegment(
            sop_class_uid=str(seg_ds.SOPClassUID),
            sop_instance_uid=str(seg_ds.SOPInstanceUID),
            segment_number=number,
            source_series=hd.sr.SourceSeriesForSegmentation(series_uid),
        )
        if str(seg_ds.StudyInstanceUID) == source.source.study_instance_uid:
            evidence.append(seg_ds)
        else:
            log.warning("the SEG belongs to another study; it is referenced but not listed as evidence")

    version = algorithm_version or medseg.__version__
    algo = hd.sr.AlgorithmIdentification(name=algorithm_name, version=version)
    site = [hd.sr.FindingSite(anatomic_location=codes.SCT.Lung)]
    score_unit = hd.sr.CodedConcept(value="1", scheme_designator="UCUM", meaning="no units")
    groups: list[hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations] = []
    for n, det in enumerate(detections, start=1):
        center = np.asarray(det.center, dtype=np.float64).reshape(1, 3)
        if not np.all(np.isfinite(center)):
            raise InputError(f"detection {n} has a non-finite centre {det.center}")
        if not 0.0 <= det.score <= 1.0:
            raise InputError(f"detection {n} has a score {det.score} outside [0, 1]")
        tracking = hd.sr.TrackingIdentifier(uid=generate_uid(), identifier=f"Nodule {n}")
        measurements = [
            hd.sr.Measurement(
                name=codes.SCT.Diameter, value=float(det.diameter_mm), unit=codes.UCUM.Millimeter
            ),
            hd.sr.Measurement(
                name=codes.SCT.Volume, value=float(det.volume_mm3), unit=codes.UCUM.CubicMillimeter
            ),
            hd.sr.Measurement(name=codes.DCM.Probability, value=float(det.score), unit=score_unit),
        ]
        groups.append(
            hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
                tracking_identifier=tracking,
                referenced_volume_surface=hd.sr.VolumeSurface(
                    graphic_type=hd.sr.GraphicTypeValues3D.POINT,
                    graphic_data=center,
                    frame_of_reference_uid=for_uid,
                    source_series=hd.sr.SourceSeriesForSegmentation(series_uid),
                ),
                finding_type=codes.SCT.Nodule,
                finding_category=codes.SCT.MorphologicallyAbnormalStructure,
                finding_sites=site,
                algorithm_id=algo,
                measurements=measurements,
                geometric_purpose=codes.DCM.Center,
            )
        )
        if ref_segment is not None:
            groups.append(
                hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
                    tracking_identifier=tracking,
                    referenced_segment=ref_segment,
                    finding_type=codes.SCT.Nodule,
                    finding_category=codes.SCT.MorphologicallyAbnormalStructure,
                    finding_sites=site,
                    algorithm_id=algo,
                )
            )

    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=generate_uid(), name=algorithm_name, manufacturer_name=manufacturer, model_name=version
        ),
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=codes.LN.CTUnspecifiedBodyRegion,
        imaging_measurements=groups,
        title=codes.DCM.ImagingMeasurementReport,
    )
    from medseg.io.seg import specific_character_set, with_type2_attributes

    evidence[0] = with_type2_attributes(evidence[0])
    try:
        sr = hd.sr.Comprehensive3DSR(
            evidence=evidence,
            specific_character_set=specific_character_set(evidence[0]),
            content=report,
            series_instance_uid=generate_uid(),
            series_number=series_number,
            sop_instance_uid=generate_uid(),
            instance_number=1,
            manufacturer=manufacturer,
            series_description=series_description,
            is_complete=True,
        )
    except (ValueError, TypeError, AttributeError) as e:
        log.debug("%s: highdicom refused the SR: %s: %s", path, type(e).__name__, e)
        raise ExportError(
            f"the CT's DICOM headers do not allow a DICOM SR to be built ({type(e).__name__} in highdicom)",
            path=path,
            hint="check the CT series with `dciodvfy` and export it again from the PACS",
        ) from e
    out = Path(path)
    protect = tuple(Path(f) for f in source.source.files)
    with atomic_path(out, protect=protect) as tmp:
        sr.save_as(tmp, enforce_file_format=True)
    log.info("wrote SR with %d nodule(s) to %s", len(detections), out)
    return out
