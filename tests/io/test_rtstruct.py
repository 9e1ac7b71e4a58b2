"""RT Structure Sets as a label source: rasterisation rules on hand-built RTSTRUCTs and the real
NSCLC-Radiomics planning structure sets against the shipped lung label volumes."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from medseg.errors import DicomInputError, GeometryError, InputError
from medseg.image import Image, ImageSource, affine_from_geometry
from medseg.io.rtstruct import (
    RTSTRUCT_SOP_CLASS,
    canonical_roi_name,
    fill_polygon,
    list_rois,
    read_rtstruct,
    read_slice_uids,
)
from medseg.metrics import dice

# reference grid: 4 slices of 20 rows x 30 columns, 0.5 mm pixels, 2 mm slices
SPACING = (0.5, 0.5, 2.0)
ORIGIN = (-10.0, 5.0, 100.0)
SHAPE = (4, 20, 30)
FOR_UID = generate_uid()
SLICE_UIDS = [generate_uid() for _ in range(SHAPE[0])]


def reference(*, flip_x: bool = False, dicom: bool = False) -> Image:
    direction = np.diag([-1.0 if flip_x else 1.0, 1.0, 1.0])
    origin = list(ORIGIN)
    if flip_x:  # same world box, x index running to patient right
        origin[0] = ORIGIN[0] + (SHAPE[2] - 1) * SPACING[0]
    source = ImageSource()
    if dicom:
        headers = []
        for uid in SLICE_UIDS:
            ds = Dataset()
            ds.SOPInstanceUID = uid
            ds.FrameOfReferenceUID = FOR_UID
            headers.append(ds)
        source = ImageSource(path=Path("ct"), format="dicom", datasets=tuple(headers))
    affine = affine_from_geometry(SPACING, origin, direction)
    return Image(np.zeros(SHAPE, np.int16), affine, modality="CT", source=source)


def square(i0: float, i1: float, j0: float, j1: float, k: float) -> list[float]:
    """ContourData (LPS mm) of the rectangle between index x i0..i1, y j0..j1 on slice k."""
    pts = [(i0, j0), (i1, j0), (i1, j1), (i0, j1)]
    out: list[float] = []
    for i, j in pts:
        out += [ORIGIN[0] + i * SPACING[0], ORIGIN[1] + j * SPACING[1], ORIGIN[2] + k * SPACING[2]]
    return out


def write_rtstruct(
    path: Path,
    rois: dict[str, list[tuple[str, list[float], str | None]]],
    *,
    listed_uids: Sequence[str] | None = None,
    frame_of_reference: str = FOR_UID,
) -> Path:
    """An RTSTRUCT with ``{roi name: [(geometric type, ContourData, referenced SOP UID or None)]}``."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = RTSTRUCT_SOP_CLASS
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = RTSTRUCT_SOP_CLASS
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "RTSTRUCT"
    ds.PatientID = "PHANTOM"
    ref_for = Dataset()
    ref_for.FrameOfReferenceUID = frame_of_reference
    if listed_uids is not None:
        study, series = Dataset(), Dataset()
        series.SeriesInstanceUID = generate_uid()
        images = []
        for uid in listed_uids:
            item = Dataset()
            item.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
            item.ReferencedSOPInstanceUID = uid
            images.append(item)
        series.ContourImageSequence = DicomSequence(images)
        study.RTReferencedSeriesSequence = DicomSequence([series])
        ref_for.RTReferencedStudySequence = DicomSequence([study])
    ds.ReferencedFrameOfReferenceSequence = DicomSequence([ref_for])
    structure_rois, roi_contours = [], []
    for number, (name, contours) in enumerate(rois.items(), start=1):
        roi = Dataset()
        roi.ROINumber = number
        roi.ROIName = name
        roi.ReferencedFrameOfReferenceUID = frame_of_reference
        structure_rois.append(roi)
        rc = Dataset()
        rc.ReferencedROINumber = number
        rc.ROIDisplayColor = [255, 0, number]
        items = []
        for kind, data, uid in contours:
            c = Dataset()
            c.ContourGeometricType = kind
            c.NumberOfContourPoints = len(data) // 3
            c.ContourData = [f"{v:.4f}" for v in data]
            if uid is not None:
                img = Dataset()
                img.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
                img.ReferencedSOPInstanceUID = uid
                c.ContourImageSequence = DicomSequence([img])
            items.append(c)
        rc.ContourSequence = DicomSequence(items)
        roi_contours.append(rc)
    ds.StructureSetROISequence = DicomSequence(structure_rois)
    ds.ROIContourSequence = DicomSequence(roi_contours)
    ds.save_as(path, enforce_file_format=True)
    return path


def box_mask(i0: int, i1: int, j0: int, j1: int) -> np.ndarray:
    """(y, x) mask of pixel centres i0..i1 (x) and j0..j1 (y), inclusive."""
    m = np.zeros(SHAPE[1:], bool)
    m[j0 : j1 + 1, i0 : i1 + 1] = True
    return m


@pytest.fixture()
def phantom_rt(tmp_path: Path) -> Path:
    return write_rtstruct(
        tmp_path / "rt.dcm",
        {
            # slice 1: outline with a hole; slice 2: the same outline exported twice
            "Lung-Left": [
                ("CLOSED_PLANAR", square(1.5, 9.5, 1.5, 9.5, 1), SLICE_UIDS[1]),
                ("CLOSED_PLANAR", square(3.5, 5.5, 3.5, 5.5, 1), SLICE_UIDS[1]),
                ("CLOSED_PLANAR", square(1.5, 9.5, 1.5, 9.5, 2), None),
                ("CLOSED_PLANAR", square(1.5, 9.5, 1.5, 9.5, 2), None),
            ],
            # two islands on one slice
            "LUNG_R": [
                ("CLOSED_PLANAR", square(14.5, 17.5, 2.5, 4.5, 1), None),
                ("CLOSED_PLANAR", square(20.5, 24.5, 10.5, 15.5, 1), None),
            ],
            "Heart": [("CLOSED_PLANAR", square(11.5, 13.5, 11.5, 13.5, 3), None)],
            "Isocenter": [("POINT", square(5, 5, 5, 5, 2)[:3], None)],
        },
        listed_uids=SLICE_UIDS,
    )


def test_holes_islands_duplicates_and_values(phantom_rt: Path) -> None:
    labels, names = read_rtstruct(phantom_rt, reference(), rois=["right lung", "left lung"])
    assert names == {1: "right lung", 2: "left lung"}
    assert labels.kind == "label" and labels.array.dtype == np.uint8 and labels.same_geometry(reference())
    a = labels.array
    expected_left_1 = box_mask(2, 9, 2, 9) & ~box_mask(4, 5, 4, 5)  # even-odd: the inner contour is a hole
    np.testing.assert_array_equal(a[1] == 2, expected_left_1)
    np.testing.assert_array_equal(a[2] == 2, box_mask(2, 9, 2, 9))  # 2 copies count once, not XOR'd away
    np.testing.assert_array_equal(a[1] == 1, box_mask(15, 17, 3, 4) | box_mask(21, 24, 11, 15))
    assert not a[0].any() and not a[3].any()  # heart not requested


def test_default_reads_every_closed_roi_in_file_order(phantom_rt: Path) -> None:
    labels, names = read_rtstruct(phantom_rt, reference())
    assert names == {1: "left lung", 2: "right lung", 3: "heart"}  # POINT ROI skipped
    assert set(np.unique(labels.array)) == {0, 1, 2, 3}
    np.testing.assert_array_equal(labels.array[3] == 3, box_mask(12, 13, 12, 13))


def test_mapping_sets_values_and_flipped_reference_gives_same_world_labels(phantom_rt: Path) -> None:
    plain, _ = read_rtstruct(phantom_rt, reference(), rois={"Lung L": 7, "lung r": 300})
    assert plain.array.dtype == np.uint16 and set(np.unique(plain.array)) == {0, 7, 300}
    flipped, _ = read_rtstruct(phantom_rt, reference(flip_x=True), rois={"Lung L": 7, "lung r": 300})
    np.testing.assert_array_equal(flipped.array[:, :, ::-1], plain.array)


def test_scanline_fill_equals_skimage_polygon() -> None:
    skdraw = pytest.importorskip("skimage.draw")
    rng = np.random.default_rng(0)
    for _ in range(300):
        n = int(rng.integers(3, 30))
        shape = (int(rng.integers(5, 50)), int(rng.integers(5, 50)))
        rows = rng.uniform(-5, shape[0] + 5, n)
        cols = rng.uniform(-5, shape[1] + 5, n)
        ours = np.zeros(shape, bool)
        ours[fill_polygon(rows, cols, shape)] = True
        ref = np.zeros(shape, bool)
        ref[skdraw.polygon(rows, cols, shape)] = True
        np.testing.assert_array_equal(ours, ref)


@pytest.mark.parametrize(
    ("name", "canonical"),
    [
        ("Lung L", "left lung"),
        ("Lung-Left", "left lung"),
        ("LUNG_L", "left lung"),
        ("Lt Lung", "left lung"),
        ("LungL", "left lung"),
        ("Lung R", "right lung"),
        ("Lung-Right", "right lung"),
        ("RT_LUNG", "right lung"),
        ("Lungs", "lungs"),
        ("Spinal_Cord", "spinal cord"),
        ("GTV-1", "gtv 1"),
        ("Lung L-GTV", "lung l gtv"),  # a lung minus tumour is not the lung
    ],
)
def test_canonical_roi_names(name: str, canonical: str) -> None:
    assert canonical_roi_name(name) == canonical


def test_contour_off_any_slice_is_a_geometry_error(tmp_path: Path) -> None:
    def shifted(k: int, dz: float) -> list[float]:
        pts = square(1.5, 5.5, 1.5, 5.5, k)
        pts[2::3] = [v + dz for v in pts[2::3]]
        return pts

    # 0.6 mm above slice 1 (slices 2 mm apart): within half a slice, lands on slice 1
    near = write_rtstruct(tmp_path / "near.dcm", {"Lung L": [("CLOSED_PLANAR", shifted(1, 0.6), None)]})
    labels, _ = read_rtstruct(near, reference())
    assert labels.array[1].any() and not labels.array[[0, 2, 3]].any()
    # a tighter tolerance rejects it, naming the ROI and the z
    with pytest.raises(GeometryError, match=r"'Lung L'.*z = 102\.60 mm is 0\.60 mm off slice 1"):
        read_rtstruct(near, reference(), z_tolerance_mm=0.1)
    # beyond the volume: more than half a slice above the top slice (z = 106 mm)
    above = write_rtstruct(tmp_path / "above.dcm", {"Heart": [("CLOSED_PLANAR", shifted(3, 1.2), None)]})
    with pytest.raises(GeometryError, match=r"'Heart'.*z = 107\.20 mm lies outside"):
        read_rtstruct(above, reference())
    # exactly between two slices: ambiguous
    between = write_rtstruct(tmp_path / "mid.dcm", {"Heart": [("CLOSED_PLANAR", shifted(1, 1.0), None)]})
    with pytest.raises(GeometryError, match=r"'Heart'.*z = 103\.00 mm"):
        read_rtstruct(between, reference())
    # a tilted contour (z varies across its points) is not on one slice
    tilted = square(1.5, 5.5, 1.5, 5.5, 1)
    tilted[2::3] = [102.0, 102.0, 104.0, 104.0]
    path = write_rtstruct(tmp_path / "tilt.dcm", {"Heart": [("CLOSED_PLANAR", tilted, None)]})
    with pytest.raises(GeometryError, match="'Heart'"):
        read_rtstruct(path, reference())


def test_series_checks(phantom_rt: Path, tmp_path: Path) -> None:
    # a DICOM reference: its UIDs are used; the contour that names slice 1 is on slice 1
    labels, _ = read_rtstruct(phantom_rt, reference(dicom=True), rois=["left lung"])
    assert labels.array[1].any()
    # slice order given wrongly: the named image is not the slice the contour lies on
    with pytest.raises(GeometryError, match="references the image of slice"):
        read_rtstruct(phantom_rt, reference(), rois=["left lung"], slice_uids=SLICE_UIDS[::-1])
    with pytest.raises(GeometryError, match="slice_uids has 3 entries"):
        read_rtstruct(phantom_rt, reference(), slice_uids=SLICE_UIDS[:3])
    with pytest.raises(GeometryError, match="none of them a slice of the reference"):
        read_rtstruct(phantom_rt, reference(), slice_uids=[generate_uid() for _ in SLICE_UIDS])
    other_for = write_rtstruct(
        tmp_path / "for.dcm",
        {"Heart": [("CLOSED_PLANAR", square(1.5, 5.5, 1.5, 5.5, 1), None)]},
        frame_of_reference=generate_uid(),
    )
    with pytest.raises(GeometryError, match="frame of reference"):
        read_rtstruct(other_for, reference(dicom=True))
    with pytest.raises(GeometryError, match="3-D CT volume"):
        read_rtstruct(phantom_rt, Image(np.zeros((20, 30)), np.eye(3)))


def test_roi_selection_errors(phantom_rt: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"no ROI named 'Liver'.*'Lung-Left'"):
        read_rtstruct(phantom_rt, reference(), rois=["Liver"])
    with pytest.raises(InputError, match="no CLOSED_PLANAR contours"):
        read_rtstruct(phantom_rt, reference(), rois=["Isocenter"])
    with pytest.raises(InputError, match="must be unique"):
        read_rtstruct(phantom_rt, reference(), rois={"left lung": 1, "right lung": 1})
    twice = write_rtstruct(
        tmp_path / "twice.dcm",
        {
            "Lung L": [("CLOSED_PLANAR", square(1.5, 5.5, 1.5, 5.5, 1), None)],
            "Lung-Left": [("CLOSED_PLANAR", square(1.5, 5.5, 1.5, 5.5, 2), None)],
        },
    )
    with pytest.raises(InputError, match="ambiguous"):
        read_rtstruct(twice, reference(), rois=["left lung"])
    labels, _ = read_rtstruct(twice, reference(), rois=["Lung-Left"])  # the exact name still works
    assert labels.array[2].any() and not labels.array[1].any()


def test_not_an_rtstruct_is_a_dicom_input_error(tmp_path: Path) -> None:
    ct = get_testdata_file("CT_small.dcm")
    assert ct is not None
    with pytest.raises(DicomInputError, match="not an RT Structure Set"):
        read_rtstruct(ct, reference())
    with pytest.raises(DicomInputError, match="not an RT Structure Set"):
        list_rois(ct)
    text = tmp_path / "notes.dcm"
    text.write_text("not dicom at all")
    with pytest.raises(DicomInputError, match="not a DICOM file"):
        read_rtstruct(text, reference())
    with pytest.raises(DicomInputError, match="not found"):
        read_rtstruct(tmp_path / "missing.dcm", reference())


def test_read_slice_uids(tmp_path: Path) -> None:
    table = tmp_path / "slices.csv"
    with table.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["index_k", "z_mm", "sop_instance_uid"])
        for k in (2, 0, 1):
            w.writerow([k, k * 2.0, f"1.2.3.{k}"])
    assert read_slice_uids(table) == ["1.2.3.0", "1.2.3.1", "1.2.3.2"]
    table.write_text("index_k,sop_instance_uid\n0,1.2\n2,1.3\n")
    with pytest.raises(InputError, match="without gaps"):
        read_slice_uids(table)


# --------------------------------------------------------------------------------------------
# real planning structure sets
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module", params=["LUNG1-002", "LUNG1-003"])
def real_case(request: pytest.FixtureRequest, shared_data: Path) -> tuple[Path, Image, Image]:
    from medseg.io import read_image

    folder = shared_data / "ct_lung_nsclc_radiomics" / request.param
    if not (folder / "rtstruct.dcm").is_file():
        pytest.skip(f"{folder} not present")
    ct = read_image(folder / "ct.nii.gz", modality="CT")
    shipped = read_image(folder / "lung_label.nii.gz", kind="label")
    return folder, ct, shipped


def test_real_lungs_match_the_shipped_label_volume(real_case: tuple[Path, Image, Image]) -> None:
    folder, ct, shipped = real_case
    uids = read_slice_uids(folder / "slices.csv")
    labels, names = read_rtstruct(
        folder / "rtstruct.dcm", ct, rois=["right lung", "left lung"], slice_uids=uids
    )
    assert names == {1: "right lung", 2: "left lung"}
    assert labels.same_geometry(ct) and shipped.same_geometry(ct)
    for value in (1, 2):
        ours = labels.array == value
        ref = shipped.array == value
        on_ref = ref.any(axis=(1, 2))
        # where the shipped volume has the lung, the rasterisations agree (measured >= 0.9999)
        assert dice(ours[on_ref], ref[on_ref]) >= 0.98
        # slices only we have come from duplicated contours that XOR erased in the shipped
        # volume (LUNG1-002 Lung L): each must be as large as its neighbours, i.e. real lung
        area = ours.sum(axis=(1, 2))
        present = np.flatnonzero(area)
        assert area[present.min() : present.max() + 1].all()  # a lung has no empty slice in its z range
        for k in np.flatnonzero(area.astype(bool) & ~on_ref):
            neighbours = [area[j] for j in (k - 1, k + 1) if 0 <= j < len(area) and area[j]]
            assert neighbours and abs(area[k] - np.mean(neighbours)) <= 0.15 * np.mean(neighbours), k


def test_real_list_rois(real_case: tuple[Path, Image, Image]) -> None:
    folder = real_case[0]
    rois = {r.name: r for r in list_rois(folder / "rtstruct.dcm")}
    assert rois["Lung L"].canonical == "left lung" and rois["Lung R"].canonical == "right lung"
    assert rois["Lung L"].geometric_types == ("CLOSED_PLANAR",)
    assert rois["Isocenter 1"].geometric_types == ("POINT",)
    ds = pydicom.dcmread(folder / "rtstruct.dcm", stop_before_pixels=True)
    assert [r.name for r in list_rois(folder / "rtstruct.dcm")] == [
        str(r.ROIName) for r in ds.StructureSetROISequence
    ]
