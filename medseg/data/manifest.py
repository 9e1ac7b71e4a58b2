"""Manifests: which image goes with which label, which patient it belongs to, train or val.

A manifest is a CSV or JSON file with the columns ``image, label[, split, patient_id]`` (``mask`` is
accepted for ``label``, so the ``index.csv`` of ``cxr_lung_covid19_gb`` works as it is). Relative
paths are resolved against ``root`` (or the manifest's own folder). JSON is either a list of
objects or ``{"items": [...]}``.

:func:`build_manifest` pairs images and masks by a folder convention:

* ``images/X.*`` <-> ``masks/X_lungs.png`` (chest X-ray folders such as ``cxr_lung_covid19_gb``);
* ``<case>/ct.nii.gz`` <-> ``<case>/*label*.nii.gz`` (CT case folders such as
  ``ct_lung_nsclc_radiomics``; the case folder name is the patient id).

:func:`split_entries` assigns ``train``/``val`` by patient (no patient in both) with a fixed seed;
an explicit ``split`` column wins.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from os import PathLike
from pathlib import Path
from typing import Any

from medseg.errors import ConfigError, InputError
from medseg.io.formats import stem_of

__all__ = [
    "ManifestEntry",
    "read_manifest",
    "write_manifest",
    "build_manifest",
    "split_entries",
    "load_entries",
    "SPLITS",
]

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class ManifestEntry:
    """One image (and its label map) of a data set.

    Attributes:
        image: absolute path of the image (file, or DICOM series folder).
        label: absolute path of the label map on the same grid (0 = background), or ``None``.
        split: ``"train"``, ``"val"``, ``"test"`` or ``None`` (assigned by :func:`split_entries`).
        patient_id: the patient the image belongs to (defaults to the image name).
    """

    image: Path
    label: Path | None = None
    split: str | None = None
    patient_id: str | None = None

    @property
    def patient(self) -> str:
        """``patient_id``, or the image file name when no patient id is known."""
        return self.patient_id if self.patient_id else _stem(self.image)


def _stem(path: Path) -> str:
    return stem_of(path)


def _resolve(value: str, base: Path) -> Path:
    p = Path(os.path.expanduser(value))
    return p if p.is_absolute() else (base / p)


def _rows_from_file(path: Path) -> list[dict[str, Any]]:
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise InputError(f"manifest is not valid JSON ({e})", path=path) from e
        if isinstance(data, dict):
            data = data.get("items")
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise InputError(
                "a JSON manifest must be a list of objects (or {\"items\": [...]})",
                path=path,
                hint='write e.g. [{"image": "a.png", "label": "a_mask.png"}]',
            )
        return data
    return list(csv.DictReader(io.StringIO(text)))


def read_manifest(
    path: str | PathLike[str], root: str | PathLike[str] | None = None, *, require_labels: bool = True
) -> list[ManifestEntry]:
    """Read a CSV/JSON manifest; paths are resolved against ``root`` (default: the manifest's folder).

    Raises:
        InputError: the file is missing or malformed, a column is missing, a split value is unknown,
            or a listed file does not exist (the row and the file are named).
    """
    p = Path(path)
    if not p.is_file():
        raise InputError("manifest not found", path=p, hint="create one with `medseg manifest FOLDER --out FILE`")
    base = Path(root) if root else p.parent
    rows = _rows_from_file(p)
    if not rows:
        raise InputError("manifest has no rows", path=p)
    entries = []
    for i, row in enumerate(rows, start=2 if p.suffix.lower() != ".json" else 0):
        where = f"{p} (row {i})"
        row = {str(k).strip().lower(): v for k, v in row.items() if k is not None}
        image = str(row.get("image") or "").strip()
        label = str(row.get("label") or row.get("mask") or "").strip()
        if not image:
            raise InputError("row has no 'image' value", path=where, hint="columns are image,label[,split,patient_id]")
        if require_labels and not label:
            raise InputError("row has no 'label' value", path=where, hint="every training image needs a label map")
        split = str(row.get("split") or "").strip().lower() or None
        if split is not None and split not in SPLITS:
            raise InputError(f"unknown split {split!r}", path=where, hint=f"use one of {list(SPLITS)} or leave it empty")
        entry = ManifestEntry(
            image=_resolve(image, base),
            label=_resolve(label, base) if label else None,
            split=split,
            patient_id=str(row.get("patient_id") or "").strip() or None,
        )
        for f in (entry.image, entry.label):
            if f is not None and not f.exists():
                raise InputError(f"listed file {f} does not exist", path=where, hint="fix the path or the manifest root")
        entries.append(entry)
    return entries


def write_manifest(entries: Sequence[ManifestEntry], out: str | PathLike[str]) -> Path:
    """Write ``entries`` as CSV (or JSON for a ``.json`` name), atomically.

    Files inside ``out``'s folder are written relative to it (the data folder stays movable), others
    as absolute paths.
    """
    from medseg.utils import atomic_write_text

    out = Path(out)
    base = out.parent.resolve()

    def rel(f: Path | None) -> str:
        if f is None:
            return ""
        full = f.resolve()
        return full.relative_to(base).as_posix() if full.is_relative_to(base) else str(full)

    rows = [
        {"image": rel(e.image), "label": rel(e.label), "split": e.split or "", "patient_id": e.patient_id or ""}
        for e in entries
    ]
    if out.suffix.lower() == ".json":
        atomic_write_text(out, json.dumps(rows, indent=1) + "\n")
    else:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=["image", "label", "split", "patient_id"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(out, buf.getvalue())
    return out


def _index_patient_ids(folder: Path) -> dict[Path, str]:
    """Patient ids from an ``index.csv`` with ``image`` and ``patient_id`` columns, if the folder has one."""
    index = folder / "index.csv"
    if not index.is_file():
        return {}
    with index.open(newline="", encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f))
    out = {}
    for row in rows:
        if row.get("image") and row.get("patient_id"):
            out[(folder / row["image"]).resolve()] = str(row["patient_id"]).strip()
    return out


def build_manifest(
    folder: str | PathLike[str],
    out: str | PathLike[str] | None = None,
    *,
    image_glob: str | None = None,
    label_glob: str | None = None,
) -> list[ManifestEntry]:
    """Pair images and label maps in ``folder`` by a naming convention; optionally write ``out``.

    Args:
        folder: the data folder.
        out: manifest file to write (``.csv`` or ``.json``); nothing is written when ``None``.
        image_glob: glob (relative to ``folder``) of the images. Default: ``images/*`` when the folder
            has an ``images/`` sub-folder, else ``*/ct.nii.gz``.
        label_glob: glob (relative to ``folder``) of each image's label, with ``{stem}`` (image name
            without extension) and ``{case}`` (the image's parent folder, relative to ``folder``).
            Default: ``masks/{stem}_lungs.png`` or ``{case}/*label*.nii.gz`` to match ``image_glob``.

    Patient ids come from an ``index.csv`` in ``folder`` (columns ``image, patient_id``) when there
    is one, else from the case folder name (``{case}`` layouts) or the image name. Images without a
    label are left out (logged); an image with several matching labels is an error.
    """
    root = Path(folder)
    if not root.is_dir():
        raise InputError("data folder not found", path=root, hint="pass the folder holding the images")
    if image_glob is None:
        if (root / "images").is_dir():
            image_glob, label_glob = "images/*", label_glob or "masks/{stem}_lungs.png"
        else:
            image_glob, label_glob = "*/ct.nii.gz", label_glob or "{case}/*label*.nii.gz"
    if label_glob is None:
        raise InputError("label_glob is needed with a custom image_glob", path=root, hint="e.g. 'masks/{stem}.png'")
    patient_ids = _index_patient_ids(root)
    case_layout = "{case}" in label_glob
    entries = []
    unpaired = []
    for image in sorted(root.glob(image_glob)):
        if not (image.is_file() or image.is_dir()) or image.name.startswith("."):
            continue
        case = image.parent.relative_to(root).as_posix()
        pattern = label_glob.replace("{stem}", _stem(image)).replace("{case}", case)
        labels = sorted(q for q in root.glob(pattern) if q != image)
        if not labels:
            unpaired.append(image)
            continue
        if len(labels) > 1:
            raise InputError(
                f"several label files match {pattern!r}: {', '.join(q.name for q in labels)}",
                path=image,
                hint="pass a more specific label_glob",
            )
        pid = patient_ids.get(image.resolve()) or (image.parent.name if case_layout else None)
        entries.append(ManifestEntry(image=image.resolve(), label=labels[0].resolve(), patient_id=pid))
    if unpaired:
        log.warning("%d image(s) in %s have no label and were left out: %s", len(unpaired), root,
                    ", ".join(p.name for p in unpaired[:5]) + (" ..." if len(unpaired) > 5 else ""))
    if not entries:
        raise InputError(
            f"no image/label pairs found with images {image_glob!r} and labels {label_glob!r}",
            path=root,
            hint="expected images/X.* with masks/X_lungs.png, or <case>/ct.nii.gz with <case>/*label*.nii.gz",
        )
    if out is not None:
        write_manifest(entries, out)
    return entries


def _patient_rank(seed: int, patient: str) -> str:
    return hashlib.sha256(f"{seed}:{patient}".encode()).hexdigest()


def split_entries(entries: Sequence[ManifestEntry], val_fraction: float, seed: int) -> list[ManifestEntry]:
    """Assign ``train``/``val`` to the entries without a split, by patient.

    Patients are ranked by ``sha256(f"{seed}:{patient}")`` and the first
    ``round(val_fraction * n_patients)`` (at least 1 when ``val_fraction > 0`` and there are two or
    more patients) go to validation, so a patient is never in both sets, the split is the same for
    the same seed on any machine, and adding patients moves no existing patient. Rows with an
    explicit split keep it, and the other rows of that patient follow it.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"must be in [0, 1), got {val_fraction}", path="data.val_fraction")
    explicit: dict[str, str] = {}
    for e in entries:
        if e.split is not None:
            explicit.setdefault(e.patient, e.split)
    free = sorted({e.patient for e in entries if e.split is None and e.patient not in explicit})
    n_val = int(round(val_fraction * len(free)))
    if val_fraction > 0 and n_val == 0 and len(free) >= 2:
        n_val = 1
    ranked = sorted(free, key=lambda p: _patient_rank(seed, p))
    val = set(ranked[:n_val])
    out = []
    for e in entries:
        if e.split is not None:
            out.append(e)
        elif e.patient in explicit:
            out.append(replace(e, split=explicit[e.patient]))
        else:
            out.append(replace(e, split="val" if e.patient in val else "train"))
    return out


def load_entries(data_cfg: Any) -> list[ManifestEntry]:
    """The entries of ``data.manifest`` (a manifest file, or a data folder paired by convention), split.

    Raises:
        ConfigError: ``data.manifest`` is empty or does not exist.
    """
    if not data_cfg.manifest:
        raise ConfigError(
            "no training data given",
            path="data.manifest",
            hint="set data.manifest to a manifest CSV/JSON or a data folder (e.g. --set data.manifest=data/cxr)",
        )
    target = Path(os.path.expanduser(data_cfg.manifest))
    if not target.exists():
        raise ConfigError(
            f"data.manifest {target} does not exist",
            path="data.manifest",
            hint="fix the path (relative paths are relative to the current folder)",
        )
    if target.is_dir():
        entries = build_manifest(target)
        if data_cfg.root:
            log.info("data.root is ignored when data.manifest is a folder")
    else:
        entries = read_manifest(target, data_cfg.root or None)
    return split_entries(entries, data_cfg.val_fraction, data_cfg.split_seed)

