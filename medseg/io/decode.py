"""Decoding compressed DICOM pixel data with the fastest installed decoder.

pydicom tries its decoding plugins in a fixed order, not the fastest first: for JPEG-LS it ends up in
pylibjpeg (libjpeg), which decodes a 512x512 CT slice ~4x slower than CharLS (pyjpegls). So
:func:`decoding_plugin` names the plugin to use per transfer syntax from a preference list made by
measurement (scripts/bench_io.py, docs/benchmarks.md), among the installed ones, and
:func:`decode_pixels` decodes with it through pydicom's own ``pixel_array`` machinery (same checks and
corrections; only the plugin is chosen), falling back to pydicom's choice if that plugin fails.

Slices are decoded in parallel by the series reader's thread pool (:mod:`medseg.io.dicom`): measured on
a 96-slice series, threads were as fast as (RLE, JPEG 2000) or ~3x faster than (JPEG-LS) a pool of
worker processes, so no processes are used.
"""

from __future__ import annotations

import logging

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import UID

log = logging.getLogger(__name__)

__all__ = ["decoding_plugin", "decode_pixels"]

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
