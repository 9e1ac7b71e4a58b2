"""Decoding compressed DICOM pixel data fast: the fastest installed decoder, slices in parallel processes.

pydicom picks the first *available* plugin for a transfer syntax, not the fastest: for JPEG-LS it
takes pylibjpeg (libjpeg), which decodes a 512x512 CT slice ~4x slower than CharLS (pyjpegls), and for
RLE its own numpy decoder, ~10x slower than pylibjpeg-rle (measured in scripts/bench_io.py). So
:func:`decoding_plugin` names the plugin to use per transfer syntax from a preference list made by
measurement, among the installed ones, and :func:`decode_pixels` decodes with it (pydicom's
own ``pixel_array`` machinery: same checks and corrections, only the plugin is chosen).

The decoders hold Python's GIL (Cython/pyo3 wrappers without ``nogil``), so threads do not decode in
parallel; :func:`decode_files_into` spreads the files of a large compressed series over a pool of
worker processes that write straight into shared memory (hand-written: no library offers a parallel
DICOM series decode into one array). The pool is created on first use and reused for later series
(a batch of studies pays the start-up once).
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from multiprocessing.shared_memory import SharedMemory
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID

log = logging.getLogger(__name__)

__all__ = ["decoding_plugin", "decode_pixels", "decode_files_into", "PARALLEL_MIN_FILES"]

_JPEG_LS = ("pyjpegls", "gdcm", "pylibjpeg")
_J2K = ("pylibjpeg", "gdcm", "pillow")
_JPEG = ("pylibjpeg", "gdcm", "pillow")
#: transfer syntax -> decoding plugins, fastest first (measured; see the module docstring)
_PREFERENCE: dict[str, tuple[str, ...]] = {
    "1.2.840.10008.1.2.4.80": _JPEG_LS,  # JPEG-LS lossless
    "1.2.840.10008.1.2.4.81": _JPEG_LS,  # JPEG-LS near-lossless
    "1.2.840.10008.1.2.4.90": _J2K,  # JPEG 2000 lossless
    "1.2.840.10008.1.2.4.91": _J2K,  # JPEG 2000
    "1.2.840.10008.1.2.4.201": _J2K,  # HTJ2K lossless
    "1.2.840.10008.1.2.4.202": _J2K,  # HTJ2K lossless RPCL
    "1.2.840.10008.1.2.4.203": _J2K,  # HTJ2K
    "1.2.840.10008.1.2.5": ("pylibjpeg", "gdcm", "pydicom"),  # RLE lossless
    "1.2.840.10008.1.2.4.57": _JPEG,  # JPEG lossless
    "1.2.840.10008.1.2.4.70": _JPEG,  # JPEG lossless SV1
}

#: a compressed series with at least this many files is decoded by worker processes
PARALLEL_MIN_FILES = 48

_plugin_cache: dict[str, str] = {}


def decoding_plugin(transfer_syntax: str) -> str:
    """The fastest installed pydicom decoding plugin for ``transfer_syntax`` ("" = pydicom's choice)."""
    uid = str(transfer_syntax)
    if uid in _plugin_cache:
        return _plugin_cache[uid]
    plugin = ""
    if uid in _PREFERENCE:
        try:
            available = set(pydicom.pixels.get_decoder(UID(uid)).available_plugins)
        except (NotImplementedError, ValueError):
            available = set()
        plugin = next((p for p in _PREFERENCE[uid] if p in available), "")
    _plugin_cache[uid] = plugin
    return plugin


def decode_pixels(ds: Dataset, index: int | None = None) -> np.ndarray:
    """``ds``'s pixel data (all frames, or frame ``index``) decoded with the fastest installed plugin.

    Falls back to pydicom's own choice when that plugin fails on the file.
    """
    uid = str(ds.file_meta.TransferSyntaxUID) if "TransferSyntaxUID" in getattr(ds, "file_meta", {}) else ""
    plugin = decoding_plugin(uid) if uid else ""
    if plugin:
        try:
            return np.asarray(pydicom.pixels.pixel_array(ds, index=index, decoding_plugin=plugin))
        except Exception as e:  # noqa: BLE001 - any plugin failure: let pydicom try the others
            log.debug("%s failed (%s: %s); trying pydicom's default decoder", plugin, type(e).__name__, e)
    return np.asarray(ds.pixel_array if index is None else pydicom.pixels.pixel_array(ds, index=index))


def _read_dataset(path: str, transfer_syntax: str) -> Dataset:
    ds = pydicom.dcmread(path, force=True)
    if not getattr(ds, "file_meta", None) or "TransferSyntaxUID" not in ds.file_meta:
        ds.file_meta = ds.file_meta if getattr(ds, "file_meta", None) else FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = UID(transfer_syntax)
    return ds


def _decode_job(shm_name: str, shape: tuple[int, ...], dtype: str, jobs: list[tuple[int, str, str]]) -> list[int]:
    """Worker: decode ``(slice index, path, transfer syntax)`` jobs into the shared volume; failed indices back."""
    shm = SharedMemory(name=shm_name)
    failed: list[int] = []
    try:
        out: np.ndarray = np.ndarray(shape, dtype=np.dtype(dtype), buffer=shm.buf)
        for k, path, uid in jobs:
            try:
                arr = decode_pixels(_read_dataset(path, uid))
                if arr.shape != out.shape[1:]:
                    failed.append(k)
                    continue
                out[k] = arr
            except Exception:  # noqa: BLE001 - the caller decodes it again in-process for the real error
                failed.append(k)
        del out
    finally:
        shm.close()
    return failed


_pool: ProcessPoolExecutor | None = None
_pool_lock = threading.Lock()


def _workers() -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(8, cores))


def _get_pool() -> ProcessPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            # spawn: safe in a process that already runs threads (torch, the reader's thread pool)
            _pool = ProcessPoolExecutor(max_workers=_workers(), mp_context=get_context("spawn"))
            atexit.register(_shutdown_pool)
        return _pool


def _shutdown_pool() -> None:
    global _pool
    with _pool_lock:
        if _pool is not None:
            _pool.shutdown(wait=False, cancel_futures=True)
            _pool = None


def decode_files_into(files: Sequence[tuple[int, Path, str]], out: np.ndarray) -> set[int]:
    """Decode single-frame DICOM files into ``out[k]`` in parallel worker processes.

    Args:
        files: ``(k, path, transfer syntax UID)`` per file; ``out[k]`` receives its pixels.
        out: ``(n, rows, cols)`` array, C order.

    Returns:
        the indices ``k`` decoded; the others (too few files or cores to be worth it, a worker
        failure, a file that does not decode to ``(rows, cols)``) are left to the caller, which
        decodes them in-process and reports the real error.
    """
    if len(files) < PARALLEL_MIN_FILES or _workers() < 2 or out.ndim != 3 or not out.flags.c_contiguous:
        return set()
    shm = SharedMemory(create=True, size=max(1, out.nbytes))
    shared: np.ndarray | None = None
    try:
        shared = np.ndarray(out.shape, dtype=out.dtype, buffer=shm.buf)
        n_jobs = _workers() * 4
        jobs = [[(k, str(p), str(u)) for k, p, u in files[i::n_jobs]] for i in range(n_jobs)]
        pool = _get_pool()
        futures = [pool.submit(_decode_job, shm.name, out.shape, out.dtype.str, j) for j in jobs if j]
        failed: set[int] = set()
        for f in futures:
            failed.update(f.result())
        done = {k for k, _, _ in files} - failed
        if len(done) == out.shape[0]:
            np.copyto(out, shared)
        else:
            for k in done:
                out[k] = shared[k]
        return done
    except (OSError, RuntimeError) as e:  # no /dev/shm, a broken pool, ...: decode in-process instead
        log.debug("parallel decoding unavailable (%s: %s)", type(e).__name__, e)
        if isinstance(e, RuntimeError):
            _shutdown_pool()
        return set()
    finally:
        shared = None  # release the buffer before closing the shared memory
        shm.close()
        shm.unlink()
