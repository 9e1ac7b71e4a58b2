"""Candidate extraction on a synthetic CT: real LIDC slices as background, spheres planted in world mm.

The spheres are voxelised here with the test's own affine arithmetic (not with ``nodule_mask``),
so a coordinate bug in the library cannot cancel out against the same bug in the phantom.
"""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
from scipy import ndimage

from medseg.detect import Detection, detect_candidates, non_max_suppression, write_candidates_csv
from medseg.errors import GeometryError, InputError
from medseg.image import Image

ROWS, COLS = slice(128, 384), slice(64, 224)  # the right lung of LIDC-IDRI-0001 (image left)


def _rotation(axis: np.ndarray, deg: float) -> np.ndarray:
    axis = axis / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    t = math.radians(deg)
    return np.eye(3) + math.sin(t) * k + (1 - math.cos(t)) * k @ k


def _geometries(ct: Image) -> dict[str, np.ndarray]:
    """The real cropped geometry, and an oblique, flipped, anisotropic one."""
    real = ct.affine.copy()
    real[:3, 3] = ct.index_to_world([COLS.start, ROWS.start, 0])
    direction = _rotation(np.array([1.0, 2.0, 0.5]), 35.0) @ np.diag([1.0, -1.0, 1.0])
    oblique = np.eye(4)
    oblique[:3, :3] = direction * np.array([0.8, 0.6, 2.0])[None, :]
    oblique[:3, 3] = [12.0, -40.0, 310.0]
    return {"real": real, "oblique": oblique}


def _world_grid(affine: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """World mm of every voxel centre, array (z, y, x, 3); index (i, j, k) = (x, y, z)."""
    k, j, i = np.meshgrid(*(np.arange(s) for s in shape), indexing="ij")
    idx = np.stack([i, j, k, np.ones_like(i)], axis=-1).astype(np.float64)
    return (idx @ affine.T)[..., :3]


def _lung_mask(hu: np.ndarray) -> np.ndarray:
    lung = hu < -400
    return np.stack([ndimage.binary_fill_holes(s) for s in lung])


def _pick_centres(hu: np.ndarray, world: np.ndarray, lung: np.ndarray, radii: list[float]) -> list[np.ndarray]:
    """Sphere centres in pure parenchyma (a ball of r + 4 mm all below -600 HU), not overlapping."""
    chosen: list[tuple[np.ndarray, float]] = []
    nz, ny, nx = hu.shape
    out = []
    for r in radii:
        for k in range(4, nz - 4):
            found = None
            for j in range(12, ny - 12, 6):
                for i in range(12, nx - 12, 6):
                    c = world[k, j, i]
                    if any(np.linalg.norm(c - c2) < r + r2 + 12 for c2, r2 in chosen):
                        continue
                    d = np.linalg.norm(world[k - 4 : k + 5, j - 12 : j + 13, i - 12 : i + 13] - c, axis=-1)
                    ball = d <= r + 4
                    if ball.sum() and np.all(hu[k - 4 : k + 5, j - 12 : j + 13, i - 12 : i + 13][ball] < -600):
                        found = c
                        break
                if found is not None:
                    break
            if found is not None:
                break
        assert found is not None, f"no room for a sphere of radius {r}"
        chosen.append((found, r))
        out.append(found)
    return out


def _prob(hu: np.ndarray) -> np.ndarray:
    """A stand-in 'model': soft threshold of HU (vessels and walls light up too)."""
    return (1.0 / (1.0 + np.exp(-(hu + 300.0) / 50.0))).astype(np.float32)


@pytest.fixture(scope="module")
def background(lidc_ct: Image) -> np.ndarray:
    return np.asarray(lidc_ct.array[:, ROWS, COLS], dtype=np.float32)


@pytest.mark.parametrize("geometry", ["real", "oblique"])
def test_planted_spheres_found_at_world_position(lidc_ct: Image, background: np.ndarray, geometry: str) -> None:
    affine = _geometries(lidc_ct)[geometry]
    world = _world_grid(affine, background.shape)
    hu = background.copy()
    lung = _lung_mask(hu)
    radii = [3.0, 4.5, 6.0]
    centres = _pick_centres(hu, world, lung, radii)
    for c, r in zip(centres, radii, strict=True):
        hu[np.linalg.norm(world - c, axis=-1) <= r] = 40.0
    ct = Image(hu, affine, "intensity", "CT")
    dets = detect_candidates(_prob(hu), ct, lung_mask=_lung_mask(hu), threshold=0.5)
    assert dets == sorted(dets, key=lambda d: -d.score)
    for c, r in zip(centres, radii, strict=True):
        dist = [float(np.linalg.norm(np.asarray(d.center) - c)) for d in dets]
        best = dets[int(np.argmin(dist))]
        assert min(dist) < 0.6, (geometry, r, min(dist))
        assert best.diameter_mm == pytest.approx(2 * r, rel=0.12)
        assert best.volume_mm3 == pytest.approx(4 / 3 * math.pi * r**3, rel=0.3)
        assert best.score == pytest.approx(float(_prob(np.array([40.0]))[0]), abs=1e-4)
        # centre_index is the same point in voxel units
        np.testing.assert_allclose(ct.index_to_world(best.center_index), best.center, atol=1e-6)
    assert all(d.diameter_mm >= 3.0 for d in dets)


def test_lung_mask_restricts_candidates(lidc_ct: Image, background: np.ndarray) -> None:
    affine = _geometries(lidc_ct)["real"]
    ct = Image(background, affine, "intensity", "CT")
    prob = _prob(background)
    lung = _lung_mask(background)
    unmasked = detect_candidates(prob, ct)
    masked = detect_candidates(prob, ct, lung_mask=lung, lung_margin_mm=2.0)
    # without a lung mask the chest wall / mediastinum is one huge component; with it only the
    # lung content and a 2 mm rim of the wall remain
    assert max(d.volume_mm3 for d in unmasked) > 10 * max(d.volume_mm3 for d in masked)
    grown = ndimage.distance_transform_edt(~lung, sampling=(2.5, ct.spacing[1], ct.spacing[0])) <= 2.0
    for d in masked:
        i, j, k = np.round(d.center_index).astype(int)
        assert grown[k, j, i]


def test_juxtapleural_nodule_kept_by_dilated_mask(lidc_ct: Image, background: np.ndarray) -> None:
    affine = _geometries(lidc_ct)["real"]
    world = _world_grid(affine, background.shape)
    hu = background.copy()
    lung = _lung_mask(hu)
    # a sphere straddling the lung border: centre ~2 mm outside the (hole-filled) lung mask
    sp = lidc_ct.spacing[0]
    outside = ndimage.distance_transform_edt(~lung, sampling=(2.5, sp, sp))
    cand = np.argwhere((outside > 1.5) & (outside < 2.5) & (np.arange(hu.shape[0])[:, None, None] == 8))
    k, j, i = cand[len(cand) // 2]
    c = world[k, j, i]
    r = 4.0
    hu[np.linalg.norm(world - c, axis=-1) <= r] = 40.0
    ct = Image(hu, affine, "intensity", "CT")
    prob = _prob(hu)
    # isolate the planted sphere from the wall it touches: keep only probabilities inside it
    prob = np.where(np.linalg.norm(world - c, axis=-1) <= r + 0.5, prob, 0.0).astype(np.float32)
    kept = detect_candidates(prob, ct, lung_mask=lung, lung_margin_mm=5.0)
    assert len(kept) == 1
    assert np.linalg.norm(np.asarray(kept[0].center) - c) < 0.6
    clipped = detect_candidates(prob, ct, lung_mask=lung, lung_margin_mm=0.0, min_diameter_mm=0.0)
    assert sum(d.volume_mm3 for d in clipped) < 0.8 * kept[0].volume_mm3


def test_nms_merges_split_sphere(lidc_ct: Image, background: np.ndarray) -> None:
    affine = _geometries(lidc_ct)["real"]
    world = _world_grid(affine, background.shape)
    hu = background.copy()
    lung = _lung_mask(hu)
    (c,) = _pick_centres(hu, world, lung, [6.0])
    d = np.linalg.norm(world - c, axis=-1)
    # a 2 mm gap in x through the centre splits the sphere into two halves
    hu[(d <= 6.0) & (np.abs(world[..., 0] - c[0]) > 1.0)] = 40.0
    ct = Image(hu, affine, "intensity", "CT")
    prob, mask = _prob(hu), _lung_mask(hu)
    near = lambda ds: [x for x in ds if np.linalg.norm(np.asarray(x.center) - c) < 6.0]  # noqa: E731
    assert len(near(detect_candidates(prob, ct, lung_mask=mask, nms_distance_mm=0))) == 2
    merged = near(detect_candidates(prob, ct, lung_mask=mask))
    assert len(merged) == 1
    assert len(near(detect_candidates(prob, ct, lung_mask=mask, nms_distance_mm=20.0))) == 1


def _det(center: tuple[float, float, float], score: float, diameter: float = 6.0) -> Detection:
    v = math.pi / 6 * diameter**3
    return Detection(center, center, diameter, v, score, score, 10)


def test_non_max_suppression_rules() -> None:
    a, b, c = _det((0, 0, 0), 0.9), _det((2, 0, 0), 0.95), _det((10, 0, 0), 0.5)
    kept = non_max_suppression([a, b, c])  # default: closer than the sum of radii (6 mm)
    assert kept == [b, c]
    assert non_max_suppression([a, b, c], 1.5) == [b, a, c]
    assert non_max_suppression([a, b, c], 0) == [b, a, c]
    assert non_max_suppression([a, b, c], 11.0) == [b]


def test_bad_inputs_raise(lidc_ct: Image, background: np.ndarray) -> None:
    ct = Image(background, _geometries(lidc_ct)["real"], "intensity", "CT")
    with pytest.raises(GeometryError, match="does not match"):
        detect_candidates(np.zeros((2, 2, 2), np.float32), ct)
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        detect_candidates(np.full(background.shape, 2.0, np.float32), ct)
    with pytest.raises(GeometryError, match="lung mask"):
        detect_candidates(np.zeros(background.shape, np.float32), ct, lung_mask=np.ones((2, 2, 2)))
    assert detect_candidates(np.zeros(background.shape, np.float32), ct) == []


def test_write_candidates_csv_luna16_format(tmp_path) -> None:
    dets = [_det((1.5, -2.25, 300.125), 0.75), _det((0, 0, 0), 0.5)]
    out = write_candidates_csv(tmp_path / "c.csv", "1.2.3", dets)
    rows = list(csv.reader(out.open()))
    assert rows[0] == ["seriesuid", "coordX", "coordY", "coordZ", "probability"]
    assert rows[1][0] == "1.2.3"
    assert [float(v) for v in rows[1][1:]] == [1.5, -2.25, 300.125, 0.75]
    assert len(rows) == 3
    write_candidates_csv(tmp_path / "m.csv", {"a": dets[:1], "b": dets})
    assert [r[0] for r in csv.reader((tmp_path / "m.csv").open())][1:] == ["a", "b", "b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.csv", "m.csv"]  # no temporary files left
