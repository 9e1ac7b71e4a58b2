"""PNG overlays: size, contours in the label colours, radiological left/right, geometry checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from medseg.colours import label_colour, label_colours
from medseg.errors import ExportError, GeometryError
from medseg.export import overlay_png
from medseg.image import Image
from medseg.io import read_image


def _png(path: Path) -> np.ndarray:
    return np.asarray(PILImage.open(path).convert("RGB")).astype(np.int16)


def _colour_mask(rgb: np.ndarray, colour: tuple[int, int, int], tol: int = 12) -> np.ndarray:
    return np.all(np.abs(rgb - np.asarray(colour)) <= tol, axis=-1)


def test_radiograph_overlay_size_contours_and_legend(shared_data: Path, tmp_path: Path) -> None:
    source = shared_data / "dicom_seg_interop/highdicom/dx_image.dcm"
    if not source.is_file():
        pytest.skip(f"{source} not present")
    image = read_image(source)
    rows, cols = image.shape
    lab = np.zeros(image.shape, np.uint8)
    lab[30:130, 20:100] = 1
    lab[30:130, 110:190] = 2
    labels = image.with_array(lab, kind="label")
    path = overlay_png(image, labels, tmp_path / "cxr.png", label_names={1: "right lung", 2: "left lung"})
    rgb = _png(path)
    sx, sy = image.spacing
    assert rgb.shape[:2] == (round(1024 * rows * sy / (cols * sx)), 1024)  # true aspect, 1024 px wide
    for value in (1, 2):
        hits = _colour_mask(rgb, label_colour(value))
        assert hits.sum() > 200, f"no contour pixels of label {value}"
        ys, xs = np.nonzero(hits[100:])  # below the legend box in the top right corner
        scale = 1024 / cols
        lo, hi = (20, 100) if value == 1 else (110, 190)
        assert xs.min() >= (lo - 2) * scale and xs.max() <= (hi + 2) * scale
        legend = hits[:100, 800:]  # the legend's swatch of this label, top right
        assert legend.sum() > 20, f"no legend swatch for label {value}"
    legend_box = rgb[5:60, 900:1015]
    assert (legend_box.min(axis=-1) > 150).mean() > 0.3  # a light box ...
    assert (legend_box.max(axis=-1) < 60).sum() > 30  # ... with dark text on it


def _phantom(flip_x: bool) -> tuple[Image, Image]:
    """CT phantom (HU) with a blob in the patient's right lung; optionally stored right-to-left."""
    nz, ny, nx = 12, 48, 64
    ct = np.full((nz, ny, nx), 40, np.int16)
    ct[:, 8:40, 6:30] = -850
    ct[:, 8:40, 34:58] = -850
    lab = np.zeros((nz, ny, nx), np.uint8)
    lab[3:9, 14:34, 8:26] = 1  # low x = patient right in LPS
    affine = np.diag([0.9, 0.9, 3.0, 1.0])
    affine[:3, 3] = (-30.0, -20.0, 50.0)
    if flip_x:  # same world geometry, columns stored from patient left to right
        ct, lab = ct[:, :, ::-1], lab[:, :, ::-1]
        affine[0, 3] += (nx - 1) * 0.9
        affine[0, 0] = -0.9
    image = Image(ct, affine, modality="CT")
    return image, image.with_array(lab, kind="label")


def test_ct_overlay_radiological_convention(tmp_path: Path) -> None:
    renders = []
    for flip in (False, True):
        image, labels = _phantom(flip)
        path = overlay_png(
            image,
            labels,
            tmp_path / f"ct_{flip}.png",
            label_names={1: "right lung"},
            n_slices=1,
            size=(800, 400),
        )
        rgb = _png(path)
        assert rgb.shape == (400, 800, 3)
        renders.append(rgb)
        hits = _colour_mask(rgb[: int(0.88 * 400)], label_colour(1))  # above the legend
        xs = np.nonzero(hits)[1]
        # axial panel = left half, coronal = right half; the patient's right is on each panel's left
        axial, coronal = xs[xs < 400], xs[xs >= 400]
        assert axial.size > 50 and coronal.size > 50
        assert axial.max() < 200 and coronal.max() < 600
    np.testing.assert_array_equal(renders[0], renders[1])  # storage order does not change the picture


def test_ct_montage_on_real_lidc(shared_data: Path, tmp_path: Path) -> None:
    folder = shared_data / "ct_lidc_nodules/LIDC-IDRI-0001/dicom"
    if not folder.is_dir():
        pytest.skip(f"{folder} not present")
    image = read_image(folder)
    lab = ((image.array < -400) & (np.arange(image.shape[2]) < 256)[None, None, :]).astype(np.uint8)
    lab[(image.array < -400) & (np.arange(image.shape[2]) >= 256)[None, None, :]] = 2
    lab[:, :60] = 0  # air outside the body
    lab[:, 420:] = 0
    labels = image.with_array(lab, kind="label")
    path = overlay_png(image, labels, tmp_path / "lidc.png", label_names={1: "right lung", 2: "left lung"})
    rgb = _png(path)
    assert rgb.shape == (800, 1600, 3)
    for value in (1, 2):
        assert _colour_mask(rgb, label_colour(value)).sum() > 500
    assert not list(tmp_path.glob(".*tmp*"))


def test_overlay_errors(tmp_path: Path) -> None:
    image, labels = _phantom(False)
    shift = np.zeros((4, 4))
    shift[0, 3] = 1.0
    shifted = labels.replace(affine=labels.affine + shift)
    with pytest.raises(GeometryError, match="not on the same grid"):
        overlay_png(image, shifted, tmp_path / "x.png", label_names={1: "lung"})
    with pytest.raises(ExportError, match="must be a label map"):
        overlay_png(image, image, tmp_path / "x.png", label_names={1: "lung"})
    assert list(tmp_path.iterdir()) == []


def test_label_colours_are_deterministic_and_distinct() -> None:
    colours = [label_colour(v) for v in range(1, 31)]
    assert len(set(colours)) == 30
    assert colours == [label_colour(v) for v in range(1, 31)]
    assert label_colours([1, 2], {2: (1, 2, 3)}) == {1: label_colour(1), 2: (1, 2, 3)}
    with pytest.raises(ExportError):
        label_colours([1], {1: (300, 0, 0)})
    with pytest.raises(ExportError):
        label_colour(0)


def test_large_film_is_drawn_at_picture_size_with_contours_in_place(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    arr = rng.normal(100, 5, size=(2048, 2048)).astype(np.float32)  # 2x the 1024 px picture
    lab = np.zeros(arr.shape, np.uint8)
    lab[400:1600, 300:900] = 1
    lab[400:1600, 1100:1700] = 2
    image = Image(arr, np.diag([0.2, 0.2, 1.0]), modality="DX")
    path = overlay_png(image, image.with_array(lab, kind="label"), tmp_path / "big.png",
                       label_names={1: "right lung", 2: "left lung"})
    rgb = _png(path)
    assert rgb.shape[:2] == (1024, 1024)
    for value, (lo, hi) in ((1, (300, 900)), (2, (1100, 1700))):
        ys, xs = np.nonzero(_colour_mask(rgb, label_colour(value))[150:])  # below the legend box
        assert xs.size > 500
        assert abs(xs.min() - lo / 2) <= 3 and abs(xs.max() - hi / 2) <= 3  # half scale, edges in place
        assert abs(ys.min() + 150 - 400 / 2) <= 3 and abs(ys.max() + 150 - 1600 / 2) <= 3
