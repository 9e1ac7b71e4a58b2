"""End-to-end nodule detection (detect_nodules, write_nodule_outputs, ``medseg detect``) on the real
LIDC-IDRI-0001 slices with planted spheres and a stand-in network of known behaviour.

The stand-in maps each 2.5-D input ``(B, 3, H, W)`` to ``(B, 3, H, W)`` logits: *nodule* where the
centre slice is brighter than 150 HU inside fixed in-plane discs (around the planted spheres),
*lung* where it is darker than -400 HU inside the lungs found by the auto-labeller, background
elsewhere. So the expected output is known exactly: one sphere planted in the right lung must be
found at its world position; one planted in the air in front of the patient, far from the lung,
must be dropped by the lung restriction.
"""

from __future__ import annotations

import csv
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from scipy import ndimage

from medseg.config import Config, config_from_dict
from medseg.detect import evaluate_detection
from medseg.detect.pipeline import NoduleResult, detect_nodules, write_nodule_outputs
from medseg.errors import GeometryError, InputError, ModelError
from medseg.image import Image
from medseg.infer import Predictor
from medseg.models.encoders import encoder_preprocessing

RADIUS_MM = 6.0
PLANT_HU = 200.0
MID = 7  # the planted spheres are centred on this slice (z = -115 mm)


class StandIn(torch.nn.Module):
    """Known-behaviour network: see the module docstring. Regions are ``(H, W)`` bool masks."""

    def __init__(self, cfg: Config, lung_region: np.ndarray, nodule_region: np.ndarray) -> None:
        super().__init__()
        pre = encoder_preprocessing(cfg.model)
        self.mean, self.std = pre.mean[1], pre.std[1]
        self.lo, self.hi = (float(v) for v in cfg.data.hu_window)
        self.register_buffer("lung_region", torch.as_tensor(lung_region, dtype=torch.bool))
        self.register_buffer("nodule_region", torch.as_tensor(nodule_region, dtype=torch.bool))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hu = self.lo + (x[:, 1] * self.std + self.mean) * (self.hi - self.lo)  # centre slice, undo normalisation
        nodule = (hu > 150) & self.nodule_region
        lung = (hu < -400) & self.lung_region & ~nodule
        return 10.0 * torch.stack([~lung & ~nodule, lung, nodule], dim=1).float()


def _config(labels: dict[int, str] | None = None) -> Config:
    return config_from_dict({
        "labels": labels or {1: "lung", 2: "nodule"},
        "model": {"encoder_weights": "none", "in_channels": 3, "num_classes": 3},
        # one window = the whole 512 x 512 slice, so the stand-in's in-plane regions line up
        "data": {"task": "ct", "context_slices": 3, "image_size": [512, 512], "spacing_mm": 0.0},
        # body_crop off: the stand-in's regions are fixed 512 x 512 masks, not translation-equivariant
        "infer": {"batch_size": 4, "keep_largest": False, "body_crop": False},
    }).validate()


def _disc(shape: tuple[int, int], i: float, j: float, r: float) -> np.ndarray:
    yy, xx = np.indices(shape)
    return (xx - i) ** 2 + (yy - j) ** 2 <= r * r


def _plant(ct: Image, centres: list[np.ndarray]) -> np.ndarray:
    arr = np.asarray(ct.array, dtype=np.float32).copy()
    zz, yy, xx = np.indices(arr.shape)
    world = ct.index_to_world(np.stack([xx, yy, zz], -1).reshape(-1, 3).astype(np.float64)).reshape(*arr.shape, 3)
    for c in centres:
        arr[np.sum((world - c) ** 2, axis=-1) <= RADIUS_MM**2] = PLANT_HU
    return arr


@pytest.fixture(scope="module")
def scene(lidc_ct: Image) -> dict[str, Any]:
    """The planted CT, the two sphere centres (world mm) and the stand-in predictor."""
    from medseg.labelling.autolabel import autolabel_ct_lungs

    lungs = autolabel_ct_lungs(lidc_ct).array
    # sphere A: the point of the right lung (label 1) farthest from its border on the middle slice
    depth = ndimage.distance_transform_edt(lungs[MID] == 1)
    ja, ia = np.unravel_index(int(np.argmax(depth)), depth.shape)
    # sphere B: air in front of / beside the patient, far from the body and from the image border
    inner = np.zeros(depth.shape, bool)
    inner[40:-40, 40:-40] = True
    body_far = ndimage.distance_transform_edt(lidc_ct.array[MID] <= -500)
    body_far[~inner] = 0
    jb, ib = np.unravel_index(int(np.argmax(body_far)), body_far.shape)
    ca = lidc_ct.index_to_world(np.array([ia, ja, MID], dtype=np.float64))
    cb = lidc_ct.index_to_world(np.array([ib, jb, MID], dtype=np.float64))
    planted = lidc_ct.with_array(_plant(lidc_ct, [ca, cb]))
    r_px = 2 * RADIUS_MM / lidc_ct.spacing[0]
    cfg = _config()
    regions = _disc(depth.shape, ia, ja, r_px) | _disc(depth.shape, ib, jb, r_px)
    model = StandIn(cfg, lungs.any(axis=0) > 0, regions)
    return {"ct": planted, "in_lung": ca, "outside": cb, "predictor": Predictor(model, cfg, device="cpu"),
            "lungs": lungs, "cfg": cfg}


@pytest.fixture(scope="module")
def result(scene: dict[str, Any]) -> NoduleResult:
    return detect_nodules(scene["ct"], scene["predictor"])


def test_planted_nodule_found_at_its_world_position(scene: dict[str, Any], result: NoduleResult,
                                                     tmp_path: Path) -> None:
    ct = scene["ct"]
    assert len(result.detections) == 1  # the sphere outside the lung is dropped
    (det,) = result.detections
    assert np.linalg.norm(np.asarray(det.center) - scene["in_lung"]) < 1.0  # mm
    assert det.diameter_mm == pytest.approx(2 * RADIUS_MM, rel=0.15)
    assert det.score > 0.99
    # the component map marks the nodule's voxels with its rank, nothing else
    comp = result.nodule_components.array
    centre = np.round(ct.world_to_index(scene["in_lung"])).astype(int)
    assert comp[centre[2], centre[1], centre[0]] == 1 and set(np.unique(comp).tolist()) == {0, 1}
    assert result.lung_labels == {1: "lung"} and result.nodule_value == 2
    # the LUNA16 evaluation counts it as a hit with no false positive
    ann = tmp_path / "annotations.csv"
    x, y, z = scene["in_lung"]
    uid = ct.source.series_instance_uid
    ann.write_text(f"seriesuid,coordX,coordY,coordZ,diameter_mm\n{uid},{x},{y},{z},{2 * RADIUS_MM}\n")
    files = write_nodule_outputs(result, ct, tmp_path / "out")
    froc = evaluate_detection(files["csv"], ann, n_bootstrap=0)
    assert froc.n_detected == 1 and froc.n_false_positives == 0 and froc.cpm == 1.0


def test_lung_restriction_drops_candidates_away_from_the_lung(scene: dict[str, Any], result: NoduleResult) -> None:
    anywhere = detect_nodules(scene["ct"], scene["predictor"], lung_label=None)
    centres = [np.asarray(d.center) for d in anywhere.detections]
    assert len(centres) == 2
    assert min(np.linalg.norm(c - scene["outside"]) for c in centres) < 1.0
    assert min(np.linalg.norm(c - scene["in_lung"]) for c in centres) < 1.0
    # a higher threshold than any probability finds nothing
    assert detect_nodules(scene["ct"], scene["predictor"], threshold=1.0).detections == []


def _dciodvfy_errors(path: Path) -> list[str]:
    exe = shutil.which("dciodvfy")
    if exe is None:
        return []
    r = subprocess.run([exe, str(path)], capture_output=True, text=True, timeout=60)
    return [line for line in (r.stdout + r.stderr).splitlines() if line.startswith("Error")]


def test_outputs_csv_seg_sr_overlay(scene: dict[str, Any], result: NoduleResult, tmp_path: Path) -> None:
    import highdicom as hd

    from medseg.io import read_dicom_seg

    ct = scene["ct"]
    files = write_nodule_outputs(result, ct, tmp_path)
    assert {k: p.name for k, p in files.items()} == {
        "csv": "candidates.csv", "seg": "seg.dcm", "sr": "sr.dcm", "overlay": "overlay.png"}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in files.values())

    with open(files["csv"], newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["seriesuid", "coordX", "coordY", "coordZ", "probability"]
    assert len(rows) == 1 and rows[0]["seriesuid"] == ct.source.series_instance_uid
    xyz = np.array([float(rows[0][k]) for k in ("coordX", "coordY", "coordZ")])
    np.testing.assert_allclose(xyz, result.detections[0].center, atol=1e-3)

    seg = hd.seg.segread(files["seg"])
    segments = {int(n): str(seg.get_segment_description(n).SegmentLabel) for n in seg.segment_numbers}
    assert sorted(segments.values()) == ["lung", "nodule"]
    back, names = read_dicom_seg(files["seg"], ct, label_names={1: "lung", 2: "nodule"})
    np.testing.assert_array_equal(back.array == 2, result.nodule_components.array > 0)
    pred = result.prediction.labels.array
    np.testing.assert_array_equal(back.array == 1, (pred == 1) & (result.nodule_components.array == 0))

    sr = hd.sr.srread(files["sr"])
    groups = sr.content.get_volumetric_roi_measurement_groups()
    assert len(groups) == 2 and groups[0].tracking_uid == groups[1].tracking_uid
    np.testing.assert_allclose(groups[0].roi.graphic_data.reshape(-1), result.detections[0].center, atol=1e-3)
    item = groups[1].referenced_segment[0].ReferencedSOPSequence[0]
    nodule_segment = next(n for n, name in segments.items() if name == "nodule")
    assert item.ReferencedSOPInstanceUID == seg.SOPInstanceUID
    assert int(item.ReferencedSegmentNumber) == nodule_segment
    assert _dciodvfy_errors(files["sr"]) == []
    assert files["overlay"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_outputs_for_nifti_input_and_no_nodule(scene: dict[str, Any], tmp_path: Path) -> None:
    from medseg.io import read_image, write_image

    nifti = write_image(scene["ct"], tmp_path / "case042.nii.gz")
    ct = read_image(nifti, modality="CT")
    res = detect_nodules(ct, scene["predictor"])
    files = write_nodule_outputs(res, ct, tmp_path / "out")
    assert sorted(files) == ["csv", "overlay"]  # no DICOM series to reference: no SEG/SR
    rows = list(csv.reader(files["csv"].read_text().splitlines()))
    assert len(rows) == 2 and rows[1][0] == "case042"  # named by the file, as LUNA16 .mhd files
    named = write_nodule_outputs(res, ct, tmp_path / "named", seriesuid="1.2.3")
    assert named["csv"].read_text().splitlines()[1].startswith("1.2.3,")

    # a DICOM CT where nothing is found: header-only CSV, a lung-only SEG, no SR
    blank = Predictor(StandIn(scene["cfg"], scene["lungs"].any(axis=0) > 0, np.zeros((512, 512), bool)),
                      scene["cfg"], device="cpu")
    none = detect_nodules(scene["ct"], blank)
    assert none.detections == []
    files = write_nodule_outputs(none, scene["ct"], tmp_path / "none")
    assert sorted(files) == ["csv", "overlay", "seg"]
    assert files["csv"].read_text().strip() == "seriesuid,coordX,coordY,coordZ,probability"


def test_errors(scene: dict[str, Any], result: NoduleResult, tmp_path: Path) -> None:
    lung_only = _config({1: "right lung", 2: "left lung"})
    model = StandIn(lung_only, np.ones((512, 512), bool), np.zeros((512, 512), bool))
    with pytest.raises(ModelError, match="nodule"):
        detect_nodules(scene["ct"], Predictor(model, lung_only, device="cpu"))
    no_lung = _config({1: "vessel", 2: "nodule"})
    with pytest.raises(ModelError, match="lung"):
        detect_nodules(scene["ct"], Predictor(model, no_lung, device="cpu"))
    with pytest.raises(InputError, match="threshold"):
        detect_nodules(scene["ct"], scene["predictor"], threshold=0.0)
    flat = Image(np.zeros((64, 64), np.float32), np.eye(3), "intensity", "CT")
    with pytest.raises(GeometryError, match="3-D"):
        detect_nodules(flat, scene["predictor"])
    other = Image(np.zeros((4, 8, 8), np.float32), np.eye(4), "intensity", "CT")
    with pytest.raises(GeometryError, match="not computed on this CT"):
        write_nodule_outputs(result, other, tmp_path / "x")
    assert not (tmp_path / "x").exists()


def _write_planted_series(scene: dict[str, Any], folder: Path) -> Path:
    """The planted CT as a DICOM series (copies of the LIDC files with new pixel data)."""
    import pydicom

    ct = scene["ct"]
    folder.mkdir()
    for k, f in enumerate(ct.source.files):
        ds = pydicom.dcmread(f)
        stored = (ct.array[k] - float(ds.RescaleIntercept)) / float(ds.RescaleSlope)
        ds.PixelData = np.round(stored).astype(ds.pixel_array.dtype).tobytes()
        ds.save_as(folder / Path(f).name)
    return folder


def test_cli_detect(scene: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                    capsys: pytest.CaptureFixture[str], repo_root: Path) -> None:
    from medseg.cli import main

    series = _write_planted_series(scene, tmp_path / "ct")
    out = tmp_path / "out"
    # a shipped lung-only model has no nodule label: one-line error, exit code 2, nothing written
    assert main(["detect", str(series), "--checkpoint", str(repo_root / "medseg" / "weights" / "ct_lung"),
                 "--out", str(out)]) == 2
    assert "nodule" in capsys.readouterr().err and not out.exists()
    assert main(["detect", str(series), "--checkpoint", str(tmp_path / "missing"), "--out", str(out)]) == 2
    capsys.readouterr()

    def stand_in(cls: type, path: Any = None, **kwargs: Any) -> Predictor:
        return scene["predictor"]

    monkeypatch.setattr(Predictor, "from_checkpoint", classmethod(stand_in))
    stand = tmp_path / "stand-in"  # a folder that looks like a checkpoint; the model is the stand-in above
    stand.mkdir()
    (stand / "config.json").write_text("{}")
    assert main(["detect", str(series), "--checkpoint", str(stand), "--out", str(out), "--threshold", "0.5"]) == 0
    text = capsys.readouterr().out
    assert "1 candidate(s)" in text and "nodule 1:" in text
    assert sorted(p.name for p in out.iterdir()) == ["candidates.csv", "overlay.png", "seg.dcm", "sr.dcm"]
    row = out.joinpath("candidates.csv").read_text().splitlines()[1].split(",")
    assert np.linalg.norm(np.array([float(v) for v in row[1:4]]) - scene["in_lung"]) < 1.0
    assert main(["detect", str(series), "--checkpoint", str(stand), "--out", str(out), "--threshold", "1.5"]) == 2
    assert "threshold" in capsys.readouterr().err
