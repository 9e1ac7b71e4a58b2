"""Matching LIDC readers' nodules, consensus masks and the LUNA16 list on real LIDC-IDRI-0001.

The series has one large nodule outlined by all four readers (LUNA16 row: centre (56.2, 86.3,
-115.9) mm, diameter 23.4 mm) and three < 3 mm nodules point-marked by readers 0, 2 and 3.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from medseg.detect.lidc import consensus_label_map, consensus_mask, luna16_list, match_nodules, nodule_table
from medseg.detect.targets import read_nodule_annotations
from medseg.io.lidc import read_lidc_xml


@pytest.fixture(scope="module")
def matched(lidc_dir: Path, lidc_ct):
    return match_nodules(read_lidc_xml(lidc_dir / "69.xml"), lidc_ct)


def test_readers_are_matched_into_four_nodules(matched):
    assert [(n.n_readers, n.n_outlined, n.is_small) for n in matched] == [
        (4, 4, False), (3, 0, True), (3, 0, True), (3, 0, True)]
    assert matched[0].readers == [0, 1, 2, 3]
    assert all(n.readers == [0, 2, 3] for n in matched[1:])
    dice = matched[0].pairwise_dice()
    assert len(dice) == 6 and all(0.8 < d < 0.95 for d in dice.values())  # measured 0.845 .. 0.904


def test_luna16_list_matches_the_luna16_row(matched, lidc_dir, lidc_ct):
    ref = read_nodule_annotations(lidc_dir / "luna16_annotations.csv")
    ours = luna16_list(matched, lidc_ct.source.series_instance_uid)
    assert len(ours) == len(ref) == 1
    assert ours[0].seriesuid == ref[0].seriesuid
    assert np.linalg.norm(np.subtract(ours[0].center, ref[0].center)) < 0.5  # measured 0.17 mm
    assert ours[0].diameter_mm == pytest.approx(ref[0].diameter_mm, rel=0.06)  # 24.3 vs 23.4 mm
    assert luna16_list(matched, "x", min_readers=5) == []


def test_table_centroids_agree_with_the_per_reader_xml_table(matched, lidc_dir):
    rows = [r for r in csv.DictReader((lidc_dir / "nodules_from_xml.csv").open()) if r["is_point_mark"] == "0"]
    want = np.mean([[float(r[k]) for k in ("center_x_mm", "center_y_mm", "center_z_mm")] for r in rows], axis=0)
    table = nodule_table(matched)
    assert [t["n_readers"] for t in table] == [4, 3, 3, 3]
    np.testing.assert_allclose([table[0]["x_mm"], table[0]["y_mm"], table[0]["z_mm"]], want, atol=0.01)


def test_consensus_mask_is_between_union_and_intersection(matched, lidc_ct):
    big = matched[0]
    cm = consensus_mask(big, lidc_ct, level=0.5)
    strict = consensus_mask(big, lidc_ct, level=1.0)
    loose = consensus_mask(big, lidc_ct, level=0.25)
    assert strict.sum() < cm.sum() < loose.sum()
    assert (strict <= cm).all() and (cm <= loose).all()
    # the consensus lies on the slices of the subset the readers outlined (z -125 .. -107.5 mm)
    zs = sorted({round(float(lidc_ct.index_to_world([0, 0, k])[2]), 1) for k in np.flatnonzero(cm.any(axis=(1, 2)))})
    assert zs[0] == -125.0 and zs[-1] <= -105.0
    centre = np.mean([lidc_ct.index_to_world(ijk[::-1]) for ijk in np.argwhere(cm)], axis=0)
    assert np.linalg.norm(centre - big.centroid_mm) < 1.0
    assert not consensus_mask(matched[1], lidc_ct).any()  # point marks give no outline
    lab = consensus_label_map(matched, lidc_ct)
    assert lab.kind == "label" and lab.shape == lidc_ct.shape and (lab.array.astype(bool) == cm).all()
