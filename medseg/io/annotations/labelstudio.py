"""Label Studio: labelling config, tasks with pre-annotations, and the JSON export read back.

Tasks are the JSON Label Studio imports (``[{"data": {"image": URL}, "predictions": [...]}]``);
each prediction holds the model's score and one result per structure: ``polygonlabels`` (points in
percent of the image size, Label Studio's convention) or ``brushlabels`` (Label Studio's brush RLE,
encoded and decoded with label-studio-sdk's own converter,
:mod:`label_studio_sdk.converter.brush`). The labelling config (:func:`labelstudio_config`) has an
``Image`` named ``image`` with a ``PolygonLabels`` control named ``polygon`` and a ``BrushLabels``
control named ``brush`` carrying the same labels, so annotators may correct either way.

Reading takes Label Studio's "JSON" export (a list of tasks with their ``annotations``): per task
the most recent annotation that was not cancelled; tasks without one are reported
(``meta['annotated'] = False``, no regions), their predictions are not taken as ground truth.

Image URLs: a task points at ``<url_prefix><path relative to the image folder>``; the default
prefix ``/data/local-files/?d=`` is Label Studio's local-file serving (set
``LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true`` and ``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT`` to
the image folder). :func:`image_path_from_url` turns any such URL (also ``/data/upload/<n>/<hash>-name``
of uploaded files and plain http URLs) back into a relative path / file name.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from os import PathLike
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse
from xml.sax.saxutils import quoteattr

import numpy as np

from medseg.colours import label_colour
from medseg.errors import ExportError, InputError
from medseg.io.annotations._model import AnnotatedImage, Region, ShapeMode, require
from medseg.io.annotations._shapes import mask_to_polygons, polygons_to_mask
from medseg.utils import atomic_write_text

__all__ = [
    "labelstudio_config",
    "labelstudio_tasks",
    "write_labelstudio",
    "read_labelstudio",
    "image_path_from_url",
    "LOCAL_FILES_PREFIX",
    "IMAGE_KEY",
    "POLYGON_CONTROL",
    "BRUSH_CONTROL",
]

LOCAL_FILES_PREFIX = "/data/local-files/?d="
IMAGE_KEY = "image"
POLYGON_CONTROL = "polygon"
BRUSH_CONTROL = "brush"


def labelstudio_config(labels: Sequence[str]) -> str:
    """The labelling config XML: one image, polygon and brush controls with ``labels``."""
    def label_tags() -> str:
        return "".join(
            f'\n    <Label value={quoteattr(n)} background="#{"{:02x}{:02x}{:02x}".format(*label_colour(i))}"/>'
            for i, n in enumerate(labels, start=1))

    return (
        "<View>\n"
        f'  <Image name="{IMAGE_KEY}" value="${IMAGE_KEY}" zoom="true"/>\n'
        f'  <PolygonLabels name="{POLYGON_CONTROL}" toName="{IMAGE_KEY}" strokeWidth="2" pointSize="small" '
        f'opacity="0.4">{label_tags()}\n  </PolygonLabels>\n'
        f'  <BrushLabels name="{BRUSH_CONTROL}" toName="{IMAGE_KEY}">{label_tags()}\n  </BrushLabels>\n'
        "</View>\n"
    )


def _result(region: Region, img: AnnotatedImage, shape: ShapeMode, n: int) -> list[dict[str, Any]]:
    mask2rle = require("label_studio_sdk.converter.brush").mask2rle
    mask = np.asarray(region.mask, dtype=bool)
    base = {"to_name": IMAGE_KEY, "original_width": int(img.width), "original_height": int(img.height),
            "image_rotation": 0}
    if region.score is not None:
        base["score"] = float(region.score)
    out = []
    if shape == "polygon":
        for k, poly in enumerate(mask_to_polygons(mask)):
            pts = [[round(float(x) * 100.0 / img.width, 4), round(float(y) * 100.0 / img.height, 4)] for x, y in poly]
            out.append({**base, "id": f"r{n}p{k}", "from_name": POLYGON_CONTROL, "type": "polygonlabels",
                        "value": {"points": pts, "closed": True, "polygonlabels": [region.label]}})
    else:
        rle = mask2rle(mask.astype(np.uint8) * 255)
        out.append({**base, "id": f"r{n}b", "from_name": BRUSH_CONTROL, "type": "brushlabels",
                    "value": {"format": "rle", "rle": [int(v) for v in rle], "brushlabels": [region.label]}})
    return out


def labelstudio_tasks(
    images: Sequence[AnnotatedImage],
    labels: Sequence[str],
    *,
    shape: ShapeMode = "polygon",
    url_prefix: str = LOCAL_FILES_PREFIX,
    model_version: str = "medseg",
) -> list[dict[str, Any]]:
    """Label Studio tasks (in order) whose ``predictions`` are the regions of ``images``.

    ``data.image`` is ``url_prefix + image.name``; ``data.medseg_order`` is the 0-based position
    (Label Studio lists tasks by id, which follows the import order).
    """
    tasks = []
    for i, img in enumerate(images):
        results: list[dict[str, Any]] = []
        for region in img.regions:
            if region.label not in labels:
                raise ExportError(f"region label {region.label!r} is not one of {list(labels)}", path=img.name)
            if np.asarray(region.mask).any():
                results += _result(region, img, shape, len(results))
        task: dict[str, Any] = {"data": {IMAGE_KEY: url_prefix + img.name, "medseg_order": i}}
        if results:
            pred: dict[str, Any] = {"model_version": model_version, "result": results}
            if img.score is not None:
                pred["score"] = float(img.score)
            task["predictions"] = [pred]
        tasks.append(task)
    return tasks


def write_labelstudio(
    images: Sequence[AnnotatedImage],
    labels: Sequence[str],
    path: str | PathLike[str],
    *,
    shape: ShapeMode = "polygon",
    url_prefix: str = LOCAL_FILES_PREFIX,
    model_version: str = "medseg",
) -> Path:
    """Write the tasks JSON (atomically) and ``<stem>.config.xml`` (the labelling config) beside it."""
    out = Path(path)
    tasks = labelstudio_tasks(images, labels, shape=shape, url_prefix=url_prefix, model_version=model_version)
    atomic_write_text(out, json.dumps(tasks) + "\n")
    atomic_write_text(out.with_name(out.name.split(".")[0] + ".config.xml"), labelstudio_config(labels))
    return out


def image_path_from_url(url: str) -> str:
    """The image path a Label Studio task URL points at (relative path or file name).

    ``/data/local-files/?d=sub/a.png`` -> ``sub/a.png``; ``/data/upload/3/1a2b3c4d-a.png`` ->
    ``a.png`` (Label Studio prefixes uploads with 8 hex digits); ``s3://b/x/a.png`` or
    ``http://host/x/a.png`` -> ``a.png``; anything else as given.
    """
    parsed = urlparse(url)
    query = parse_qs(parsed.query)
    if "d" in query:
        return unquote(query["d"][0])
    name = unquote(parsed.path).rsplit("/", 1)[-1] if (parsed.scheme or url.startswith("/data/")) else url
    if "/data/upload/" in parsed.path:
        name = re.sub(r"^[0-9a-f]{8}-", "", name)
    return name


def _region(res: dict[str, Any], where: str) -> Region | None:
    decode_rle = require("label_studio_sdk.converter.brush").decode_rle
    kind = res.get("type")
    value = res.get("value") or {}
    names = value.get(kind) if isinstance(kind, str) else None
    if kind not in ("polygonlabels", "brushlabels") or not names:
        return None
    try:
        w, h = int(res["original_width"]), int(res["original_height"])
        if kind == "polygonlabels":
            pts = np.asarray(value["points"], dtype=np.float64).reshape(-1, 2) * [w / 100.0, h / 100.0]
            mask = polygons_to_mask([pts], h, w)
        else:
            if value.get("format", "rle") != "rle":
                raise ValueError(f"brush format {value.get('format')!r}")
            mask = decode_rle(value["rle"]).reshape(h, w, 4)[:, :, 3] > 0
    except (KeyError, TypeError, ValueError) as e:
        raise InputError(f"malformed {kind} result ({e!r})", path=where) from e
    return Region(str(names[0]), mask, res.get("score"))


def _latest(annotations: list[dict[str, Any]]) -> dict[str, Any] | None:
    live = [a for a in annotations if not a.get("was_cancelled")]
    if not live:
        return None
    return max(live, key=lambda a: (str(a.get("updated_at") or a.get("created_at") or ""), a.get("id") or 0))


def read_labelstudio(path: str | PathLike[str]) -> list[AnnotatedImage]:
    """Read Label Studio's JSON export (list of tasks with ``annotations``), one image per task.

    ``name`` is the task's image URL (see :func:`image_path_from_url`); width/height come from the
    results (0 when a task has none); ``meta`` holds ``task_id``, ``annotated`` and ``order``.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError("Label Studio export not found", path=p, hint="export the project as 'JSON'")
    try:
        tasks = json.loads(p.read_text(encoding="utf-8-sig"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"not a JSON file ({e})", path=p) from e
    if isinstance(tasks, dict):
        tasks = [tasks]
    if not isinstance(tasks, list) or not all(isinstance(t, dict) and "data" in t for t in tasks):
        raise InputError("not a Label Studio JSON export (a list of tasks with 'data')", path=p,
                         hint="export the project as 'JSON' (not 'JSON-MIN' or 'COCO')")
    out = []
    for t in tasks:
        url = t["data"].get(IMAGE_KEY)
        if not isinstance(url, str):
            url = next((v for v in t["data"].values() if isinstance(v, str)), "")
        where = f"{p} (task {t.get('id')})"
        ann = _latest(t.get("annotations") or [])
        regions, w, h = [], 0, 0
        for res in (ann or {}).get("result", []):
            region = _region(res, where)
            if region is not None:
                regions.append(region)
                h, w = region.mask.shape
        out.append(AnnotatedImage(url, w, h, tuple(regions), meta={
            "task_id": t.get("id"), "annotated": ann is not None, "order": t["data"].get("medseg_order")}))
    return out
