"""Integration test against a real Label Studio server started on localhost by the test.

Flow: create a project with medseg's lung labelling config, import medseg's pre-labelled tasks
(predictions with scores), submit an annotation through the API the way an annotator's "Submit"
does (right lung accepted as predicted, left lung redrawn with the brush, smaller), export the
project as JSON, import it back with :func:`medseg.labelling.annotations.import_annotations` and
check the label maps.

Needs the ``label-studio`` server (pip ``label-studio``; it pins its own Django stack, so CI installs
it in a separate virtual environment) and finds it through ``$MEDSEG_LABEL_STUDIO`` (the
``label-studio`` executable) or ``PATH``; skipped otherwise. Marked ``labelstudio``; about 1-2 min,
most of it the server's first start (database migrations).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from medseg.io import read_image
from medseg.io.annotations import labelstudio_config
from medseg.labelling.annotations import PrelabelCase, export_prelabels, import_annotations

pytestmark = [pytest.mark.labelstudio, pytest.mark.timeout(420)]

NAMES = ["kjr-21-e24-g001-l-a", "kjr-21-e24-g002-l-a"]
LUNGS = {1: "right lung", 2: "left lung"}
TOKEN = "medsegtesttoken0123456789abcdef01234567"


def _executable() -> str:
    exe = os.environ.get("MEDSEG_LABEL_STUDIO") or shutil.which("label-studio")
    if not exe or not Path(exe).exists():
        if os.environ.get("CI"):  # .ci/run installs it: a missing server there is a broken CI, not a skip
            pytest.fail("label-studio not installed although CI is set: .ci/run must install it (MEDSEG_LABEL_STUDIO)")
        pytest.skip("label-studio server not installed (pip install label-studio; set MEDSEG_LABEL_STUDIO)")
    return exe


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def images_dir(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = shared_data / "cxr_lung_covid19_gb"
    if not (src / "images").is_dir():
        pytest.skip(f"{src} not present")
    d = tmp_path_factory.mktemp("ls_images")
    for n in NAMES:
        shutil.copy(src / "images" / f"{n}.jpg", d / f"{n}.jpg")
    return d


@pytest.fixture(scope="module")
def server(images_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    exe = _executable()
    data = tmp_path_factory.mktemp("ls_data")
    port = _free_port()
    env = dict(os.environ, LABEL_STUDIO_BASE_DATA_DIR=str(data), LATEST_VERSION_CHECK="false",
               LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED="true",
               LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT=str(images_dir), COLLECT_ANALYTICS="false",
               SENTRY_DSN="", FRONTEND_SENTRY_DSN="")
    log = (data / "server.log").open("w")
    proc = subprocess.Popen(
        [exe, "start", "--no-browser", "--internal-host", "127.0.0.1", "-p", str(port), "--data-dir", str(data),
         "--username", "annotator@example.com", "--password", "medseg-test-pass", "--user-token", TOKEN,
         "--enable-legacy-api-token"],
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                with urllib.request.urlopen(url + "/health", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = (data / "server.log").read_text()[-3000:]
                pytest.fail(f"Label Studio did not start (exit {proc.poll()}):\n{tail}")
            time.sleep(2)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float((a & b).sum()) / float(a.sum() + b.sum())


def test_prelabels_round_trip_through_a_real_label_studio(server, images_dir, shared_data, tmp_path):
    from label_studio_sdk import LabelStudio
    from label_studio_sdk.converter.brush import mask2rle
    from scipy import ndimage

    masks = {n: np.asarray(read_image(shared_data / "cxr_lung_covid19_gb" / "masks" / f"{n}_lungs.png",
                                      kind="label").array) for n in NAMES}
    cases = [PrelabelCase(images_dir / f"{n}.jpg", read_image(shared_data / "cxr_lung_covid19_gb" / "masks"
                                                              / f"{n}_lungs.png", kind="label"), score=0.9 - 0.1 * i)
             for i, n in enumerate(NAMES)]
    tasks_file = export_prelabels(cases, tmp_path / "tasks.json", "labelstudio", labels=LUNGS,
                                  images_root=images_dir)
    config = (tmp_path / "tasks.config.xml").read_text()
    assert config == labelstudio_config(list(LUNGS.values()))

    ls = LabelStudio(base_url=server, api_key=TOKEN)
    project = ls.projects.create(title="medseg lungs", label_config=config)
    ls.projects.import_tasks(id=project.id, request=json.loads(tasks_file.read_text()))
    tasks = sorted(ls.tasks.list(project=project.id), key=lambda t: t.id)
    assert [t.data["image"] for t in tasks] == [f"/data/local-files/?d={n}.jpg" for n in NAMES]  # order kept
    preds = ls.predictions.list(task=tasks[0].id)
    assert len(preds) == 1 and preds[0].score == pytest.approx(0.9)
    assert {r["value"][r["type"]][0] for r in preds[0].result} == set(LUNGS.values())

    # the annotator accepts the right lung and redraws the left lung smaller with the brush
    h, w = masks[NAMES[0]].shape
    left_fixed = ndimage.binary_erosion(masks[NAMES[0]] == 2, iterations=3)
    result = [r for r in preds[0].result if r["value"][r["type"]] == ["right lung"]]
    result.append({"id": "fix1", "from_name": "brush", "to_name": "image", "type": "brushlabels",
                   "original_width": w, "original_height": h, "image_rotation": 0,
                   "value": {"format": "rle", "rle": [int(v) for v in mask2rle(left_fixed.astype(np.uint8) * 255)],
                             "brushlabels": ["left lung"]}})
    ls.annotations.create(id=tasks[0].id, result=result, was_cancelled=False)

    export = tmp_path / "export.json"
    export.write_bytes(b"".join(ls.projects.exports.download_sync(project.id, export_type="JSON",
                                                                  download_all_tasks=True)))
    res = import_annotations(export, "labelstudio", images_dir, tmp_path / "imported")
    assert res.unannotated == [f"{NAMES[1]}.jpg"]  # predictions alone are not labels
    assert res.unknown_names == {} and res.missing_images == []
    assert len(res.entries) == 1 and res.entries[0].image.name == f"{NAMES[0]}.jpg"
    lab = np.asarray(read_image(res.entries[0].label, kind="label").array)
    assert lab.shape == (h, w)
    assert dice(lab == 1, masks[NAMES[0]] == 1) >= 0.99
    assert dice(lab == 2, left_fixed) >= 0.99
    assert dice(lab == 2, masks[NAMES[0]] == 2) < 0.98  # the correction came through
