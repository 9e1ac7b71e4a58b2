"""Mask <-> polygon / RLE conversions of the annotation-tool formats (property tests over seeded
random masks: sparse noise, dense noise, blobs, thin lines, 1-pixel images).

CVAT and COCO RLE must give back every pixel of any mask; polygons every pixel of masks without
holes (thin lines, lone pixels, pieces touching at a corner included), as filled by pycocotools.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from medseg.io.annotations._shapes import (
    coco_rle_to_mask,
    mask_has_holes,
    mask_to_coco_rle,
    mask_to_polygons,
    polygons_to_mask,
)
from medseg.io.annotations.cvat import cvat_rle_decode, cvat_rle_encode


def _random_masks(n: int = 150) -> list[np.ndarray]:
    rng = np.random.default_rng(15)
    out = [np.ones((1, 1), bool), np.zeros((1, 1), bool), np.eye(7, dtype=bool), np.ones((3, 9), bool)]
    while len(out) < n:
        h, w = (int(v) for v in rng.integers(1, 25, size=2))
        kind = len(out) % 3
        if kind == 0:
            m = rng.random((h, w)) < rng.uniform(0.05, 0.95)
        else:
            m = ndimage.gaussian_filter(rng.random((h, w)), rng.uniform(0.5, 2.5)) > rng.uniform(0.45, 0.55)
        out.append(m)
    return out


MASKS = _random_masks()


def test_cvat_and_coco_rle_are_exact():
    for i, mask in enumerate(MASKS):
        runs, (left, top, w, h) = cvat_rle_encode(mask)
        assert (cvat_rle_decode(runs, left, top, w, h, *mask.shape) == mask).all(), i
        assert (coco_rle_to_mask(mask_to_coco_rle(mask), *mask.shape) == mask).all(), i


def test_polygons_give_back_masks_without_holes():
    for i, mask in enumerate(MASKS):
        filled = ndimage.binary_fill_holes(mask)
        assert not mask_has_holes(filled), i
        back = polygons_to_mask(mask_to_polygons(filled), *mask.shape)
        assert (back == filled).all(), i


def test_holes_are_filled_by_polygons_and_reported():
    m = np.zeros((12, 12), bool)
    m[2:10, 2:10] = True
    m[5:7, 5:7] = False
    assert mask_has_holes(m)
    polys = mask_to_polygons(m)
    assert len(polys) == 1 and len(polys[0]) == 8  # collinear vertices dropped: a square with cut corners
    assert (polygons_to_mask(polys, 12, 12) == ndimage.binary_fill_holes(m)).all()
    assert mask_to_polygons(np.zeros((4, 4), bool)) == []
