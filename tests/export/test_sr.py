"""Nodule DICOM SR (TID 1500) on the real LIDC-IDRI-0001 CT: validity, read-back, SEG reference."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from medseg.detect import Detection, detect_candidates, nodule_mask, read_nodule_annotations
from medseg.errors import ExportError, InputError
from medseg.image import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "detect"))
from lidc_ct import load_dicom_ct  # noqa: E402

LIDC = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "ct_lidc_nodules" / "LIDC-IDRI-0001"


@pytest.fixture(scope="module")
def ct(shared_data: Path) -> Image:
    if not (LIDC / "dicom").is_dir():
        pytest.skip(f"{LIDC} not present")
    return load_dicom_ct(LIDC / "dicom")


@pytest.fixture(scope="module")
def detections(ct: Image) -> list[Detection]:
    """The LUNA16 nodule found from a probability map drawn at its annotation, plus a made-up one."""
    anns = read_nodule_annotations(LIDC / "luna16_annotations.csv")
    prob = (nodule_mask(ct, anns).array > 0).astype(np.float32) * 0.87
    (found,) = detect_candidates(prob, ct)
    extra = Detection((-60.5, 20.25, -110.0), (0.0, 0.0, 0.0), 5.2, 73.6, 0.31, 0.3, 40)
    return [found, extra]


def _dciodvfy(path: Path) -> None:
    exe = shutil.which("dciodvfy")
    if exe is None:
        return
    r = subprocess.run([exe, str(path)], capture_output=True, text=True, timeout=60)
    errors = [line for line in (r.stdout + r.stderr).splitlines() if line.startswith("Error")]
    assert r.returncode == 0 and not errors, r.stdout + r.stderr


def _make_seg(ct: Image, path: Path) -> Path:
    """A 2-segment (lung, nodule) SEG of the CT written with highdicom."""
    import highdicom as hd
    import pydicom
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    src = [pydicom.dcmread(f) for f in ct.source.files]
    labels = np.zeros(ct.shape, np.uint8)
    labels[ct.array < -400] = 1
    labels[nodule_mask(ct, read_nodule_annotations(LIDC / "luna16_annotations.csv")).array > 0] = 2
    algo = hd.AlgorithmIdentificationSequence(
        name="test", version="1", family=codes.cid7162.ArtificialIntelligence
    )
    descs = [
        hd.seg.SegmentDescription(
            segment_number=i,
            segment_label=name,
            segmented_property_category=cat,
            segmented_property_type=typ,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algo,
        )
        for i, name, cat, typ in (
            (1, "lung", codes.SCT.AnatomicalStructure, codes.SCT.Lung),
            (2, "nodule", codes.SCT.MorphologicallyAbnormalStructure, codes.SCT.Nodule),
        )
    ]
    seg = hd.seg.Segmentation(
        source_images=src,
        pixel_array=labels,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descs,
        series_instance_uid=generate_uid(),
        series_number=5,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer="test",
        manufacturer_model_name="test",
        software_versions="1",
        device_serial_number="1",
    )
    seg.save_as(path)
    return path


def _groups(path: Path):
    import highdicom as hd

    sr = hd.sr.srread(path)
    return sr, sr.content.get_volumetric_roi_measurement_groups()


def _values(group) -> dict[str, tuple[float, str]]:
    return {m.name.meaning: (m.value, m.unit.value) for m in group.get_measurements()}


def test_sr_valid_and_reads_back(ct: Image, detections: list[Detection], tmp_path: Path) -> None:
    from medseg.detect.sr import write_nodule_sr

    out = write_nodule_sr(detections, ct, tmp_path / "nodules.dcm")
    _dciodvfy(out)
    sr, groups = _groups(out)
    assert sr.Modality == "SR" and sr.StudyInstanceUID == ct.source.study_instance_uid
    assert sr.PatientID == ct.source.datasets[0].PatientID
    ref = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert ref.SeriesInstanceUID == ct.source.series_instance_uid
    assert {i.ReferencedSOPInstanceUID for i in ref.ReferencedSOPSequence} == set(ct.source.sop_instance_uids)
    assert len(groups) == 2
    for det, g in zip(detections, groups, strict=True):
        vals = _values(g)
        assert vals["Diameter"] == (pytest.approx(det.diameter_mm, rel=1e-9), "mm")
        assert vals["Volume"] == (pytest.approx(det.volume_mm3, rel=1e-9), "mm3")
        assert vals["Probability"] == (pytest.approx(det.score, rel=1e-9), "1")
        point = g.roi.graphic_data
        np.testing.assert_allclose(point.reshape(-1), det.center, atol=1e-3)  # FL (float32) coordinates
        assert g.roi.frame_of_reference_uid == ct.source.frame_of_reference_uid
        assert g.finding_type.value == "27925004"  # Nodule
    # the detected nodule is where LUNA16 says it is
    (a,) = read_nodule_annotations(LIDC / "luna16_annotations.csv")
    assert np.linalg.norm(groups[0].roi.graphic_data.reshape(-1) - np.asarray(a.center)) < 0.3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nodules.dcm"]


def test_sr_references_seg_segment(ct: Image, detections: list[Detection], tmp_path: Path) -> None:
    from medseg.detect.sr import write_nodule_sr

    seg_path = _make_seg(ct, tmp_path / "seg.dcm")
    out = write_nodule_sr(detections[:1], ct, tmp_path / "sr.dcm", seg=seg_path)
    _dciodvfy(out)
    _, groups = _groups(out)
    assert len(groups) == 2  # centre/measurements group + segment group, one tracking UID
    assert groups[0].tracking_uid == groups[1].tracking_uid
    seg_ref = groups[1].referenced_segment
    import pydicom

    seg = pydicom.dcmread(seg_path)
    item = seg_ref[0].ReferencedSOPSequence[0]
    assert item.ReferencedSOPInstanceUID == seg.SOPInstanceUID
    assert int(item.ReferencedSegmentNumber) == 2  # the segment coded Nodule, found automatically
    assert _values(groups[0])["Volume"][0] == pytest.approx(detections[0].volume_mm3)


def test_sr_errors(ct: Image, detections: list[Detection], tmp_path: Path) -> None:
    from medseg.detect.sr import write_nodule_sr

    plain = Image(np.zeros((2, 4, 4), np.int16), np.eye(4), "intensity", "CT")
    with pytest.raises(ExportError, match="DICOM"):
        write_nodule_sr(detections, plain, tmp_path / "a.dcm")
    other = shutil.copy(Path(ct.source.files[0]), tmp_path / "ct.dcm")
    with pytest.raises(InputError, match="Segmentation"):
        write_nodule_sr(detections, ct, tmp_path / "b.dcm", seg=other)
    with pytest.raises(ExportError, match="overwrite an input"):
        write_nodule_sr(
            detections,
            ct.replace(
                source=ct.source.__class__(
                    path=tmp_path, format="dicom", datasets=ct.source.datasets, files=(tmp_path / "ct.dcm",)
                )
            ),
            tmp_path / "ct.dcm",
        )
    bad = Detection((0.0, 0.0, 0.0), (0.0, 0.0, 0.0), 5.0, 60.0, 1.5, 1.0, 3)
    with pytest.raises(InputError, match="score"):
        write_nodule_sr([bad], ct, tmp_path / "c.dcm")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ct.dcm"]


def test_sr_without_findings_is_refused(ct: Image, tmp_path: Path) -> None:
    from medseg.detect.sr import write_nodule_sr

    with pytest.raises(ExportError, match="no nodule"):
        write_nodule_sr([], ct, tmp_path / "empty.dcm")
    assert not any(tmp_path.iterdir())
