#!/usr/bin/env python
"""Benchmark: prediction end to end vs one plain network pass vs the classic labeller (issue #17).

In one run, side by side, each measurement in its own subprocess (wall time + peak RSS from
``ru_maxrss``), on

* a 512x512x300 CT built from the real LUNG1-002 slices (``../shared/data``; the 111 slices
  mirrored back and forth to 300, written as an uncompressed NIfTI),
* the real planning CTs LUNG1-002 and LUNG1-003 (512x512x111 / x107, 3 mm),
* a real 2000x2000 chest X-ray (``cxr_lung_v7_covid``), as its JPEG and as a DICOM radiograph built
  from its pixels (16-bit, uncompressed, 0.2 mm; header from the SIIM sample in ``cxr_dicom``),

it times

* ``e2e``: ``read_image`` -> ``Predictor.predict`` (shipped model, current defaults) -> labels written
  (NIfTI; for the JPEG radiograph label PNG + overlay PNG; for the DICOM radiograph DICOM-SEG +
  overlay PNG); the model load is reported apart;
* ``sliding``: the same with the previous default grid (``infer.window=sliding``: overlapping
  ``data.image_size`` windows at the training spacing, Gaussian blending) - the "before" (on LUNG1-003
  only unless ``--sliding-all``);
* ``plain``: the plain pass of the same network: one 256x256 forward per slice (the slice resized
  to 256x256), fp32, batch 8, channels_last, inputs prepared before the clock starts; and
  ``plain_grid``: one forward per slice on the grid ``e2e`` uses (when it is not 256x256);
* ``plain_bf16`` / ``plain_contiguous``: the plain pass under bf16 autocast / without channels_last
  (the precision and memory-format choice, measured on this machine);
* ``classic``: ``medseg.labelling.autolabel_ct_lungs`` on the read image;

and the validation Dice of the shipped CT model on LUNG1-003 against its RTSTRUCT lung contours
(as in scripts/eval_shipped.py) for ``e2e`` and ``sliding``.

Usage::

    nice -n 10 python scripts/bench_predict.py [--slices 300] [--sliding-all] [--no-write]
    python scripts/bench_predict.py --device cuda          # on a GPU machine: same script, unchanged

Writes a ``## Prediction speed`` section into ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = (REPO / ".." / "shared" / "data").resolve()
NSCLC = SHARED / "ct_lung_nsclc_radiomics"
CXR = SHARED / "cxr_lung_v7_covid" / "images" / "00870a9c.jpg"
DOC = REPO / "docs" / "benchmarks.md"


# -- worker side (one measurement per process) --------------------------------------------------


def _rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _reference_labels(ct: Any) -> np.ndarray:
    from medseg.io import read_rtstruct
    from medseg.io.rtstruct import read_slice_uids

    case = NSCLC / "LUNG1-003"
    labels, names = read_rtstruct(case / "rtstruct.dcm", ct, rois=["right lung", "left lung"],
                                  slice_uids=read_slice_uids(case / "slices.csv"))
    by_name = {n: v for v, n in names.items()}
    ref = np.zeros(ct.shape, np.uint8)
    ref[labels.array == by_name["right lung"]] = 1
    ref[labels.array == by_name["left lung"]] = 2
    return ref


def _dice(pred: np.ndarray, ref: np.ndarray) -> list[float]:
    from medseg.metrics import dice

    return [dice(pred == v, ref == v) for v in (1, 2)]


def work_e2e(path: Path, task: str, device: str, overrides: list[str], out: Path, dice_ref: bool,
             warm: bool = False) -> dict[str, Any]:
    from medseg.config import apply_overrides, config_from_dict, config_to_dict
    from medseg.infer import Predictor
    from medseg.io import read_image, write_image

    t = time.perf_counter()
    predictor = Predictor.from_checkpoint(task=task, device=device)
    if overrides:
        cfg = config_from_dict(apply_overrides(config_to_dict(predictor.config), overrides))
        predictor = Predictor(predictor.model, cfg, device=device, name=predictor.name)
    load_s = time.perf_counter() - t
    rss_model = _rss_gib()
    if warm:  # the same case once, untimed: what every case after the first of a batch sees
        (out / "warm").mkdir(exist_ok=True)
        _e2e_once(predictor, path, task, out / "warm")
    t = time.perf_counter()
    image = read_image(path, modality="CT" if task == "ct" else None)
    t_read = time.perf_counter() - t
    pred = predictor.predict(image)
    _sync(device)
    t_pred = time.perf_counter() - t - t_read
    if task == "ct":
        write_image(pred.labels, out / "labels.nii.gz")
    else:
        from medseg.export import overlay_png
        from medseg.io import write_label_map

        if image.source.is_dicom:
            write_label_map(pred.labels, out / "seg.dcm", source=image, label_names=pred.label_names)
        else:
            write_image(pred.labels, out / "labels.png")
        overlay_png(image, pred.labels, out / "overlay.png", label_names=pred.label_names)
    total = time.perf_counter() - t
    res: dict[str, Any] = {"seconds": total, "read_s": t_read, "predict_s": t_pred, "write_s": total - t_read - t_pred,
                           "load_s": load_s, "rss_gib": _rss_gib(), "rss_model_gib": rss_model,
                           "grid": _grid(predictor, image), "uncertainty": pred.uncertainty}
    if dice_ref:
        res["dice"] = _dice(pred.labels.array, _reference_labels(image))
    return res


def _e2e_once(predictor: Any, path: Path, task: str, out: Path) -> None:
    from medseg.export import overlay_png
    from medseg.io import read_image, write_image, write_label_map

    image = read_image(path, modality="CT" if task == "ct" else None)
    pred = predictor.predict(image)
    if task == "ct":
        write_image(pred.labels, out / "labels.nii.gz")
        return
    if image.source.is_dicom:
        write_label_map(pred.labels, out / "seg.dcm", source=image, label_names=pred.label_names)
    else:
        write_image(pred.labels, out / "labels.png")
    overlay_png(image, pred.labels, out / "overlay.png", label_names=pred.label_names)


def _grid(predictor: Any, image: Any) -> str:
    from medseg.data.preprocess import ct_grid_shape

    cfg = predictor.config
    if image.ndim == 2:
        return "x".join(str(s) for s in cfg.data.image_size)
    sp = cfg.infer.spacing_mm if cfg.infer.spacing_mm > 0 else None
    g = ct_grid_shape(image, cfg, sp)
    return f"{g[0]}x{g[1]} ({'sliding' if not predictor._whole(g) else 'whole'})"


def work_plain(path: Path, task: str, device: str, size: list[int] | None, precision: str,
               channels_last: bool, limit: int = 0) -> dict[str, Any]:
    """One forward per slice of the shipped network; only the forwards (+ softmax/argmax) are timed.

    Inputs are prepared chunk by chunk outside the clock (CT: ``prepare_slab`` on the ``size`` grid, i.e.
    each slice resized to ``size``; radiograph: ``prepare_inputs`` at ``size``).
    """
    import contextlib

    import torch

    from medseg.data.preprocess import ct_grid_shape, prepare_inputs, prepare_slab
    from medseg.infer import Predictor
    from medseg.io import read_image

    predictor = Predictor.from_checkpoint(task=task, device=device)
    cfg = predictor.config
    image = read_image(path, modality="CT" if task == "ct" else None)
    if size is None:  # the grid the Predictor uses, padded to a multiple of 32
        g = ct_grid_shape(image, cfg, cfg.infer.spacing_mm or None) if task == "ct" else tuple(cfg.data.image_size)
        size = [g[0] + (-g[0] % 32), g[1] + (-g[1] % 32)]
    grid = (int(size[0]), int(size[1]))
    model = predictor.model.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    amp = None if precision == "fp32" else (torch.bfloat16 if precision == "bf16" else torch.float16)

    def ctx() -> Any:
        return torch.autocast(device_type=torch.device(device).type, dtype=amp) if amp else contextlib.nullcontext()

    def chunks() -> Any:
        if task == "cxr":
            cfg.data.image_size = list(grid)
            yield prepare_inputs(image, cfg).tensor
            return
        z_count = min(image.shape[0], limit) if limit else image.shape[0]
        for z0 in range(0, z_count, 16):
            yield prepare_slab(image, cfg, z0, min(z_count, z0 + 16), grid=grid)

    bs, dt, n = 8, 0.0, 0
    with torch.inference_mode():
        warm = next(iter(chunks()))[:bs].to(device)
        with ctx():
            model(warm.contiguous(memory_format=torch.channels_last) if channels_last else warm)
        for x in chunks():
            x = x.to(device)
            _sync(device)
            t = time.perf_counter()
            for s in range(0, x.shape[0], bs):
                b = x[s : s + bs]
                if channels_last:
                    b = b.contiguous(memory_format=torch.channels_last)
                with ctx():
                    logits = model(b)
                torch.softmax(logits.float(), dim=1).argmax(1).cpu()
            _sync(device)
            dt += time.perf_counter() - t
            n += x.shape[0]
    return {"seconds": dt, "slices": n, "size": "x".join(map(str, grid)), "rss_gib": _rss_gib()}


def work_classic(path: Path) -> dict[str, Any]:
    from medseg.io import read_image
    from medseg.labelling.autolabel import autolabel_ct_lungs

    t = time.perf_counter()
    image = read_image(path, modality="CT")
    t_read = time.perf_counter() - t
    labels = autolabel_ct_lungs(image)
    res = {"seconds": time.perf_counter() - t, "read_s": t_read, "rss_gib": _rss_gib()}
    if path.parent.name == "LUNG1-003":
        res["dice"] = _dice(labels.array, _reference_labels(image))
    return res


def work_precision(device: str, repeats: int = 7) -> dict[str, Any]:
    """fp32 vs bf16/fp16 autocast vs contiguous memory, interleaved forwards of one 8x3x256x256 batch
    (the shipped CT network) in one process, so a busy machine slows all three alike; medians."""
    import statistics

    import torch

    from medseg.infer import Predictor

    model = Predictor.from_checkpoint(task="ct", device=device).model.eval()
    x = torch.randn(8, 3, 256, 256, device=device).contiguous(memory_format=torch.channels_last)
    low = torch.float16 if device.startswith("cuda") else torch.bfloat16
    times: dict[str, list[float]] = {"fp32": [], "low": [], "contiguous": []}

    def run(kind: str) -> None:
        _sync(device)
        t = time.perf_counter()
        if kind == "low":
            with torch.autocast(device_type=torch.device(device).type, dtype=low):
                model(x)
        elif kind == "contiguous":
            model.to(memory_format=torch.contiguous_format)
            model(x.contiguous())
        else:
            model(x)
        _sync(device)
        times[kind].append(time.perf_counter() - t)
        model.to(memory_format=torch.channels_last)

    with torch.inference_mode():
        for kind in times:  # warm-up
            run(kind)
        for v in times.values():
            v.clear()
        for _ in range(repeats):
            for kind in times:
                run(kind)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"fp32_s": med["fp32"], "low_s": med["low"], "contiguous_s": med["contiguous"],
            "low": str(low).replace("torch.", ""), "low_over_fp32": med["low"] / med["fp32"],
            "contiguous_over_channels_last": med["contiguous"] / med["fp32"]}


def worker(args: argparse.Namespace) -> int:
    spec = json.loads(args.worker)
    path, task, device = Path(spec["path"]), spec["task"], spec["device"]
    import torch

    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    with tempfile.TemporaryDirectory(prefix="medseg_bench_predict_") as tmp:
        kind = spec["kind"]
        if kind in ("e2e", "sliding"):
            over = ["infer.window=sliding"] if kind == "sliding" else []
            res = work_e2e(path, task, device, over, Path(tmp), spec.get("dice", False), spec.get("warm", False))
        elif kind.startswith("plain"):
            res = work_plain(path, task, device, spec.get("size"), spec.get("precision", "fp32"),
                             spec.get("channels_last", True), spec.get("limit", 0))
        elif kind == "classic":
            res = work_classic(path)
        elif kind == "precision":
            res = work_precision(device)
        else:
            raise SystemExit(f"unknown kind {kind}")
    print("RESULT " + json.dumps(res))
    return 0


# -- driver --------------------------------------------------------------------------------------


def build_ct(out: Path, n_slices: int) -> Path:
    """A 512x512xN CT from the real LUNG1-002 slices, mirrored back and forth along z."""
    from medseg.io import read_image, write_image

    src = read_image(NSCLC / "LUNG1-002" / "ct.nii.gz", modality="CT")
    z = src.shape[0]
    period = 2 * z - 2
    idx = [(k % period) if (k % period) < z else period - (k % period) for k in range(n_slices)]
    arr = np.ascontiguousarray(src.array[idx])
    from medseg.image import Image

    return write_image(Image(arr, src.affine, modality="CT"), out / f"ct_{n_slices}.nii")


def build_cxr_dicom(out: Path) -> Path:
    """The 2000x2000 film as a 16-bit uncompressed DICOM radiograph (0.2 mm), SIIM sample header."""
    import pydicom
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    from medseg.io import read_image

    pixels = np.asarray(read_image(CXR).array)
    ds = pydicom.dcmread(SHARED / "cxr_dicom" / "siim_cr_chest_pa.dcm")
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SeriesInstanceUID, ds.StudyInstanceUID = generate_uid(), generate_uid()
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PhotometricInterpretation, ds.SamplesPerPixel = "MONOCHROME2", 1
    ds.PixelSpacing = [0.2, 0.2]
    ds.PatientOrientation = ["L", "F"]
    ds.PixelData = (pixels.astype(np.float32) * (4095.0 / max(1.0, float(pixels.max())))).astype(np.uint16).tobytes()
    path = out / "cxr_2000.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


def run_one(spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO)
    wall = time.perf_counter() - t
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            res = json.loads(line[7:])
            res["process_s"] = wall
            return res
    sys.stderr.write(proc.stderr[-3000:])
    return {"error": (proc.stderr.strip().splitlines() or ["?"])[-1]}


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "unknown"


def machine(device: str) -> str:
    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    what = f"{cpu_model()}, {cores} cores, torch {torch.__version__}, {torch.get_num_threads()} threads"
    if device.startswith("cuda") and torch.cuda.is_available():
        what += f", GPU {torch.cuda.get_device_name(0)}"
    return what


def _fmt(x: Any, unit: str = "", digits: int = 1) -> str:
    return "-" if x is None else f"{x:.{digits}f}{unit}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--slices", type=int, default=300)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--sliding-all", action="store_true",
                    help="the 'sliding' (before) run on every CT, not only LUNG1-003 (slow: ~10x e2e)")
    ap.add_argument("--no-sliding", action="store_true", help="no 'sliding' (before) run at all")
    ap.add_argument("--all-variants", action="store_true",
                    help="plain-grid / bf16 / contiguous passes on every case, not only LUNG1-003")
    ap.add_argument("--cases", default="big,LUNG1-003,LUNG1-002,cxr,cxr-dicom")
    ap.add_argument("--timeout", type=float, default=3600)
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--precision", action="store_true",
                    help="only the interleaved fp32 / bf16 (fp16 on CUDA) / contiguous comparison")
    args = ap.parse_args(argv)
    if args.worker:
        return worker(args)
    if args.precision:
        res = run_one({"kind": "precision", "path": "", "task": "ct", "device": args.device}, args.timeout)
        print(json.dumps(res))
        print(f"machine: {machine(args.device)}; load average {os.getloadavg()[0]:.1f}")
        return 0

    dev = args.device
    results: list[tuple[str, str, dict[str, Any]]] = []
    t_all = time.perf_counter()
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="medseg_bench_ct_") as tmp:
        cases: list[tuple[str, Path, str]] = []
        for name in args.cases.split(","):
            if name == "big":
                cases.append((f"CT 512x512x{args.slices} (LUNG1-002 slices)", build_ct(Path(tmp), args.slices), "ct"))
            elif name == "cxr":
                cases.append(("CXR 2000x2000 (v7 covid 00870a9c)", CXR, "cxr"))
            elif name == "cxr-dicom":
                cases.append(("CXR 2000x2000 DICOM (same film) -> SEG", build_cxr_dicom(Path(tmp)), "cxr"))
            else:
                cases.append((f"CT {name} (512x512, 3 mm)", NSCLC / name / "ct.nii.gz", "ct"))
        for label, path, task in cases:
            base = {"path": str(path), "task": task, "device": dev}
            val = path.parent.name == "LUNG1-003"
            kinds: list[tuple[str, dict[str, Any]]] = [
                ("e2e", {"kind": "e2e", "dice": val}),
                ("plain 256", {"kind": "plain", "size": [256, 256]}),
            ]
            if task == "cxr":  # a radiograph is dominated by first-call costs (imports, allocations)
                kinds.insert(1, ("e2e warm", {"kind": "e2e", "warm": True}))
            if task == "ct" and (val or args.all_variants):
                kinds.append(("plain grid", {"kind": "plain_grid"}))
            if not args.no_sliding and (path.parent.name == "LUNG1-003" or args.sliding_all):
                kinds.append(("sliding (before)", {"kind": "sliding", "dice": path.parent.name == "LUNG1-003"}))
            if val or args.all_variants:  # precision / memory format: the first 48 slices suffice
                kinds.append(("plain 256 (48 slices)", {"kind": "plain", "size": [256, 256], "limit": 48}))
                kinds.append(("plain 256 bf16 (48 slices)", {"kind": "plain_bf16", "size": [256, 256], "limit": 48,
                                                             "precision": "fp16" if dev.startswith("cuda") else "bf16"}))
                kinds.append(("plain 256 contiguous (48 slices)", {"kind": "plain_contiguous", "size": [256, 256],
                                                                   "channels_last": False, "limit": 48}))
            if task == "ct":
                kinds.append(("classic autolabel", {"kind": "classic"}))
            for name, extra in kinds:
                res = run_one({**base, **extra}, args.timeout)
                results.append((label, name, res))
                print(f"{label:40} {name:22} {json.dumps(res)}", flush=True)
    load_end = os.getloadavg()[0]

    table = ["| case | run | wall s | read / predict / write s | peak RSS GiB | grid / input | Dice R, L (LUNG1-003) |",
             "|---|---|---:|---:|---:|---|---|"]
    for label, name, r in results:
        if "error" in r:
            table.append(f"| {label} | {name} | error: {r['error']} | | | | |")
            continue
        what = r.get("grid") or f"{r.get('slices', '')} x {r.get('size', '')}"
        dice = ", ".join(f"{d:.4f}" for d in r["dice"]) if "dice" in r else ""
        parts = (" / ".join(_fmt(r[k], digits=2) for k in ("read_s", "predict_s", "write_s"))
                 if "predict_s" in r else "-")
        table.append(f"| {label} | {name} | {_fmt(r['seconds'], digits=2)} | {parts} "
                     f"| {_fmt(r['rss_gib'], digits=2)} | {what} | {dice} |")
    ratios = []
    for label in dict.fromkeys(lbl for lbl, _, _ in results):
        rs = {n: r for lbl, n, r in results if lbl == label and "error" not in r}
        if "e2e" in rs and "plain 256" in rs:
            line = (f"- {label}: end to end / plain 256 pass = **{rs['e2e']['seconds'] / rs['plain 256']['seconds']:.2f}**")
            if "e2e warm" in rs:
                line += f" (first call), **{rs['e2e warm']['seconds'] / rs['plain 256']['seconds']:.2f}** warm"
            if "plain grid" in rs:
                line += f", / plain pass on its grid = **{rs['e2e']['seconds'] / rs['plain grid']['seconds']:.2f}**"
            if "sliding (before)" in rs:
                line += f", before / now = **{rs['sliding (before)']['seconds'] / rs['e2e']['seconds']:.1f}x**"
            ref = rs.get("plain 256 (48 slices)")
            if ref and "plain 256 bf16 (48 slices)" in rs:
                line += (f"; {'fp16' if dev.startswith('cuda') else 'bf16'} / fp32 plain = "
                         f"{rs['plain 256 bf16 (48 slices)']['seconds'] / ref['seconds']:.2f}")
            if ref and "plain 256 contiguous (48 slices)" in rs:
                line += (f"; contiguous / channels_last = "
                         f"{rs['plain 256 contiguous (48 slices)']['seconds'] / ref['seconds']:.2f}")
            ratios.append(line)
    text = "\n".join(table) + "\n\n" + "\n".join(ratios)
    env = (f"Machine: {machine(dev)}; device {dev}; load average {load_start:.1f} at the start, {load_end:.1f} "
           f"at the end (shared machine: compare ratios within this run); total {time.perf_counter() - t_all:.0f} s.")
    print("\n" + text + "\n\n" + env)
    if not args.no_write:
        section = (
            "## Prediction speed\n\n"
            "`nice -n 10 python scripts/bench_predict.py` (issue #17): each row is its own process (peak RSS = "
            "`ru_maxrss`). *e2e* = `read_image` -> `Predictor.predict` (shipped model, defaults) -> labels written "
            "(NIfTI; JPEG radiograph: label PNG + overlay PNG; DICOM radiograph: DICOM-SEG + overlay PNG), model load excluded, "
            "the first call of the process (*e2e warm*: after the same case once, as every later case of a batch); *sliding (before)* = the same "
            "with the previous grid (`infer.window=sliding`: overlapping 256x256 windows at 1 mm, Gaussian "
            "blending); *plain* = the network alone, one forward per slice, fp32, batch 8, channels_last, "
            "inputs ready beforehand (*plain 256*: the slice resized to 256x256; *plain grid*: on the grid e2e "
            "uses); *classic* = `medseg.labelling.autolabel_ct_lungs` incl. reading. Dice against the RTSTRUCT "
            "lung contours of LUNG1-003 (as scripts/eval_shipped.py; the shipped `ct_lung` is trained on both NSCLC "
            "CTs, so this Dice is in sample: it shows that the grid (e2e vs sliding) does not change the result, "
            "the model's out-of-sample quality is its cross-validation in the model card).\n\n"
            + text + "\n\n" + env + "\n"
        )
        _write_doc(section, dev)
        print(f"wrote {DOC}")
    return 0


def _write_doc(section: str, device: str) -> None:
    title = "## Prediction speed" if not device.startswith("cuda") else "## Prediction speed (GPU)"
    section = section.replace("## Prediction speed", title, 1)
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n\nNumbers measured by the scripts in `scripts/`.\n"
    # up to the next section or subsection: the hand-written "### How the defaults were chosen" stays
    pattern = re.compile(rf"^{re.escape(title)}\n.*?(?=^##+ |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    DOC.write_text(text.rstrip("\n") + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
