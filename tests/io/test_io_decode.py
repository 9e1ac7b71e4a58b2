"""Compressed DICOM series: the fastest installed decoder, parallel worker processes, same voxels."""

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
    if "pyjpegls" in jls:  # CharLS: ~4x faster than pydicom's first choice, libjpeg
        assert decode.decoding_plugin(JPEGLSLossless) == "pyjpegls"
    assert decode.decoding_plugin(RLELossless) in pydicom.pixels.get_decoder(RLELossless).available_plugins
    assert decode.decoding_plugin("1.2.840.10008.1.2.1") == ""  # uncompressed: pydicom's own path


@pytest.mark.parametrize("uid", [JPEGLSLossless, RLELossless])
def test_compressed_series_reads_like_the_uncompressed_one_in_parallel(
    shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, uid: UID
) -> None:
    src = shared_data / "ct_lidc_nodules" / "LIDC-IDRI-0001" / "dicom"
    if not pydicom.pixels.get_encoder(uid).is_available:
        pytest.skip(f"no {uid.name} encoder installed")
    _compressed_copy(src, tmp_path / "c", uid, 8)
    plain_dir = tmp_path / "u"
    plain_dir.mkdir()
    for p in sorted(src.glob("*.dcm"))[:8]:
        (plain_dir / p.name).write_bytes(p.read_bytes())
    calls: list[int] = []
    real = decode.decode_files_into

    def spy(files, out):  # type: ignore[no-untyped-def]
        done = real(files, out)
        calls.append(len(done))
        return done

    monkeypatch.setattr(decode, "PARALLEL_MIN_FILES", 4)
    monkeypatch.setattr(decode, "_workers", lambda: 2)
    monkeypatch.setattr("medseg.io.dicom.decode_files_into", spy)
    compressed = read_image(tmp_path / "c")
    plain = read_image(plain_dir)
    assert calls[0] == 8  # all eight compressed slices decoded by the worker processes
    np.testing.assert_array_equal(compressed.array, plain.array)
    np.testing.assert_allclose(compressed.affine, plain.affine)


def test_worker_failures_fall_back_to_the_in_process_error(
    shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from medseg.errors import DicomInputError

    src = shared_data / "ct_lidc_nodules" / "LIDC-IDRI-0001" / "dicom"
    _compressed_copy(src, tmp_path / "c", RLELossless, 6)
    victim = sorted((tmp_path / "c").glob("*.dcm"))[2]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) - 20000])  # cut into the pixel data
    monkeypatch.setattr(decode, "PARALLEL_MIN_FILES", 4)
    monkeypatch.setattr(decode, "_workers", lambda: 2)
    with pytest.raises(DicomInputError):
        read_image(tmp_path / "c")
