"""LIDC XML reader on the real LIDC-IDRI-0001 reading file, checked against nodules_from_xml.csv.

``nodules_from_xml.csv`` was derived from the same XML independently (plain Python/Pillow, see the
folder's PROVENANCE.md): per reader and nodule the ROI count, point-mark flag, malignancy, centroid
(mm) and volume-equivalent diameter must agree.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from medseg.errors import InputError
from medseg.io import read_image
from medseg.io.lidc import LidcRoi, fill_roi, read_lidc_xml, roi_points_mm


@pytest.fixture(scope="module")
def lidc(shared_data: Path) -> Path:
    d = shared_data / "ct_lidc_nodules" / "LIDC-IDRI-0001"
    if not (d / "69.xml").is_file():
        pytest.skip(f"{d} not present")
    return d


def test_reads_every_reader_nodule_point_mark_and_non_nodule(lidc):
    read = read_lidc_xml(lidc / "69.xml")
    assert read.series_uid == "1.3.6.1.4.1.14519.5.2.1.6279.6001.179049373636438705059720603192"
    assert len(read.readers) == 4
    rows = list(csv.DictReader((lidc / "nodules_from_xml.csv").open()))
    got = {(n.reader, n.nodule_id): n for n in read.nodules}
    assert {(int(r["reader"]), r["nodule_id"]) for r in rows} == set(got)
    for r in rows:
        n = got[(int(r["reader"]), r["nodule_id"])]
        assert len(n.rois) == int(r["n_rois"])
        assert n.is_point_mark == (r["is_point_mark"] == "1")
        assert n.malignancy == (int(r["malignancy"]) if r["malignancy"] else None)
        assert min(n.z_positions) == float(r["z_min"]) and max(n.z_positions) == float(r["z_max"])
    assert [len(rd.non_nodules) for rd in read.readers] == [4, 1, 8, 0]
    assert sum(len(roi.points) for n in read.nodules for roi in n.rois) == 3406  # every edgeMap of the file
    assert all(roi.inclusion for n in read.nodules for roi in n.rois)  # this file has no exclusions


def test_outline_centroids_in_mm_match_the_independent_table(lidc):
    from medseg.detect.lidc import match_nodules  # the centroid/volume of one reader's outline

    read = read_lidc_xml(lidc / "69.xml")
    ct = read_image(lidc / "dicom")
    rows = {(int(r["reader"]), r["nodule_id"]): r for r in csv.DictReader((lidc / "nodules_from_xml.csv").open())}
    marks = [m for g in match_nodules(read, ct) for m in g.marks]
    assert len(marks) == len(rows)
    for m in marks:
        r = rows[(m.reader, m.nodule.nodule_id)]
        want = np.asarray([float(r["center_x_mm"]), float(r["center_y_mm"]), float(r["center_z_mm"])])
        np.testing.assert_allclose(m.centroid_mm, want, atol=0.01)
        if not m.is_point_mark:
            assert m.diameter_mm == pytest.approx(float(r["equiv_sphere_diameter_mm"]), abs=0.01)


def test_fill_roi_keeps_the_boundary_pixels_and_points_map_to_mm():
    roi = LidcRoi(-100.0, "1.2", True, np.asarray([[2, 2], [6, 2], [6, 5], [2, 5]]))
    m = fill_roi(roi, (8, 8))
    assert m.sum() == 5 * 4 and m[2, 2] and m[5, 6] and not m[1, 2]
    point = LidcRoi(-100.0, "1.2", True, np.asarray([[3, 4]]))
    assert np.argwhere(fill_roi(point, (8, 8))).tolist() == [[4, 3]]
    affine = np.diag([0.5, 0.7, 2.5, 1.0])
    affine[:3, 3] = [-10, -20, -300]
    np.testing.assert_allclose(roi_points_mm(np.asarray([[2, 4]]), -100.0, affine), [[-9.0, -17.2, -100.0]])


def test_not_an_lidc_file(tmp_path):
    bad = tmp_path / "x.xml"
    bad.write_text("<annotations/>")
    with pytest.raises(InputError, match="LidcReadMessage"):
        read_lidc_xml(bad)
    bad.write_text("<LidcReadMessage")
    with pytest.raises(InputError, match="not an XML"):
        read_lidc_xml(bad)
