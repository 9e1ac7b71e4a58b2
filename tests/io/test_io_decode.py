"""Compressed DICOM series: decoded with the fastest installed decoder, same voxels as uncompressed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import UID, JPEGLSLossless, RLELossless

from medseg.io import decode, read_image


def _compressed_copy(src: Path, dst: Path, uid: UID, n: int) -> None:
    dst.mkdir()
    for p in sorted(src.glob("*.dcm"))[:n]:
        ds = pydicom.dcmread(p)
        ds.compress(uid)
        ds.save_as(dst / p.name, enforce_file_format=True)


def test_fastest_installed_plugin_is_chosen() -> None:
    jls = pydicom.pixels.get_decoder(JPEGLSLossless).available_plugins
    if "pyjpegls" in jls:  # CharLS: ~4x faster than the libjpeg plugin pydicom ends up using
        assert decode.decoding_plugin(JPEGLSLossless) == "pyjpegls"
    assert decode.decoding_plugin(RLELossless) in pydicom.pixels.get_decoder(RLELossless).available_plugins
    assert decode.decoding_plugin("1.2.840.10008.1.2.1") == ""  # uncompressed: pydicom's own path


@pytest.mark.parametrize("uid", [JPEGLSLossless, RLELossless])
def test_compressed_series_reads_like_the_uncompressed_one(
    shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, uid: UID
) -> None:
    src = shared_data / "ct_lidc_nodules" / "LIDC-IDRI-0001" / "dicom"
    if not pydicom.pixels.get_encoder(uid).is_available:
        pytest.skip(f"no {uid.name} encoder installed")
    _compressed_copy(src, tmp_path / "c", uid, 8)  # 8 slices: the reader's thread pool is used
    used: list[str] = []
    real = pydicom.pixels.pixel_array

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        used.append(kwargs.get("decoding_plugin", ""))
        return real(*args, **kwargs)

    monkeypatch.setattr(pydicom.pixels, "pixel_array", spy)
    compressed = read_image(tmp_path / "c")
    plain = read_image(sorted(src.glob("*.dcm"))[:8])
    assert used == [decode.decoding_plugin(uid)] * 8
    np.testing.assert_array_equal(compressed.array, plain.array)
    np.testing.assert_allclose(compressed.affine, plain.affine)


def test_a_plugin_failure_falls_back_to_pydicoms_choice(shared_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ds = pydicom.dcmread(sorted((shared_data / "ct_lidc_nodules" / "LIDC-IDRI-0001" / "dicom").glob("*.dcm"))[0])
    expected = ds.pixel_array.copy()
    ds.compress(RLELossless)
    monkeypatch.setitem(decode._plugin_cache, str(RLELossless), "no-such-plugin")
    np.testing.assert_array_equal(decode.decode_pixels(ds), expected)
