"""Mask QC: every real mask passes clean, every planted defect is flagged with the right check."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from scipy import ndimage as ndi

from medseg.errors import GeometryError, InputError
from medseg.image import Image, ImageSource
from medseg.io import read_label_map
from medseg.labelling import QCLimits, lung_role, qc, qc_files

CLEAN_CXR = "covid-19-pneumonia-evolution-over-a-week-1-day0-PA_lungs.png"  # 389 x 450


def _checks(flags) -> set[str]:
    return {f.check for f in flags}


@pytest.fixture(scope="module")
def cxr(shared_data: Path) -> Image:
    return read_label_map(shared_data / "cxr_lung_covid19_gb" / "masks" / CLEAN_CXR)[0]


@pytest.fixture(scope="module")
def ct(shared_data: Path) -> tuple[Image, Image]:
    from medseg.io import read_image

    folder = shared_data / "ct_lung_nsclc_radiomics" / "LUNG1-003"
    return read_label_map(folder / "lung_label.nii.gz")[0], read_image(folder / "ct.nii.gz")


def test_all_real_cxr_masks_pass_clean(shared_data: Path) -> None:
    masks = sorted((shared_data / "cxr_lung_covid19_gb" / "masks").glob("*.png"))
    assert len(masks) == 25
    results = qc_files(masks)
    assert {p: [str(f) for f in flags] for p, flags in results.items() if flags} == {}


@pytest.mark.parametrize("patient", ["LUNG1-002", "LUNG1-003"])
def test_real_ct_lung_labels_pass_clean_with_their_ct(shared_data: Path, patient: str) -> None:
    folder = shared_data / "ct_lung_nsclc_radiomics" / patient
    results = qc_files([folder / "lung_label.nii.gz"], images=[folder / "ct.nii.gz"])
    assert list(results.values()) == [[]]


def test_cxr_planted_defects(cxr: Image) -> None:
    arr = cxr.array
    assert qc(cxr) == []

    no_left = np.where(arr == 2, 0, arr)
    assert _checks(qc(cxr.with_array(no_left))) == {"empty"}

    swapped = np.select([arr == 1, arr == 2], [2, 1], 0).astype(arr.dtype)
    flags = qc(cxr.with_array(swapped))
    assert _checks(flags) == {"swapped"} and flags[0].label is None and "image right" in flags[0].reason

    extra = arr.copy()
    # an island of ~10 % of the right lung, centred where the background is farthest from both lungs
    dist = ndi.distance_transform_edt(np.pad(arr == 0, 1, constant_values=False))[1:-1, 1:-1]
    cy, cx = np.unravel_index(int(np.argmax(dist)), arr.shape)
    radius = np.sqrt(0.10 * np.sum(arr == 1) / np.pi)
    assert dist[cy, cx] > radius + 2
    yy, xx = np.mgrid[: arr.shape[0], : arr.shape[1]]
    extra[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2] = 1
    assert _checks(qc(cxr.with_array(extra))) == {"components"}

    tiny = np.where(arr == 2, 0, arr)
    cy, cx = (int(v) for v in np.argwhere(arr == 2).mean(axis=0))
    tiny[cy - 3 : cy + 3, cx - 3 : cx + 3] = 2  # 36 px of 175 000
    flags = qc(cxr.with_array(tiny))
    assert _checks(flags) == {"tiny"} and flags[0].label == 2 and flags[0].value < 0.03

    huge = arr.copy()
    huge[huge == 0] = 1  # "right lung" floods the background
    assert {"huge", "border"} <= _checks(qc(cxr.with_array(huge)))


def test_cxr_patient_orientation_from_dicom_decides_the_sides(cxr: Image) -> None:
    mirrored = cxr.array[:, ::-1].copy()  # patient's left now on the image left
    assert _checks(qc(cxr.with_array(mirrored))) == {"swapped"}
    ds = pydicom.Dataset()
    ds.PatientOrientation = ["R", "F"]  # columns increase towards the patient's right
    source = ImageSource(path=Path("cr.dcm"), format="dicom", datasets=(ds,), spacing_tag="PixelSpacing")
    assert qc(cxr.replace(array=mirrored, source=source)) == []
    assert _checks(qc(cxr.replace(source=source))) == {"swapped"}


def test_ct_planted_defects(ct: tuple[Image, Image]) -> None:
    labels, image = ct
    arr = labels.array

    swapped = np.select([arr == 1, arr == 2], [2, 1], 0).astype(arr.dtype)
    flags = qc(labels.with_array(swapped), image=image)
    assert _checks(flags) == {"swapped"} and "LPS" in flags[0].reason

    outside = arr.copy()
    z = int(np.argwhere(arr == 1)[:, 0].mean())
    assert np.all(image.array[z - 5 : z + 5, 5:60, 5:60] < -500)  # a corner of air outside the body
    outside[z - 5 : z + 5, 5:60, 5:60] = 1
    assert {"outside_body", "components"} <= _checks(qc(labels.with_array(outside), image=image))
    assert "outside_body" not in _checks(qc(labels.with_array(outside)))  # needs the image

    tiny = np.where(arr == 1, 0, arr)
    tiny[z - 2 : z + 2, 200:220, 150:170] = 1  # 1600 voxels ~ 4.6 mL
    flags = qc(labels.with_array(tiny))
    assert _checks(flags) == {"tiny"} and flags[0].value == pytest.approx(1600 * labels.voxel_volume / 1000)

    huge = arr.copy()
    huge[:, 100:400, 60:250][huge[:, 100:400, 60:250] == 0] = 1  # right lung fills half the thorax box
    assert "huge" in _checks(qc(labels.with_array(huge)))

    to_edge = arr.copy()
    to_edge[z - 10 : z + 10, 250:260, :260] = 1  # a band from the lung to the left image border
    assert "border" in _checks(qc(labels.with_array(to_edge)))


def test_ct_slice_gaps_are_bridged_but_islands_are_not() -> None:
    vol = np.zeros((30, 40, 60), dtype=np.uint8)
    vol[5:25, 10:30, 5:25] = 1
    vol[5:25, 10:30, 35:55] = 2
    vol[12:14, :, :] = 0  # two empty slices across both lungs, as in skipped RT contours
    labels = Image(vol, np.diag([2.0, 2.0, 3.0, 1.0]), kind="label")
    limits = QCLimits(ct_lung_ml=(1.0, 5000.0))
    assert qc(labels, limits=limits) == []
    with_island = vol.copy()
    with_island[5:25, 32:38, 5:10] = 1  # 600 voxels, 8 % of the right lung, separate in-plane
    flags = qc(labels.with_array(with_island), limits=limits)
    assert _checks(flags) == {"components"} and flags[0].value == 2
    speck = vol.copy()
    speck[20, 35, 10] = 1  # a single voxel is a speck, not a component
    assert qc(labels.with_array(speck), limits=limits) == []


def test_truncated_ct_lung_is_not_called_tiny() -> None:
    vol = np.zeros((10, 40, 60), dtype=np.uint8)
    vol[0:4, 10:30, 5:25] = 1  # cut by the first slice: only a lower bound on the volume
    vol[3:7, 10:30, 35:55] = 2
    labels = Image(vol, np.diag([2.0, 2.0, 3.0, 1.0]), kind="label")
    flags = qc(labels)
    assert [(f.check, f.label) for f in flags] == [("tiny", 2)]


def test_unknown_values_and_other_structures() -> None:
    arr = np.zeros((100, 120), dtype=np.uint8)
    arr[20:80, 10:50] = 255  # a 0/255 binary mask
    flags = qc(Image(arr, np.eye(3), kind="label", source=ImageSource(path=Path("m.png"))))
    assert _checks(flags) == {"unknown_label", "empty"}
    assert all(f.path == "m.png" and str(f).startswith("m.png: ") for f in flags)
    # a non-lung structure (nodule) is allowed to be empty; a combined "lungs" label may have 2 parts
    both = np.zeros_like(arr)
    both[20:80, 10:50] = 1
    both[20:80, 70:110] = 1
    assert qc(Image(both, np.eye(3), kind="label"), label_names={1: "lungs", 3: "nodule"}) == []
    flags = qc(Image(both, np.eye(3), kind="label"), label_names={1: "liver"})
    assert _checks(flags) == {"no_lung_label"}


def test_lung_role_names() -> None:
    assert lung_role("Right Lung") == "right" and lung_role("Lung_R") == "right"
    assert lung_role("lung left") == "left" and lung_role("Lung-L") == "left"
    assert lung_role("Lungs") == "both" and lung_role("lung") == "both"
    assert lung_role("nodule") is None and lung_role("Heart") is None


def test_bad_inputs(cxr: Image, ct: tuple[Image, Image]) -> None:
    with pytest.raises(InputError, match="label map"):
        qc(cxr.replace(kind="intensity"))
    labels, image = ct
    with pytest.raises(GeometryError):
        qc(labels, image=Image(image.array[:-1], image.affine))
    with pytest.raises(InputError, match="images given"):
        qc_files([Path("a.png"), Path("b.png")], images=[Path("a.nii.gz")])


def test_qc_takes_paths_like_the_cli(shared_data: Path, cxr: Image, ct: tuple[Image, Image]) -> None:
    """Regression (#16): ``qc("mask.png")`` raised a bare AttributeError."""
    png = shared_data / "cxr_lung_covid19_gb" / "masks" / CLEAN_CXR
    assert qc(png) == qc(cxr) == []
    assert qc(str(png)) == []
    swapped = np.select([cxr.array == 1, cxr.array == 2], [2, 1], 0).astype(np.uint8)
    assert _checks(qc(cxr.with_array(swapped))) == {"swapped"}
    # names given explicitly are used for a path too
    flags = qc(png, label_names={1: "left lung", 2: "right lung"})
    assert _checks(flags) == {"swapped"} and flags[0].path == str(png)
    folder = shared_data / "ct_lung_nsclc_radiomics" / "LUNG1-003"
    labels, _ = ct
    assert qc(labels, image=folder / "ct.nii.gz") == []  # the CT given as a file
    with pytest.raises(InputError, match="mask file or a label Image"):
        qc(cxr.array)  # type: ignore[arg-type]


def test_intensity_images_are_refused_as_masks(shared_data: Path, ct: tuple[Image, Image]) -> None:
    """Regression (#16): ``qc(ct)`` on an image read as labels flagged thousands of 'unknown' labels."""
    from medseg.io import read_image
    from medseg.labelling.checks import require_label_map

    _, image = ct
    as_labels = Image(image.array[40:44], image.affine, kind="label", source=image.source)
    with pytest.raises(InputError, match=r"not a label map: values -1024\.\."):
        qc(as_labels)
    xray = read_image(shared_data / "cxr_lung_covid19_gb" / "images" / "kjr-21-e25-g001-l-a.jpg", kind="label")
    with pytest.raises(InputError, match=r"\d+ distinct values") as err:
        require_label_map(xray)
    assert "kjr-21-e25-g001-l-a.jpg" in str(err.value) and "\n" not in str(err.value)
    assert "save it as PNG" in str(err.value)  # a JPEG may be a lossy mask: the fix says what to do
    # a 0/255 mask or a many-structure map with few values is a label map (flagged, not refused)
    many = np.zeros((8, 8), np.uint8)
    many.flat[:60] = np.arange(1, 61)
    require_label_map(Image(many, np.eye(3), kind="label"))
    binary = Image(np.where(xray.array > 100, 255, 0).astype(np.uint8), xray.affine, kind="label")
    assert _checks(qc(binary)) >= {"unknown_label"}
