"""Annotator agreement on real CXR lung masks (perturbed copies as other raters) and constructed cases."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from scipy import ndimage as ndi

from medseg.errors import ExportError, GeometryError, InputError
from medseg.image import Image, ImageSource, affine_from_geometry
from medseg.labelling import agreement, consensus

SMALL_MASKS = (
    "kjr-21-e24-g001-l-a_lungs.png",
    "covid-19-pneumonia-evolution-over-a-week-1-day0-PA_lungs.png",
)


def _png_mask(path: Path) -> Image:
    """A real CXR mask as a label Image (spacing unknown, like any PNG)."""
    arr = np.array(PILImage.open(path))
    return Image(arr, np.eye(3), kind="label", source=ImageSource(path=path, format="png"))


def _rater(base: Image, arr: np.ndarray, name: str) -> Image:
    return base.replace(array=arr.astype(np.uint8), source=ImageSource(path=Path(name), format="png"))


def _shift_cols(arr: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros_like(arr)
    out[:, n:] = arr[:, :-n]
    return out


def _per_label(arr: np.ndarray, fn) -> np.ndarray:
    out = np.zeros_like(arr)
    for v in (1, 2):
        out[fn(arr == v)] = v
    return out


@pytest.fixture(scope="module")
def cxr_mask(shared_data: Path) -> Image:
    return _png_mask(shared_data / "cxr_lung_covid19_gb" / "masks" / SMALL_MASKS[1])


def test_two_raters_identical_real_mask(cxr_mask: Image) -> None:
    report = agreement(
        [cxr_mask, _rater(cxr_mask, cxr_mask.array, "copy.png")], labels={1: "right lung", 2: "left lung"}
    )
    assert [r.structure for r in report.rows] == ["right lung", "left lung"]
    for r in report.rows:
        assert r.comparison == "pair" and r.dice == 1.0 and r.hd95 == 0.0 and r.size_diff == 0.0
    assert report.distance_unit == "px" and report.size_unit == "px"  # PNG: spacing unknown
    assert report.notes and "pixels" in report.notes[0]


def test_shifted_rater_has_the_shift_as_hausdorff_and_numpy_dice(cxr_mask: Image) -> None:
    shifted = _shift_cols(cxr_mask.array, 4)
    report = agreement([cxr_mask, _rater(cxr_mask, shifted, "shifted.png")])
    # no names in PNG files: the project's default lung labels name the structures, and a note says so
    assert report.labels == {1: "right lung", 2: "left lung"}
    assert any("default labels 1=right lung, 2=left lung" in n for n in report.notes)
    for r in report.rows:
        a, b = cxr_mask.array == r.label, shifted == r.label
        assert r.dice == pytest.approx(2 * np.sum(a & b) / (a.sum() + b.sum()))
        # a translation by 4 columns: every surface point moves 4 px, the extreme columns move by exactly 4
        assert r.hausdorff == pytest.approx(4.0)
        assert 0 < r.hd95 <= 4.0 + 1e-6
        assert r.reference == SMALL_MASKS[1] and r.rater == "shifted.png"


def test_eroded_and_dilated_raters_sizes_and_units_in_mm(cxr_mask: Image) -> None:
    spacing = 0.5  # pretend a known 0.5 mm pixel spacing (DICOM-like source)
    ref = cxr_mask.replace(affine=np.diag([spacing, spacing, 1.0]), source=ImageSource(format="dicom"))
    eroded = _per_label(ref.array, lambda m: ndi.binary_erosion(m, iterations=3))
    report = agreement([ref, ref.with_array(eroded)], names=["expert", "novice"])
    assert report.distance_unit == "mm" and report.size_unit == "cm2"
    for r in report.rows:
        na, nb = int(np.sum(ref.array == r.label)), int(np.sum(eroded == r.label))
        assert r.size_reference == pytest.approx(na * spacing**2 / 100)
        assert r.size_diff_pct == pytest.approx(100 * (nb - na) / na)
        assert r.size_diff < 0
    # distances scale with the spacing: the same masks without spacing give pixels
    in_px = agreement([cxr_mask, cxr_mask.with_array(eroded)])
    assert in_px.distance_unit == "px"
    for r_mm, r_px in zip(report.rows, in_px.rows, strict=True):
        assert r_px.hausdorff >= 3.0  # eroded 3 times: no old edge point is closer than 3 px
        assert r_mm.hausdorff == pytest.approx(r_px.hausdorff * spacing)
        assert r_mm.hd95 == pytest.approx(r_px.hd95 * spacing)


def test_staple_of_three_identical_masks_is_the_mask(cxr_mask: Image) -> None:
    raters = [cxr_mask, _rater(cxr_mask, cxr_mask.array, "b.png"), _rater(cxr_mask, cxr_mask.array, "c.png")]
    report = agreement(raters)
    assert report.method == "staple" and report.consensus is not None
    np.testing.assert_array_equal(report.consensus.array, cxr_mask.array)
    vs = [r for r in report.rows if r.comparison == "vs consensus"]
    assert len(vs) == 6 and all(r.dice == 1.0 for r in vs)
    assert all(r.sensitivity == pytest.approx(1.0) and r.specificity == pytest.approx(1.0) for r in vs)
    means = [r for r in report.rows if r.comparison == "pairwise mean"]
    assert len(means) == 2 and all(r.dice == 1.0 for r in means)
    assert len([r for r in report.rows if r.comparison == "pair"]) == 6


def test_staple_with_an_outlier_rater(cxr_mask: Image) -> None:
    arr = cxr_mask.array
    dilated = _per_label(arr, lambda m: ndi.binary_dilation(m, iterations=6))
    eroded = _per_label(arr, lambda m: ndi.binary_erosion(m, iterations=2))
    raters = [cxr_mask, _rater(cxr_mask, eroded, "eroded.png"), _rater(cxr_mask, dilated, "dilated.png")]
    report = agreement(raters, labels=[1, 2])
    for label in (1, 2):
        vs = {r.rater: r for r in report.rows if r.comparison == "vs consensus" and r.label == label}
        # the generous rater is the least specific, the stingy one the least sensitive
        assert vs["dilated.png"].specificity == min(r.specificity for r in vs.values())
        assert vs["eroded.png"].sensitivity == min(r.sensitivity for r in vs.values())
        pairs = [r for r in report.rows if r.comparison == "pair" and r.label == label]
        mean = next(r for r in report.rows if r.comparison == "pairwise mean" and r.label == label)
        assert mean.dice == pytest.approx(np.mean([r.dice for r in pairs]))


def test_majority_vote_on_constructed_case() -> None:
    shape = (40, 40)
    masks = []
    for top, left in ((5, 5), (5, 10), (10, 5)):
        m = np.zeros(shape, dtype=np.uint8)
        m[top : top + 15, left : left + 15] = 1
        masks.append(m)
    masks[0][30:35, 30:35] = 2  # label 2 only by rater 0 -> outvoted
    masks[1][30:35, 30:35] = 1  # same spot label 1 by rater 1 -> tie (1 vs 2 vs 0) -> background
    imgs = [
        Image(m, np.eye(3), kind="label", source=ImageSource(path=Path(f"r{i}.png")))
        for i, m in enumerate(masks)
    ]
    cons, stats = consensus(imgs, [1, 2], method="majority")
    votes_for_1 = sum((m == 1).astype(int) for m in masks)
    expected = np.where(votes_for_1 >= 2, 1, 0)
    np.testing.assert_array_equal(cons.array, expected)
    assert stats == {}
    report = agreement(imgs, method="majority")
    assert report.method == "majority"
    np.testing.assert_array_equal(report.consensus.array, expected)


def test_geometry_mismatch_names_the_file(cxr_mask: Image) -> None:
    other = Image(
        np.zeros((10, 10), np.uint8), np.eye(3), kind="label", source=ImageSource(path=Path("/x/bad.png"))
    )
    with pytest.raises(GeometryError, match="bad.png"):
        agreement([cxr_mask, other])
    moved = cxr_mask.replace(
        affine=np.diag([0.7, 0.7, 1.0]), source=ImageSource(path=Path("/x/moved.nii.gz"))
    )
    with pytest.raises(GeometryError, match="moved.nii.gz"):
        agreement([cxr_mask, moved])
    with pytest.raises(InputError, match="at least 2"):
        agreement([cxr_mask])
    intensity = cxr_mask.replace(kind="intensity")
    with pytest.raises(InputError, match="intensity"):
        agreement([cxr_mask, intensity])


def test_same_grid_in_another_index_order_is_reindexed() -> None:
    """A volume stored with slices top-down (as some DICOM-SEG writers do) is the same grid."""
    rng = np.random.default_rng(0)
    arr = (rng.random((4, 6, 5)) > 0.6).astype(np.uint8)
    spacing, origin = np.array([0.8, 0.8, 2.5]), np.array([-10.0, 20.0, -100.0])
    ref = Image(arr, affine_from_geometry(spacing, origin, np.eye(3)), kind="label")
    flipped_affine = ref.affine.copy()
    flipped_affine[2, 2] = -spacing[2]
    flipped_affine[2, 3] = origin[2] + 3 * spacing[2]  # first stored slice is the top one
    flipped = Image(arr[::-1].copy(), flipped_affine, kind="label", source=ImageSource(path=Path("seg.dcm")))
    report = agreement([ref, flipped], names=["nifti", "seg"])
    assert all(r.dice == 1.0 and r.hausdorff == 0.0 for r in report.rows)
    shifted = Image(arr, flipped_affine, kind="label", source=ImageSource(path=Path("shifted.dcm")))
    assert agreement([ref, shifted]).rows[0].dice < 1.0  # same grid, voxels really flipped in space


def test_csv_report_is_written_atomically(cxr_mask: Image, tmp_path: Path) -> None:
    shifted = _shift_cols(cxr_mask.array, 2)
    report = agreement(
        [cxr_mask, _rater(cxr_mask, shifted, "s.png"), _rater(cxr_mask, cxr_mask.array, "c.png")]
    )
    out = report.to_csv(tmp_path / "sub" / "agreement.csv")
    with out.open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(report.rows)
    assert {"structure", "comparison", "dice", "hd95", "size_diff_pct", "distance_unit"} <= set(rows[0])
    assert math.isclose(float(rows[0]["dice"]), report.rows[0].dice, rel_tol=1e-5)
    assert [p.name for p in out.parent.iterdir()] == ["agreement.csv"]  # no temp file left


def test_agreement_reads_png_files(shared_data: Path, tmp_path: Path) -> None:
    src = shared_data / "cxr_lung_covid19_gb" / "masks" / SMALL_MASKS[0]
    arr = np.array(PILImage.open(src))
    other = tmp_path / "rater2.png"
    PILImage.fromarray(_shift_cols(arr, 3)).save(other)
    report = agreement([src, other])
    assert report.raters == [src.name, "rater2.png"]
    assert sorted(report.labels) == [1, 2]
    assert all(r.hausdorff == pytest.approx(3.0) for r in report.rows)
    before = other.read_bytes()
    with pytest.raises(ExportError, match="overwrite an input"):
        report.to_csv(other)
    assert other.read_bytes() == before


def test_dicom_seg_agrees_with_its_nrrd_source(shared_data: Path) -> None:
    """dcmqi made liver.dcm from liver_seg.nrrd: read back, they must agree exactly."""
    folder = shared_data / "dicom_seg_interop" / "dcmqi"
    report = agreement([folder / "liver.dcm", folder / "liver_seg.nrrd"])
    assert len(report.rows) == 1
    row = report.rows[0]
    assert row.structure.lower() == "liver"  # the segment label from the SEG
    assert row.dice == 1.0 and row.hd95 == 0.0
    assert report.distance_unit == "mm" and report.size_unit == "mL" and row.size_reference > 0
    # placed on the CT it was drawn on (the SEG's own grid is stored top-down, the CT bottom-up)
    on_ct = agreement([folder / "liver.dcm", folder / "liver_seg.nrrd"], source=folder / "ct-3slice")
    assert on_ct.rows[0].dice == 1.0 and on_ct.rows[0].size_reference == pytest.approx(row.size_reference)
    with pytest.raises(GeometryError, match="liver_seg.nrrd"):
        agreement(
            [folder / "liver_seg.nrrd", folder / "liver_seg.nrrd"],
            source=shared_data / "dicom_seg_interop" / "highdicom" / "ct_image.dcm",
        )


def test_structure_names_from_given_labels_and_unknown_values(cxr_mask: Image) -> None:
    three = np.where(cxr_mask.array == 2, 3, cxr_mask.array).astype(np.uint8)  # left lung stored as 3
    report = agreement([cxr_mask.with_array(three), _rater(cxr_mask, three, "b.png")])
    assert report.labels == {1: "right lung", 3: "label 3"}
    named = agreement([cxr_mask, _rater(cxr_mask, cxr_mask.array, "b.png")], labels={1: "Lung_R", 2: "Lung_L"})
    assert [r.structure for r in named.rows] == ["Lung_R", "Lung_L"]  # as the user wrote them
    assert not any("default labels" in n for n in named.notes)
    with pytest.raises(Exception, match="both mean"):  # two values for one structure: ConfigError
        agreement([cxr_mask, cxr_mask], labels={1: "right lung", 2: "Lung_R"})


def test_one_path_is_not_a_list_of_characters(shared_data: Path) -> None:
    with pytest.raises(InputError, match="at least 2 annotations, got 1"):
        agreement(str(shared_data / "cxr_lung_covid19_gb" / "masks" / SMALL_MASKS[0]))


def test_intensity_image_given_as_a_mask_file(shared_data: Path) -> None:
    image = shared_data / "cxr_lung_covid19_gb" / "images" / "kjr-21-e25-g001-l-a.jpg"
    mask = shared_data / "cxr_lung_covid19_gb" / "masks" / "kjr-21-e25-g001-l-a_lungs.png"
    with pytest.raises(InputError, match="not a label map") as err:
        agreement([mask, image])
    assert "kjr-21-e25-g001-l-a.jpg" in str(err.value)


def test_consensus_is_saved_atomically(cxr_mask: Image, tmp_path: Path) -> None:
    from medseg.io import read_image

    eroded = _per_label(cxr_mask.array, lambda m: ndi.binary_erosion(m, iterations=2))
    dilated = _per_label(cxr_mask.array, lambda m: ndi.binary_dilation(m, iterations=2))
    raters = [cxr_mask, _rater(cxr_mask, eroded, "e.png"), _rater(cxr_mask, dilated, "d.png")]
    report = agreement(raters, method="majority")  # STAPLE is tested above; majority is quick
    out = report.save_consensus(tmp_path / "consensus.png")
    np.testing.assert_array_equal(read_image(out, kind="label").array, report.consensus.array)
    assert [p.name for p in tmp_path.iterdir()] == ["consensus.png"]
    with pytest.raises(ExportError, match="3 or more"):
        agreement(raters[:2]).save_consensus(tmp_path / "two.png")
    with pytest.raises(ExportError, match="DICOM image"):
        report.save_consensus(tmp_path / "consensus.dcm")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["consensus.png"]


def test_consensus_of_seg_and_nrrd_as_dicom_seg(shared_data: Path, tmp_path: Path) -> None:
    """Three raters on a DICOM CT: the consensus is written as a DICOM-SEG that reads back equal."""
    from medseg.io import read_label_map

    folder = shared_data / "dicom_seg_interop" / "dcmqi"
    masks = [folder / "liver.dcm", folder / "liver_seg.nrrd", folder / "liver_seg.nrrd"]
    report = agreement(masks, source=folder / "ct-3slice", method="majority")
    out = report.save_consensus(tmp_path / "consensus.dcm")
    back, names = read_label_map(out, source=report.reference_image)
    assert list(names.values()) == [report.labels[1]]
    np.testing.assert_array_equal(back.array, report.consensus.array)
