"""COCO / CVAT / Label Studio round trips of real lung pre-labels, checked with the tools' own libraries.

Pre-labels are the real masks of ``cxr_lung_covid19_gb`` (two small images). Each export is loaded
by the format's own library (pycocotools and datumaro for COCO, datumaro for CVAT, label-studio-sdk
for Label Studio) and must give the original masks back (Dice >= 0.99 per structure); then the
file, as the tool would export it, goes through :func:`import_annotations` and the label maps on
the images' grids must match the originals, the manifest must be one ``medseg train`` reads.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from medseg.data.manifest import read_manifest
from medseg.errors import GeometryError, InputError
from medseg.io import read_image
from medseg.io.annotations import polygons_to_mask, read_annotations
from medseg.labelling.annotations import PrelabelCase, export_prelabels, import_annotations

NAMES = ["kjr-21-e24-g001-l-a", "kjr-21-e24-g002-l-a"]
LUNGS = {1: "right lung", 2: "left lung"}
SHAPES = ["polygon", "mask"]


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    return 2.0 * float((a & b).sum()) / float(a.sum() + b.sum())


@pytest.fixture(scope="module")
def cxr(shared_data: Path) -> Path:
    d = shared_data / "cxr_lung_covid19_gb"
    if not (d / "images").is_dir():
        pytest.skip(f"{d} not present")
    return d


@pytest.fixture(scope="module")
def originals(cxr: Path) -> dict[str, np.ndarray]:
    return {n: np.asarray(read_image(cxr / "masks" / f"{n}_lungs.png", kind="label").array) for n in NAMES}


@pytest.fixture()
def images_dir(cxr: Path, tmp_path: Path) -> Path:
    """The two images under ``images/`` (and ``images/default/`` for datumaro's COCO layout)."""
    d = tmp_path / "images"
    (d / "default").mkdir(parents=True)
    for n in NAMES:
        shutil.copy(cxr / "images" / f"{n}.jpg", d / f"{n}.jpg")
        shutil.copy(d / f"{n}.jpg", d / "default" / f"{n}.jpg")  # datumaro refuses symlinks
    return d


def _cases(cxr: Path, images_dir: Path) -> list[PrelabelCase]:
    return [PrelabelCase(images_dir / f"{n}.jpg", read_image(cxr / "masks" / f"{n}_lungs.png", kind="label"),
                         score=0.8 + 0.1 * i) for i, n in enumerate(NAMES)]


def _check_import(res, originals: dict[str, np.ndarray], images_dir: Path) -> None:
    entries = read_manifest(res.manifest)
    assert [e.image.name for e in entries] == [f"{n}.jpg" for n in NAMES]  # worklist order kept
    for e, n in zip(entries, NAMES, strict=True):
        assert e.image.parent == images_dir.resolve()
        lab = read_image(e.label, kind="label")
        assert lab.shape == read_image(e.image).shape
        for v in LUNGS:
            assert dice(lab.array == v, originals[n] == v) >= 0.99, (n, v)


# -- COCO -------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", SHAPES)
def test_coco_export_loads_in_pycocotools_and_datumaro_and_round_trips(
        shape, cxr, originals, images_dir, tmp_path):
    import datumaro as dm
    from pycocotools.coco import COCO

    out = tmp_path / "annotations" / "instances_default.json"
    export_prelabels(_cases(cxr, images_dir), out, "coco", labels=LUNGS, shape=shape)
    coco = COCO(str(out))
    cats = {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())}
    assert sorted(cats.values()) == ["left lung", "right lung"]
    for img in coco.loadImgs(coco.getImgIds()):
        n = Path(img["file_name"]).stem
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[img["id"]]))
        assert [a["score"] for a in anns] == pytest.approx([0.8 + 0.1 * NAMES.index(n)] * 2)
        assert all(isinstance(a["segmentation"], list if shape == "polygon" else dict) for a in anns)
        for a in anns:
            v = {"right lung": 1, "left lung": 2}[cats[a["category_id"]]]
            assert dice(coco.annToMask(a), originals[n] == v) >= 0.99
    ds = dm.Dataset.import_from(str(tmp_path), "coco_instances")
    labels = ds.categories()[dm.AnnotationType.label]
    assert len(ds) == 2
    for item in ds:
        areas = [a for a in item.annotations if a.type in (dm.AnnotationType.polygon, dm.AnnotationType.mask)]
        assert len(areas) == 2
        for a in areas:
            v = {"right lung": 1, "left lung": 2}[labels[a.label].name]
            h, w = originals[item.id].shape
            m = polygons_to_mask([a.points], h, w) if a.type == dm.AnnotationType.polygon else a.image
            assert dice(m, originals[item.id] == v) >= 0.99
    res = import_annotations(out, "coco", images_dir, tmp_path / "imported")
    _check_import(res, originals, images_dir)
    assert res.unknown_names == {} and res.missing_images == []


def test_coco_import_reports_unknown_names_and_maps_spellings(cxr, originals, images_dir, tmp_path):
    out = tmp_path / "c.json"
    export_prelabels(_cases(cxr, images_dir), out, "coco", labels=LUNGS)
    data = json.loads(out.read_text())
    data["categories"] = [{"id": 1, "name": "Lung_R"}, {"id": 2, "name": "LT LUNG"}, {"id": 3, "name": "Heart shadow"}]
    extra = dict(data["annotations"][0], id=999, category_id=3)
    data["annotations"].append(extra)
    out.write_text(json.dumps(data))
    res = import_annotations(out, "coco", images_dir, tmp_path / "imported")
    assert res.unknown_names == {"Heart shadow": 1}
    _check_import(res, originals, images_dir)
    report = json.loads((tmp_path / "imported" / "import_report.json").read_text())
    assert report["unknown_names"] == {"Heart shadow": 1}


# -- CVAT -------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", SHAPES)
def test_cvat_export_loads_in_datumaro_and_round_trips(shape, cxr, originals, images_dir, tmp_path):
    import datumaro as dm

    out = images_dir.parent / "annotations.xml"  # datumaro looks for images/ beside it
    export_prelabels(_cases(cxr, images_dir), out, "cvat", labels=LUNGS, shape=shape)
    ds = dm.Dataset.import_from(str(out), "cvat")
    labels = ds.categories()[dm.AnnotationType.label]
    assert sorted(lab.name for lab in labels) == ["left lung", "right lung"]
    assert [item.id for item in ds] == NAMES
    for item in ds:
        h, w = originals[item.id].shape
        for v, name in LUNGS.items():
            anns = [a for a in item.annotations if labels[a.label].name == name]
            assert anns and all(a.type == (dm.AnnotationType.polygon if shape == "polygon"
                                           else dm.AnnotationType.mask) for a in anns)
            m = np.zeros((h, w), bool)
            for a in anns:
                m |= polygons_to_mask([a.points], h, w) if shape == "polygon" else np.asarray(a.image, bool)
            assert dice(m, originals[item.id] == v) >= 0.99
    res = import_annotations(out, "cvat", images_dir, tmp_path / "imported")
    _check_import(res, originals, images_dir)


def test_cvat_import_of_a_zip_with_tool_spellings_and_non_area_shapes(cxr, originals, images_dir, tmp_path):
    import zipfile

    xml = tmp_path / "annotations.xml"
    export_prelabels(_cases(cxr, images_dir), xml, "cvat", labels=LUNGS)
    text = xml.read_text().replace('label="right lung"', 'label="Lung_R"').replace('label="left lung"', 'label="Lung_L"')
    text = text.replace("</image>", '  <polyline label="Lung_R" points="1,1;5,5" occluded="0" source="manual" '
                        'z_order="0"/>\n  </image>', 1)
    zpath = tmp_path / "task.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("annotations.xml", text)
    res = import_annotations(zpath, "cvat", images_dir, tmp_path / "imported")
    assert res.skipped_shapes == {"polyline": 1} and res.unknown_names == {}
    _check_import(res, originals, images_dir)


def test_import_rejects_a_size_mismatch(cxr, images_dir, tmp_path):
    xml = tmp_path / "annotations.xml"
    export_prelabels(_cases(cxr, images_dir), xml, "cvat", labels=LUNGS)
    xml.write_text(_resize_first(xml.read_text()))
    with pytest.raises(GeometryError, match="export's image is"):
        import_annotations(xml, "cvat", images_dir, tmp_path / "imported")


def _resize_first(text: str) -> str:
    import re

    return re.sub(r'(<image id="0" name="[^"]+") width="\d+" height="\d+"', r'\1 width="700" height="600"', text, count=1)


# -- Label Studio -----------------------------------------------------------------------------

def _as_ls_export(tasks: list[dict]) -> list[dict]:
    """What Label Studio's JSON export holds once an annotator accepted the predictions of task 0
    (plus a cancelled skip) and left task 1 alone (accepted via a second, later annotation)."""
    out = []
    for i, t in enumerate(tasks):
        res = t["predictions"][0]["result"]
        anns = [{"id": 10 * i + 1, "result": [], "was_cancelled": True, "updated_at": "2026-01-01T10:00:00Z"},
                {"id": 10 * i + 2, "result": res, "was_cancelled": False, "updated_at": "2026-01-01T11:00:00Z"}]
        out.append({"id": i + 1, "data": t["data"], "annotations": anns, "predictions": t["predictions"]})
    out.append({"id": 99, "data": {"image": "/data/local-files/?d=never-opened.jpg"}, "annotations": []})
    return out


@pytest.mark.parametrize("shape", SHAPES)
def test_labelstudio_tasks_validate_with_the_sdk_and_round_trip(shape, cxr, originals, images_dir, tmp_path):
    from label_studio_sdk.converter.brush import decode_rle
    from label_studio_sdk.label_interface import LabelInterface

    out = tmp_path / "tasks.json"
    export_prelabels(_cases(cxr, images_dir), out, "labelstudio", labels=LUNGS, shape=shape)
    config = (tmp_path / "tasks.config.xml").read_text()
    li = LabelInterface(config)
    assert li.validate() is None or li.validate() is True
    tasks = json.loads(out.read_text())
    assert [t["data"]["image"] for t in tasks] == [f"/data/local-files/?d={n}.jpg" for n in NAMES]
    for i, t in enumerate(tasks):
        pred = t["predictions"][0]
        assert pred["score"] == pytest.approx(0.8 + 0.1 * i)
        assert li.validate_prediction(pred, return_errors=True) == []
        h, w = originals[NAMES[i]].shape
        for v, name in LUNGS.items():
            regions = [r for r in pred["result"] if name in r["value"].get(r["type"], [])]
            assert regions and all(r["original_width"] == w and r["original_height"] == h for r in regions)
            m = np.zeros((h, w), bool)
            for r in regions:
                if r["type"] == "brushlabels":
                    m |= decode_rle(r["value"]["rle"]).reshape(h, w, 4)[:, :, 3] > 0
                else:
                    pts = np.asarray(r["value"]["points"]) * [w / 100, h / 100]
                    m |= polygons_to_mask([pts], h, w)
            assert dice(m, originals[NAMES[i]] == v) >= 0.99
    export = tmp_path / "export.json"
    export.write_text(json.dumps(_as_ls_export(tasks)))
    res = import_annotations(export, "labelstudio", images_dir, tmp_path / "imported")
    assert res.unannotated == ["never-opened.jpg"]
    _check_import(res, originals, images_dir)


def test_labelstudio_predictions_alone_are_not_ground_truth(cxr, images_dir, tmp_path):
    out = tmp_path / "tasks.json"
    export_prelabels(_cases(cxr, images_dir), out, "labelstudio", labels=LUNGS)
    with pytest.raises(InputError, match="nothing usable"):
        import_annotations(out, "labelstudio", images_dir, tmp_path / "imported")
    assert len(read_annotations(out, "labelstudio")) == 2


# -- CLI and errors ---------------------------------------------------------------------------

def test_cli_import_annotations(cxr, originals, images_dir, tmp_path):
    from typer.testing import CliRunner

    from medseg.cli import app

    xml = tmp_path / "annotations.xml"
    export_prelabels(_cases(cxr, images_dir), xml, "cvat", labels=LUNGS)
    out = tmp_path / "imported"
    r = CliRunner().invoke(app, ["import-annotations", str(xml), "--format", "cvat", "--images", str(images_dir),
                                 "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "2 label map(s)" in r.output
    from medseg.labelling.annotations import AnnotationImport

    _check_import(AnnotationImport(out / "manifest.csv", []), originals, images_dir)
    r = CliRunner().invoke(app, ["import-annotations", str(xml), "--format", "yolo", "--images", str(images_dir),
                                 "--out", str(out)])
    assert r.exit_code != 0


def test_export_refuses_3d_and_unknown_format(cxr, images_dir, tmp_path):
    from medseg.errors import ConfigError
    from medseg.image import Image

    vol = Image(np.zeros((2, 4, 4), np.uint8), np.eye(4), "label")
    with pytest.raises(InputError, match="2-D"):
        export_prelabels([PrelabelCase(images_dir / f"{NAMES[0]}.jpg", vol)], tmp_path / "x.json", "coco")
    with pytest.raises(ConfigError, match="unknown annotation format"):
        export_prelabels(_cases(cxr, images_dir), tmp_path / "x.json", "yolo")
