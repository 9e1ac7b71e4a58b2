"""The classic CT lung auto-labeller: a synthetic chest phantom (fast, every branch) and the two
real NSCLC-Radiomics planning CTs against the clinicians' RTSTRUCT lung contours."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from medseg.errors import InputError
from medseg.image import Image, affine_from_geometry
from medseg.labelling.autolabel import LUNG_LABELS, AutolabelParams, autolabel_ct_lungs
from medseg.metrics import dice

SPACING = (2.5, 2.5, 5.0)  # x, y, z mm
SHAPE = (44, 120, 140)  # z, y, x


def _grid() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """World mm coordinates (LPS, centred on the volume) of every voxel, each ``(z, y, x)``."""
    nz, ny, nx = SHAPE
    z = (np.arange(nz) - (nz - 1) / 2) * SPACING[2]
    y = (np.arange(ny) - (ny - 1) / 2) * SPACING[1]
    x = (np.arange(nx) - (nx - 1) / 2) * SPACING[0]
    return np.meshgrid(z, y, x, indexing="ij")


def make_phantom(
    *, join: str = "none", bowel: bool = False, seed: int = 0
) -> tuple[Image, dict[str, np.ndarray]]:
    """A chest-like CT in HU with known truth.

    Body: elliptic cylinder (soft tissue, 40 HU) in air (-1000), a table slab below it. Lungs:
    two ellipsoids (-850 HU) at patient right (-x) and left (+x) with vessels (+40 HU). Airways:
    trachea (-1000 HU) from the top down to a carina, two main bronchi into the lungs.
    ``join``: ``"none"`` (lungs 40 mm apart), ``"junction"`` (a thin anterior junction line, 8 mm,
    joins them) or ``"fused"`` (they overlap along a broad front: no erosion separates them).
    ``bowel``: a gas pocket under the left lung joined to it by a one-voxel air channel through
    the diaphragm.
    """
    rng = np.random.default_rng(seed)
    z, y, x = _grid()
    body = (x / 150.0) ** 2 + (y / 105.0) ** 2 <= 1.0
    hu = np.where(body, 40.0, -1000.0)
    table = (y > 118) & (y < 126) & (np.abs(x) < 160)
    hu[table] = 300.0
    cx = {"none": 70.0, "junction": 62.0, "fused": 58.0}[join]
    ax = {"none": 50.0, "junction": 60.0, "fused": 60.0}[join]
    right = ((x + cx) / ax) ** 2 + (y / 70.0) ** 2 + ((z - 5) / 80.0) ** 2 <= 1.0
    left = ((x - cx) / ax) ** 2 + (y / 70.0) ** 2 + ((z - 5) / 80.0) ** 2 <= 1.0
    if join == "junction":
        bridge = (np.abs(x) <= 8.0) & (np.abs(y + 5) <= 4.0) & (np.abs(z - 5) <= 30)
        right |= bridge & (x <= 0)
        left |= bridge & (x > 0)
    left &= ~right  # any overlap goes to the right lung
    hu[right | left] = -850.0
    # vessels: short cylinders inside each lung (holes that must be filled back)
    vessels = np.zeros(SHAPE, dtype=bool)
    for sx in (-1, 1):
        for vy in (-30.0, 0.0, 30.0):
            vessels |= ((x - sx * (cx + 10)) ** 2 + (y - vy) ** 2 <= 16.0) & (np.abs(z - 5) < 40)
    hu[vessels & (right | left)] = 40.0
    # airways: trachea from the top to the carina at z = 40, main bronchi down-laterally
    trachea = (x**2 + (y + 20) ** 2 <= 9.0**2) & (z >= 40)
    airway = trachea.copy()
    for sx in (-1, 1):
        for t in np.linspace(0.0, 1.0, 40):
            px, pz = sx * 35.0 * t, 40.0 - 40.0 * t
            airway |= ((x - px) ** 2 + (y + 20) ** 2 + (z - pz) ** 2) <= 7.0**2
    hu[airway & body] = -1000.0
    bowel_mask = np.zeros(SHAPE, dtype=bool)
    if bowel:
        bowel_mask = ((x - 70) ** 2 + y**2 + (z + 100) ** 2) <= 18.0**2
        hu[bowel_mask] = -1000.0
        lowest = int(np.flatnonzero(left.any(axis=(1, 2))).min())
        top = int(np.flatnonzero(bowel_mask.any(axis=(1, 2))).max())
        assert lowest - top >= 2  # at least one slice of diaphragm between them
        j, i = np.median(np.argwhere(left[lowest]), axis=0).astype(int)
        assert bowel_mask[top, j, i]
        hu[top : lowest + 1, j, i] = -950.0  # a one-voxel air channel through the diaphragm
    hu = hu + rng.normal(0.0, 20.0, SHAPE)
    origin = [-(n - 1) / 2 * s for n, s in zip(SHAPE[::-1], SPACING, strict=True)]
    affine = affine_from_geometry(SPACING, origin, np.eye(3))
    ct = Image(np.round(hu).astype(np.int16), affine, modality="CT")
    truth = {
        "right lung": right,
        "left lung": left,
        "trachea": trachea & body,
        "bowel": bowel_mask,
        "body": body,
    }
    return ct, truth


def _world_x(img: Image, mask: np.ndarray) -> float:
    kji = np.argwhere(mask)
    return float(img.index_to_world(kji[:, ::-1].astype(float))[:, 0].mean())


# --------------------------------------------------------------------------------------------
# synthetic phantom
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("join", "how"), [("none", "components"), ("junction", "erosion"), ("fused", "midline")]
)
def test_phantom_lungs_sides_and_airways(join: str, how: str, caplog: pytest.LogCaptureFixture) -> None:
    ct, truth = make_phantom(join=join)
    with caplog.at_level(logging.DEBUG, logger="medseg.labelling.autolabel"):
        out = autolabel_ct_lungs(ct)
    assert f"lungs separated by {how}" in caplog.text
    assert out.kind == "label" and out.array.dtype == np.uint8
    assert out.same_geometry(ct)
    assert set(np.unique(out.array)) == {0, 1, 2}
    for value, name in LUNG_LABELS.items():
        assert dice(out.array == value, truth[name]) >= 0.9, name
    # patient left = +x in LPS
    assert _world_x(out, out.array == 2) > 0 > _world_x(out, out.array == 1)
    # the trachea is airway, not lung (without the airway step it would be labelled)
    assert np.count_nonzero(out.array[truth["trachea"]]) <= 0.02 * np.count_nonzero(truth["trachea"])
    no_airways = autolabel_ct_lungs(ct, AutolabelParams(trachea_seed_hu=-5000.0))
    assert np.count_nonzero(no_airways.array[truth["trachea"]]) > 0.5 * np.count_nonzero(truth["trachea"])
    assert not np.any(out.array[~truth["body"]])


@pytest.mark.parametrize("layout", ["RPS", "LSP"])
def test_phantom_other_storage_orientations_give_the_same_labels(layout: str) -> None:
    """The same anatomy stored with x running to patient right (RPS) or as coronal slices (LSP):
    labels are the LPS labels, stored the same way, and sides still follow world x."""
    ct, truth = make_phantom()
    lps = autolabel_ct_lungs(ct).array
    a = ct.affine
    if layout == "RPS":
        array = np.ascontiguousarray(ct.array[:, :, ::-1])
        affine = a.copy()
        affine[:3, 0] = -a[:3, 0]
        affine[:3, 3] = ct.index_to_world([SHAPE[2] - 1, 0, 0])
        undo = lambda arr: arr[:, :, ::-1]  # noqa: E731
    else:  # index (i, j, k) = (x, z, y): array (y, z, x)
        array = np.ascontiguousarray(np.transpose(ct.array, (1, 0, 2)))
        affine = a.copy()
        affine[:3, 1], affine[:3, 2] = a[:3, 2], a[:3, 1]
        undo = lambda arr: np.transpose(arr, (1, 0, 2))  # noqa: E731
    stored = Image(array, affine, modality="CT")
    assert stored.orientation == layout
    out = autolabel_ct_lungs(stored)
    assert out.same_geometry(stored)
    np.testing.assert_array_equal(undo(out.array), lps)
    assert _world_x(out, out.array == 2) > 0 > _world_x(out, out.array == 1)
    for value, name in LUNG_LABELS.items():
        assert dice(undo(out.array) == value, truth[name]) >= 0.9, name


def test_phantom_bowel_gas_bridge_is_cut() -> None:
    ct, truth = make_phantom(bowel=True)
    out = autolabel_ct_lungs(ct)
    assert np.count_nonzero(out.array[truth["bowel"]]) <= 0.05 * np.count_nonzero(truth["bowel"])
    assert dice(out.array == 2, truth["left lung"]) >= 0.9
    # if the cut-off bowel gas did not keep its own air, the flood would bring it in with the lung
    no_block = autolabel_ct_lungs(ct, AutolabelParams(blocker_min_ml=1e9))
    assert np.count_nonzero(no_block.array[truth["bowel"]]) > 0.5 * np.count_nonzero(truth["bowel"])


def test_phantom_one_lung_only_is_labelled_by_its_side() -> None:
    ct, truth = make_phantom()
    hu = ct.array.copy()
    hu[truth["left lung"]] = 40  # left lung collapsed / removed
    out = autolabel_ct_lungs(ct.with_array(hu))
    assert dice(out.array == 1, truth["right lung"]) >= 0.9
    assert np.count_nonzero(out.array == 2) == 0


# --------------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------------
def _volume(array: np.ndarray) -> Image:
    return Image(array, affine_from_geometry((1.0, 1.0, 2.0), (0, 0, 0), np.eye(3)), modality="CT")


@pytest.mark.parametrize(
    "array",
    [
        np.zeros((8, 64, 64), np.int16),  # all zeros
        np.full((8, 64, 64), -1000, np.int16),  # all air
        np.random.default_rng(0).random((8, 64, 64)).astype(np.float32),  # rescaled to 0..1
        np.random.default_rng(0).integers(0, 4096, (8, 64, 64)).astype(np.uint16),  # raw stored values
    ],
    ids=["zeros", "air", "unit-range", "raw-0-4095"],
)
def test_not_ct_like_is_a_clear_input_error(array: np.ndarray) -> None:
    with pytest.raises(InputError, match="does not look like a CT in Hounsfield units"):
        autolabel_ct_lungs(_volume(array))


def test_other_bad_inputs() -> None:
    ct, _ = make_phantom()
    with pytest.raises(InputError, match="3-D CT volume"):
        autolabel_ct_lungs(Image(ct.array[20], np.eye(3)))
    with pytest.raises(InputError, match="label image"):
        autolabel_ct_lungs(ct.with_array((ct.array < -500).astype(np.uint8), kind="label"))
    nan = ct.array.astype(np.float32)
    nan[0, 0, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        autolabel_ct_lungs(ct.with_array(nan))
    solid = ct.array.copy()
    solid[solid < -500] = 40  # a body with no air inside, air only around it
    solid[:, :5, :] = -1000
    with pytest.raises(InputError, match="no lung found"):
        autolabel_ct_lungs(ct.with_array(solid))


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------
def test_cli_writes_nifti_label_map(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from medseg.cli import main
    from medseg.io import read_image, write_image

    ct, truth = make_phantom()
    src = write_image(ct, tmp_path / "ct.nii.gz")
    dst = tmp_path / "out" / "lungs.nii.gz"
    assert main(["autolabel", "ct-lungs", str(src), "--out", str(dst)]) == 0
    assert "right lung" in capsys.readouterr().out
    labels = read_image(dst, kind="label")
    assert labels.same_geometry(ct)
    np.testing.assert_array_equal(labels.array, autolabel_ct_lungs(ct).array)

    zeros = write_image(_volume(np.zeros((8, 64, 64), np.int16)), tmp_path / "zeros.nii.gz")
    assert main(["autolabel", "ct-lungs", str(zeros), "--out", str(tmp_path / "z.nii.gz")]) == 2
    err = capsys.readouterr().err
    assert "does not look like a CT" in err and "zeros.nii.gz" in err
    assert not (tmp_path / "z.nii.gz").exists()
    # DICOM-SEG needs DICOM input; unknown suffixes fail before any work
    assert main(["autolabel", "ct-lungs", str(src), "--out", str(tmp_path / "x.dcm")]) == 2
    assert "needs a DICOM image as its source" in capsys.readouterr().err
    assert main(["autolabel", "ct-lungs", str(src), "--out", str(tmp_path / "x.png")]) == 2
    assert "2-D label maps only" in capsys.readouterr().err
    assert main(["autolabel", "ct-lungs", str(src), "--out", str(tmp_path / "x.jpg")]) == 2
    assert "cannot write a label map as .jpg" in capsys.readouterr().err


def test_cli_dicom_in_dicom_seg_out(repo_root: Path, tmp_path: Path) -> None:
    from medseg.cli import main
    from medseg.io import read_dicom_seg, read_image

    series = repo_root / "sample_data" / "ct" / "LIDC-IDRI-0001"
    if not series.is_dir():
        pytest.skip("sample_data/ct/LIDC-IDRI-0001 not present")
    dst = tmp_path / "lungs_seg.dcm"
    assert main(["autolabel", "ct-lungs", str(series), "--out", str(dst)]) == 0
    ct = read_image(series)
    labels, names = read_dicom_seg(dst, ct)
    assert names == LUNG_LABELS
    np.testing.assert_array_equal(labels.array, autolabel_ct_lungs(ct).array)


# --------------------------------------------------------------------------------------------
# real planning CTs vs the clinicians' contours
# --------------------------------------------------------------------------------------------
#: floor on Dice per lung; measured 0.953 / 0.966 (LUNG1-002 R/L) and 0.977 / 0.969 (LUNG1-003)
#: with scripts/eval_autolabel.py
REAL_DICE_FLOOR = 0.93


@pytest.fixture(scope="module", params=["LUNG1-002", "LUNG1-003"])
def real_case(request: pytest.FixtureRequest, shared_data: Path) -> tuple[Image, Image, Image, Image]:
    from medseg.io import read_image
    from medseg.io.rtstruct import read_rtstruct

    folder = shared_data / "ct_lung_nsclc_radiomics" / request.param
    if not (folder / "ct.nii.gz").is_file():
        pytest.skip(f"{folder} not present")
    ct = read_image(folder / "ct.nii.gz", modality="CT")
    lungs, _ = read_rtstruct(folder / "rtstruct.dcm", ct, rois=["right lung", "left lung"])
    patient, _ = read_rtstruct(folder / "rtstruct.dcm", ct, rois=["Patient"])
    return ct, autolabel_ct_lungs(ct), lungs, patient


def test_real_ct_matches_clinician_lungs(real_case: tuple[Image, Image, Image, Image]) -> None:
    ct, auto, lungs, patient = real_case
    assert auto.same_geometry(ct)
    for value, name in LUNG_LABELS.items():
        assert dice(auto.array == value, lungs.array == value) >= REAL_DICE_FLOOR, name
    # left lung (2) lies at larger world x (LPS: +x = patient left)
    assert _world_x(auto, auto.array == 2) > _world_x(auto, auto.array == 1)
    # nothing outside the clinicians' body contour ("Patient" ROI): no outside air, no table
    assert np.count_nonzero(auto.array[patient.array == 0]) == 0
