"""Nodule annotations and spherical masks, on the real LIDC-IDRI-0001 subset and oblique grids."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from medseg.detect import NoduleAnnotation, nodule_mask, read_nodule_annotations
from medseg.errors import GeometryError, InputError
from medseg.image import Image

LIDC_UID = "1.3.6.1.4.1.14519.5.2.1.6279.6001.179049373636438705059720603192"


def test_read_luna16_row(lidc_dir: Path) -> None:
    (a,) = read_nodule_annotations(lidc_dir / "luna16_annotations.csv")
    assert a.seriesuid == LIDC_UID
    assert a.center == pytest.approx((56.20840547, 86.34341278, -115.8675792))
    assert a.diameter_mm == pytest.approx(23.35064438)
    assert read_nodule_annotations(lidc_dir / "luna16_annotations.csv", seriesuid="9.9") == []


def test_read_xml_reader_table_agrees_with_luna16(lidc_dir: Path) -> None:
    with pytest.raises(InputError, match="seriesuid"):
        read_nodule_annotations(lidc_dir / "nodules_from_xml.csv")
    readers = read_nodule_annotations(lidc_dir / "nodules_from_xml.csv", seriesuid=LIDC_UID)
    # 13 rows, 9 of them "< 3 mm" point marks -> the one large nodule seen by all 4 readers
    assert sorted(a.reader or "" for a in readers) == ["0", "1", "2", "3"]
    (luna,) = read_nodule_annotations(lidc_dir / "luna16_annotations.csv")
    for a in readers:
        assert np.linalg.norm(np.subtract(a.center, luna.center)) < 1.0
        assert 20 < a.diameter_mm < 27


def test_bad_csv_names_file_and_line(tmp_path: Path) -> None:
    p = tmp_path / "a.csv"
    p.write_text("seriesuid,coordX,coordY,coordZ,diameter_mm\n1.2,1,2,3,4\n1.2,1,x,3,4\n")
    with pytest.raises(InputError, match=r"a\.csv: line 3: column 'coordY'"):
        read_nodule_annotations(p)
    p.write_text("uid,x,y,z\n1,2,3,4\n")
    with pytest.raises(InputError, match="not a nodule annotation table"):
        read_nodule_annotations(p)
    with pytest.raises(InputError, match="not found"):
        read_nodule_annotations(tmp_path / "missing.csv")


def test_mask_on_real_ct_centred_on_luna16_nodule(lidc_dir: Path, lidc_ct: Image) -> None:
    (a,) = read_nodule_annotations(lidc_dir / "luna16_annotations.csv")
    mask = nodule_mask(lidc_ct, [a])  # the CT's own SeriesInstanceUID selects the row
    assert mask.kind == "label" and mask.same_geometry(lidc_ct)
    inside = mask.array > 0
    idx = np.argwhere(inside)[:, ::-1]  # (z, y, x) -> index (x, y, z)
    centroid = lidc_ct.index_to_world(idx).mean(axis=0)
    assert np.linalg.norm(centroid - np.asarray(a.center)) < 0.3
    assert inside.sum() * lidc_ct.voxel_volume == pytest.approx(4 / 3 * math.pi * a.radius_mm**3, rel=0.02)
    # the sphere sits on the solid nodule: soft tissue inside, aerated lung in a shell around it
    shell = (nodule_mask(lidc_ct, [NoduleAnnotation(a.seriesuid, a.center, 2 * a.diameter_mm)]).array > 0) & ~inside
    assert np.median(lidc_ct.array[inside]) > -100
    assert np.median(lidc_ct.array[shell]) < -600
    # another series' nodule is not drawn on this CT
    other = NoduleAnnotation("1.2.3", a.center, a.diameter_mm)
    assert not nodule_mask(lidc_ct, [other]).array.any()
    assert nodule_mask(lidc_ct, [other], seriesuid="1.2.3").array.sum() == inside.sum()


def test_mask_matches_brute_force_on_oblique_grid() -> None:
    rng = np.random.default_rng(3)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    affine = np.eye(4)
    affine[:3, :3] = q * np.array([0.9, 0.5, 1.7])[None, :]
    affine[:3, 3] = [-20.0, 35.0, 100.0]
    img = Image(np.zeros((24, 40, 36), np.int16), affine, "intensity", "CT")
    k, j, i = np.meshgrid(*(np.arange(s) for s in img.shape), indexing="ij")
    world = np.stack([i, j, k], -1) @ affine[:3, :3].T + affine[:3, 3]
    anns = [
        NoduleAnnotation("s", tuple(img.index_to_world([18.0, 20.0, 12.0])), 9.0),
        NoduleAnnotation("s", tuple(img.index_to_world([1.0, 2.0, 1.0])), 8.0),  # clipped by the edge
        NoduleAnnotation("s", (1e4, 0.0, 0.0), 5.0),  # off the grid
        NoduleAnnotation("s", tuple(img.index_to_world([30.0, 30.0, 20.0])), -1.0),  # unknown size: skipped
    ]
    mask = nodule_mask(img, anns, label=2)
    expected = np.zeros(img.shape, bool)
    for a in anns[:2]:
        expected |= np.linalg.norm(world - np.asarray(a.center), axis=-1) <= a.radius_mm
    assert expected.any()
    np.testing.assert_array_equal(mask.array == 2, expected)
    assert set(np.unique(mask.array)) == {0, 2}


def test_mask_needs_3d() -> None:
    with pytest.raises(GeometryError, match="3-D"):
        nodule_mask(Image(np.zeros((4, 4)), np.eye(3)), [])
