"""The batch runner on what users bring: complete cases, reruns, names, layouts, hostile paths.

Uses tiny untrained checkpoints (tests/conftest.py) so each case costs well under a second.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest

from medseg.cli import main
from medseg.errors import CheckpointError, ConfigError
from medseg.image import Image
from medseg.infer.batch import discover, merge_summaries, predict, resolve_checkpoint
from medseg.io import read_image, write_image

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "sample_data"
CT_DICOM = SAMPLES / "ct" / "LIDC-IDRI-0001"


def _rows(path: Path) -> dict[str, dict[str, str]]:
    return {r["case"]: r for r in csv.DictReader(path.open())}


@pytest.fixture()
def cxr_inputs(tmp_path: Path) -> Path:
    """A radiograph DICOM, a PNG and a JPEG-as-PNG-named NIfTI 2-D picture."""
    root = tmp_path / "in"
    root.mkdir()
    shutil.copy(SAMPLES / "cxr" / "siim_cr_chest_pa.dcm", root / "dx.dcm")
    shutil.copy(SAMPLES / "cxr" / "ARDSSevere.png", root / "film.png")
    write_image(read_image(SAMPLES / "cxr" / "ARDSSevere.png"), root / "film2d.nii.gz")
    return root


def test_skip_existing_skips_every_complete_radiograph_case_and_redoes_an_incomplete_one(
    cxr_inputs: Path, tmp_path: Path, tiny_cxr_checkpoint: Path
) -> None:
    out = tmp_path / "out"
    first = predict([cxr_inputs], out, checkpoint=tiny_cxr_checkpoint)
    assert {r.case: r.status for r in first.results} == {"dx": "ok", "film": "ok", "film2d": "ok"}
    # radiograph DICOM: SEG + PNG mask; PNG/NIfTI inputs: no DICOM -> mask instead of SEG
    assert (out / "dx" / "seg.dcm").is_file() and (out / "dx" / "labels.png").is_file()
    assert not (out / "film" / "seg.dcm").exists() and (out / "film" / "labels.png").is_file()
    (out / "film" / "overlay.png").unlink()  # an incomplete case
    again = predict([cxr_inputs], out, checkpoint=tiny_cxr_checkpoint, skip_existing=True)
    assert {r.case: r.status for r in again.results} == {"dx": "skipped", "film": "ok", "film2d": "skipped"}
    assert (out / "film" / "overlay.png").is_file()
    # the merged summary keeps the measurements of skipped cases
    rows = _rows(again.summary_csv)
    assert set(rows) == {"dx", "film", "film2d"}
    assert all(rows[c]["status"] == "ok" and rows[c]["right lung area_px"] or rows[c]["right lung area_cm2"]
               for c in rows)
    # asking for an output a case does not have yet redoes it
    more = predict([cxr_inputs / "dx.dcm"], out, checkpoint=tiny_cxr_checkpoint, skip_existing=True,
                   formats=["seg", "mask", "overlay"])
    assert more.results[0].status == "skipped"


def test_skip_existing_for_dicom_series_and_nifti_ct(tmp_path: Path, tiny_ct_checkpoint: Path) -> None:
    root = tmp_path / "in"
    shutil.copytree(CT_DICOM, root / "PATIENT" / "dicom")
    write_image(read_image(CT_DICOM), root / "vol.nii.gz")
    out = tmp_path / "out"
    first = predict([root], out, checkpoint=tiny_ct_checkpoint)
    status = {r.case: r.status for r in first.results}
    assert status == {"PATIENT_dicom": "ok", "vol": "ok"}, first.results
    assert (out / "PATIENT_dicom" / "seg.dcm").is_file() and (out / "vol" / "labels.nii.gz").is_file()
    again = predict([root], out, checkpoint=tiny_ct_checkpoint, skip_existing=True)
    assert {r.status for r in again.results} == {"skipped"}


def test_rerun_and_shards_merge_into_one_summary(cxr_inputs: Path, tmp_path: Path, tiny_cxr_checkpoint: Path) -> None:
    out = tmp_path / "out"
    for i in range(2):
        predict([cxr_inputs], out, checkpoint=tiny_cxr_checkpoint, formats=["mask"], shard=(i, 2))
    merged = merge_summaries(out)
    assert set(_rows(merged)) == {"dx", "film", "film2d"}
    assert main(["summary", str(out)]) == 0
    with pytest.raises(ConfigError, match="no medseg results"):
        merge_summaries(tmp_path / "nothing")


def test_case_names_are_safe_and_unique(tmp_path: Path) -> None:
    root = tmp_path / "in"
    root.mkdir()
    png = (SAMPLES / "cxr" / "ARDSSevere.png").read_bytes()
    for name in ("x.png", "x.jpg", "x_1.png", "...png", "a b#c.png"):
        (root / name).write_bytes(png)
    names = sorted(c.name for c in discover([root, root / "...png"]).cases)  # hidden files only when named
    assert len(names) == len(set(names)) == 5
    assert all(n not in (".", "..") and "/" not in n and not n.startswith(".") for n in names)
    assert {"x_png", "x_jpg", "x_1"} <= set(names)
    # two ct.nii.gz in different folders are named by their folders, not ct/ct_1
    a = tmp_path / "A"
    b = tmp_path / "B"
    for d in (a, b):
        d.mkdir()
        write_image(Image(np.zeros((2, 4, 4), np.int16), np.eye(4)), d / "ct.nii.gz")
    assert sorted(c.name for c in discover([a / "ct.nii.gz", b / "ct.nii.gz"]).cases) == ["A_ct", "B_ct"]


def test_discovery_skips_label_maps_and_splits_multi_radiograph_series(tmp_path: Path) -> None:
    import pydicom

    root = tmp_path / "in"
    case = root / "case1"
    case.mkdir(parents=True)
    write_image(Image(np.zeros((3, 8, 8), np.int16), np.eye(4)), case / "ct.nii.gz")
    write_image(Image(np.zeros((3, 8, 8), np.uint8), np.eye(4), kind="label"), case / "lung_label.nii.gz")
    shutil.copy(SAMPLES / "cxr" / "ARDSSevere_lungs.png", root / "ARDSSevere_lungs.png")
    # PA + lateral: two radiographs of one series
    ds = pydicom.dcmread(SAMPLES / "cxr" / "siim_cr_chest_pa.dcm")
    ds.save_as(root / "pa.dcm")
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.InstanceNumber = 2
    ds.save_as(root / "lat.dcm")
    found = discover([root])
    assert sorted(c.name for c in found.cases) == ["case1_ct", "lat", "pa"]
    assert any("lung_label" in n for n in found.notes) and any("ARDSSevere_lungs" in n for n in found.notes)


def test_outputs_never_overwrite_an_input_or_leave_the_out_folder(tmp_path: Path, tiny_cxr_checkpoint: Path) -> None:
    out = tmp_path / "O"
    (out / "overlay").mkdir(parents=True)
    victim = out / "overlay" / "overlay.png"
    shutil.copy(SAMPLES / "cxr" / "ARDSSevere.png", victim)
    before = victim.read_bytes()
    res = predict([victim], out, checkpoint=tiny_cxr_checkpoint)
    assert res.results[0].status == "error" and "overwrite an input" in res.results[0].message
    assert victim.read_bytes() == before
    # a case named from '...png' stays inside --out
    odd = tmp_path / "odd"
    odd.mkdir()
    shutil.copy(SAMPLES / "cxr" / "ARDSSevere.png", odd / "...png")
    out2 = tmp_path / "deep" / "out"
    predict([odd / "...png"], out2, checkpoint=tiny_cxr_checkpoint, formats=["mask"])
    written = [p for p in (tmp_path / "deep").rglob("*") if p.is_file()]
    assert written and all(out2 in p.parents for p in written)


def test_bad_cases_become_rows_and_usage_errors_exit_2(tmp_path: Path, tiny_cxr_checkpoint: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "mix"
    root.mkdir()
    shutil.copy(SAMPLES / "cxr" / "ARDSSevere.png", root / "good.png")
    (root / "zero.png").write_bytes(b"")
    (root / "junk.nii.gz").write_bytes(b"\x1f\x8b junk")
    single = read_image(CT_DICOM)
    write_image(Image(np.asarray(single.array)[:1], single.affine), root / "one_slice.nii.gz")
    rc = main(["predict", str(root), "--out", str(tmp_path / "o"), "-m", str(tiny_cxr_checkpoint)])
    assert rc == 1
    rows = _rows(tmp_path / "o" / "summary.csv")
    assert rows["good"]["status"] == "ok"
    assert {rows[c]["status"] for c in ("zero", "junk", "one_slice")} == {"error"}
    assert all(rows[c]["message"] for c in ("zero", "junk", "one_slice"))
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["predict", str(empty), "--out", str(tmp_path / "o2")]) == 2
    assert "no images or DICOM series found" in capsys.readouterr().err
    assert main(["predict", str(root / "good.png"), "--out", str(tmp_path / "x.nii.gz")]) == 2
    assert not (tmp_path / "x.nii.gz").exists()


def test_a_single_slice_ct_gets_outputs(tmp_path: Path, tiny_ct_checkpoint: Path) -> None:
    ct = read_image(CT_DICOM)
    one = write_image(Image(np.asarray(ct.array)[:1], ct.affine, modality="CT"), tmp_path / "one.nii.gz")
    res = predict([one], tmp_path / "o", checkpoint=tiny_ct_checkpoint)
    assert res.results[0].status == "ok", res.results[0].message
    assert (tmp_path / "o" / "one" / "overlay.png").is_file()


def test_flat_layout_checkpoint_file_and_short_form(tmp_path: Path, tiny_cxr_checkpoint: Path) -> None:
    src = SAMPLES / "cxr" / "ARDSSevere.png"
    res = predict([src], tmp_path / "flat", checkpoint=tiny_cxr_checkpoint / "model.safetensors", layout="flat")
    assert res.results[0].status == "ok"
    assert (tmp_path / "flat" / "ARDSSevere.png").is_file()
    assert (tmp_path / "flat" / "ARDSSevere_overlay.png").is_file()
    assert resolve_checkpoint(tiny_cxr_checkpoint / "config.json") == tiny_cxr_checkpoint
    with pytest.raises(CheckpointError):
        resolve_checkpoint(tmp_path / "missing")
    # lungmask style: medseg predict IN OUT
    assert main(["predict", str(src), str(tmp_path / "short"), "-m", str(tiny_cxr_checkpoint),
                 "--format", "mask"]) == 0
    assert (tmp_path / "short" / "ARDSSevere" / "labels.png").is_file()


def test_stale_temporaries_are_cleaned(tmp_path: Path, tiny_cxr_checkpoint: Path) -> None:
    out = tmp_path / "out"
    (out / "c").mkdir(parents=True)
    stale = out / "c" / ".seg.dcm.abc123xy.tmp.dcm"
    stale.write_bytes(b"half")
    keep = out / "c" / "notes.txt"
    keep.write_text("mine")
    predict([SAMPLES / "cxr" / "ARDSSevere.png"], out, checkpoint=tiny_cxr_checkpoint, formats=["mask"])
    assert not stale.exists() and keep.read_text() == "mine"


def test_shipped_models_are_selectable_by_name() -> None:
    for name in ("cxr_lung", "cxr_lung_v7", "ct_lung"):
        folder = resolve_checkpoint(name)
        assert folder is not None and folder.name == name and (folder / "MODEL_CARD.md").is_file()


def test_overnight_batch_with_every_kind_of_bad_input(tmp_path: Path, tiny_cxr_checkpoint: Path) -> None:
    """Issue #13: good studies mixed with hostile ones -> every good case written, one row per bad
    case (with a one-line message naming the file), exit code 1, nothing written outside --out."""
    import math

    import pydicom
    from PIL import Image as PILImage

    root = tmp_path / "mixed"
    root.mkdir()
    shutil.copy(SAMPLES / "cxr" / "siim_cr_chest_pa.dcm", root / "good_dx.dcm")
    shutil.copy(SAMPLES / "cxr" / "ARDSSevere.png", root / "good_film.png")
    src = pydicom.dcmread(SAMPLES / "cxr" / "siim_cr_chest_pa.dcm")
    bad = {}
    for name, change in {
        "no_rows": lambda ds: delattr(ds, "Rows"),
        "nan_slope": lambda ds: setattr(ds, "RescaleSlope", "nan"),
        "huge_spacing": lambda ds: setattr(ds, "PixelSpacing", ["1e308", "1e308"]),
        "two_intercepts": lambda ds: setattr(ds, "RescaleIntercept", ["0", "1"]),
    }.items():
        ds = src.copy()
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        ds.SeriesInstanceUID = pydicom.uid.generate_uid()
        change(ds)
        ds.save_as(root / f"{name}.dcm")
        bad[name] = name
    PILImage.new("1", (16000, 16000)).save(root / "bomb.png")  # ~250 kB file, 256 M pixels
    (root / "empty.png").write_bytes(b"")
    tiff = root / "trunc.tif"
    PILImage.new("L", (64, 64)).save(tiff, save_all=True, append_images=[PILImage.new("L", (64, 64))])
    tiff.write_bytes(tiff.read_bytes()[: tiff.stat().st_size // 2])
    (root / "dim0.nii.gz").write_bytes(b"\x1f\x8b\x08\x00" + b"\x00" * 20)
    junk = root / "junk_dicom"
    junk.mkdir()
    (junk / "a.dcm").write_bytes(b"\x00" * 4096)
    out = tmp_path / "out"
    rc = main(["predict", str(root), "--out", str(out), "-m", str(tiny_cxr_checkpoint), "--format", "mask"])
    assert rc == 1
    rows = _rows(out / "summary.csv")
    assert rows["good_dx"]["status"] == "ok" and rows["good_film"]["status"] == "ok"
    assert (out / "good_dx" / "labels.png").is_file() and (out / "good_film" / "labels.png").is_file()
    for name in ("no_rows", "nan_slope", "huge_spacing", "two_intercepts", "bomb", "empty", "trunc", "dim0"):
        assert rows[name]["status"] == "error", (name, rows[name])
        msg = rows[name]["message"]
        assert "\n" not in msg and name in msg and "unexpected" not in msg, (name, msg)
    assert not math.isnan(float(rows["good_dx"]["seconds"]))
    assert all(out in p.parents for p in tmp_path.rglob("*") if p.is_file() and root not in p.parents)


def test_cli_naming_device_version_progress_and_notes(tmp_path: Path, tiny_cxr_checkpoint: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("medseg ")
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(SAMPLES / "cxr" / "siim_cr_chest_pa.dcm", src / "IMG0001")  # no suffix: found by content
    shutil.copy(SAMPLES / "cxr" / "ARDSSevere.png", src / "film.png")
    out = tmp_path / "out"
    rc = main(["predict", str(src), "--out", str(out), "-m", str(tiny_cxr_checkpoint), "--naming", "dicom",
               "--device", "cpu"])
    assert rc == 0
    captured = capsys.readouterr()
    import pydicom

    ds = pydicom.dcmread(SAMPLES / "cxr" / "siim_cr_chest_pa.dcm", stop_before_pixels=True)
    dicom_name = f"{ds.PatientID}_{ds.StudyDate}_S{ds.SeriesNumber}".replace(" ", "_")
    assert (out / dicom_name / "seg.dcm").is_file() and (out / "film" / "labels.png").is_file()
    # outside a terminal: timestamped progress lines, one start and one end line per case
    err = captured.err
    assert err.count("started") == 2 and "case film: ok" in err
    # each warning once per case: the PNG's missing DICOM source, the DICOM's implausible spacing
    assert err.count("no DICOM source") == 1
    assert err.count("implausible for a chest radiograph") == 1
    rows = _rows(out / "summary.csv")
    assert "implausible" in rows[dicom_name]["warnings"] and "no DICOM source" in rows["film"]["warnings"]
    assert main(["predict", str(src), "--out", str(tmp_path / "o2"), "--naming", "pid"]) == 2


def test_cli_inference_knobs_reach_the_model_and_are_validated(tmp_path: Path, tiny_ct_checkpoint: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    ct = read_image(CT_DICOM)
    vol = write_image(Image(np.asarray(ct.array)[:4], ct.affine, modality="CT"), tmp_path / "ct.nii.gz")
    base = ["predict", str(vol), "-m", str(tiny_ct_checkpoint), "--format", "mask"]
    assert main([*base, "--out", str(tmp_path / "a"), "--spacing-mm", "8", "--window", "sliding",
                 "--batch-size", "2", "--precision", "fp32", "--no-body-crop"]) == 0
    assert read_image(tmp_path / "a" / "ct" / "labels.nii.gz", kind="label").shape == (4, 512, 512)
    capsys.readouterr()
    assert main([*base, "--out", str(tmp_path / "b"), "--batch-size", "0"]) == 2
    assert "infer.batch_size" in capsys.readouterr().err
    assert main([*base, "--out", str(tmp_path / "c"), "--window", "tiles"]) == 2


def test_pipelined_batch_reads_ahead_writes_behind_and_keeps_order(
    cxr_inputs: Path, tmp_path: Path, tiny_cxr_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    import medseg.infer.batch as batch

    (cxr_inputs / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")  # fails while being read
    threads: dict[str, dict[str, str]] = {"read": {}, "write": {}}
    read, write = batch._read_case, batch._write_case

    def spy_read(case):  # type: ignore[no-untyped-def]
        threads["read"][case.name] = threading.current_thread().name
        return read(case)

    def spy_write(*args):  # type: ignore[no-untyped-def]
        threads["write"][args[0].case.name] = threading.current_thread().name
        return write(*args)

    monkeypatch.setattr(batch, "_read_case", spy_read)
    monkeypatch.setattr(batch, "_write_case", spy_write)
    seen: list[str] = []
    piped = predict([cxr_inputs], tmp_path / "piped", checkpoint=tiny_cxr_checkpoint, prefetch=True,
                    on_case=lambda r: seen.append(r.case))
    piped_threads = {k: dict(v) for k, v in threads.items()}
    plain = predict([cxr_inputs], tmp_path / "plain", checkpoint=tiny_cxr_checkpoint, prefetch=False)
    order = [r.case for r in plain.results]
    assert [r.case for r in piped.results] == order == seen  # results and callbacks in case order
    assert {r.case: r.status for r in piped.results} == {r.case: r.status for r in plain.results}
    assert {r.case: r.status for r in piped.results}["broken"] == "error"
    # the first case is read in the loop, every later one ahead of time; all writes in the writer thread
    # (the plain run above overwrote the names with MainThread, so look at the piped run's first pass)
    assert piped_threads["read"][order[0]] == "MainThread"
    assert all(piped_threads["read"][c].startswith("medseg-read") for c in order[1:])
    assert all(piped_threads["write"][c].startswith("medseg-write") for c in order if c != "broken")
    for r in piped.results:
        if r.status == "ok":
            a = read_image(tmp_path / "piped" / r.case / "labels.png", kind="label").array
            b = read_image(tmp_path / "plain" / r.case / "labels.png", kind="label").array
            assert np.array_equal(a, b)
    assert _rows(piped.summary_csv).keys() == _rows(plain.summary_csv).keys()
