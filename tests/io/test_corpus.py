"""Real-world DICOM corpus (files no one here wrote): pydicom's test files, the pydicom-data package
and every DICOM file and series folder under ../shared/data.

* Every item goes through ``read_image``: a ``MedsegError`` is the only exception allowed, and each
  refusal must be one listed below (``REFUSED``) with its reason, so a new refusal fails.
* Every SEG of the corpus goes through ``read_dicom_seg``.
* A fixed subset (``SEG_CHAIN``, one item per kind of header: series with an empty charset,
  projection radiographs, 2-D with only a frame of reference, empty Slice Thickness, enhanced
  multi-frame, big-endian and deflated sources, oblique MR, ...) gets the whole chain of
  ``scripts/corpus_seg.py``: ``write_dicom_seg``, dciodvfy (no error the source lacks) and
  voxel-exact read-back by medseg, highdicom and dcmqi. The full chain over every image is
  ``python scripts/corpus_seg.py`` (numbers in docs/interop.md).
"""

from __future__ import annotations

import importlib.util
import logging
import re
import shutil
import sys
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from medseg.errors import DicomInputError, MedsegError
from medseg.io import read_dicom_seg, read_image

REPO = Path(__file__).resolve().parents[2]


def _load_script():
    spec = importlib.util.spec_from_file_location("corpus_seg", REPO / "scripts" / "corpus_seg.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["corpus_seg"] = module  # dataclasses look the module up by name
    spec.loader.exec_module(module)
    return module


corpus = _load_script()

# Why medseg refuses an item: the reason's pattern (checked against the MedsegError text).
REASONS = {
    "colour": r"colour",
    "no pixel data": r"ends before its pixel data|no pixel data",
    "not an image": r"not an image",
    "multi-frame, not a volume": r"multi-frame",
    "several series": r"image series found",
    "missing slices": r"missing at",
    "mixed orientations": r"different orientations",
    "invalid header value": r"outside|is not a number|is missing or empty",
    "undecodable pixel data": r"cannot be decoded|truncated|need .* bytes|ends inside",
}


def _expected_refusals() -> dict[str, str]:
    """Every refusal of the corpus, by design: item -> reason (``tests/io/corpus_refusals.txt``).

    A refusal not listed there fails the test, and so does a listed item that now reads (update
    the list and docs/interop.md).
    """
    out: dict[str, str] = {}
    for line in Path(__file__).with_name("corpus_refusals.txt").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            reason, item = (part.strip() for part in line.split("|", 1))
            assert reason in REASONS, f"unknown reason {reason!r} in corpus_refusals.txt"
            out[item] = reason
    return out


# One item per kind of header for the full chain in CI (the script runs every image).
SEG_CHAIN = [
    "shared/dicom_seg_interop/dcmqi/ct-3slice/",  # GE CT series, empty SpecificCharacterSet
    "shared/dicom_seg_interop/pydicom_77654033/CR1/6154.dcm",  # CR, MONOCHROME1, no frame of reference
    "shared/dicom_seg_interop/highdicom/dx_image.dcm",  # DX, ImagerPixelSpacing
    "pydicom/JPEG2000.dcm",  # 2-D with FrameOfReferenceUID but no ImageOrientationPatient
    "pydicom-data/explicit_VR-UN.dcm",  # CT with an empty SliceThickness
    "pydicom-data/eCT_Supplemental.dcm",  # enhanced multi-frame CT
    "pydicom/MR_small_bigendian.dcm",  # Explicit VR Big Endian source
    "pydicom/image_dfl.dcm",  # Deflated Explicit VR Little Endian source
    "pydicom/dicomdirtests/98892003/MR700/4467",  # oblique MR slice
    "pydicom/dicomdirtests/98892001/CT2N/6293",  # sagittal slice
    "pydicom/CT_small.dcm",
]
# SEGs that write_dicom_seg refuses by design (the source cannot be referred to): item -> pattern.
SEG_REFUSED = {
    "pydicom-data/693_UNCI.dcm": r"no FrameOfReferenceUID",
    "pydicom/JPEGLSNearLossless_08.dcm": r"lacks StudyInstanceUID",
    "pydicom/rtdose_1frame.dcm": r"SharedFunctionalGroupsSequence",
}


@pytest.fixture(scope="module")
def items(shared_data: Path) -> list[tuple[str, Path]]:
    pytest.importorskip("data_store", reason="the pydicom-data package (test extra) is not installed")
    return corpus.corpus_items(shared_data)


@pytest.fixture(autouse=True)
def _quiet() -> None:
    logging.disable(logging.WARNING)  # the corpus is full of header problems the readers log
    yield
    logging.disable(logging.NOTSET)


def test_every_item_reads_or_is_refused_as_listed(
    items: list[tuple[str, Path]], capsys: pytest.CaptureFixture[str]
) -> None:
    expected = _expected_refusals()
    read, refused, unexpected, crashed, stale = [], Counter(), [], [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about every odd value of these test files
        for name, path in items:
            try:
                read_image(path)
            except MedsegError as err:
                reason = expected.get(name)
                if reason is None or not re.search(REASONS[reason], str(err)):
                    unexpected.append(f"{name}: {type(err).__name__}: {err}")
                refused[reason or "UNEXPECTED"] += 1
                continue
            except Exception as err:  # noqa: BLE001 - what this test hunts for
                crashed.append(f"{name}: {type(err).__name__}: {err}")
                continue
            read.append(name)
            if name in expected:
                stale.append(name)
    with capsys.disabled():
        print(
            f"\ncorpus: {len(items)} items ({sum(not n.endswith('/') for n, _ in items)} files, "
            f"{sum(n.endswith('/') for n, _ in items)} series folders): {len(read)} read as images, "
            f"{sum(refused.values())} refused by design ({dict(sorted(refused.items()))})"
        )
    assert not crashed, crashed
    assert not unexpected, "new or changed refusals:\n" + "\n".join(unexpected)
    assert not stale, f"listed as refused but read now (update tests/io/corpus_refusals.txt): {stale}"
    assert not set(expected) - {n for n, _ in items}, "listed items missing from the corpus"


def test_every_seg_of_the_corpus_is_read(items: list[tuple[str, Path]]) -> None:
    from medseg.io import is_dicom_seg

    segs = [(name, path) for name, path in items if path.is_file() and is_dicom_seg(path)]
    assert len(segs) >= 10
    failures = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, path in segs:
            try:
                labels, names = read_dicom_seg(path)
            except MedsegError as err:
                if name.endswith("_1frame.dcm"):  # pydicom's SEGs without NumberOfFrames (Type 1)
                    continue
                failures.append(f"{name}: {err}")
                continue
            assert names and np.any(labels.array > 0), name
    assert not failures, failures


# ... and the LABELMAP type on a series, an enhanced multi-frame CT and a radiograph
LABELMAP_CHAIN = [
    "shared/dicom_seg_interop/dcmqi/ct-3slice/",
    "pydicom-data/eCT_Supplemental.dcm",
    "shared/dicom_seg_interop/highdicom/dx_image.dcm",
]


@pytest.mark.parametrize(
    ("name", "seg_type"), [(n, "BINARY") for n in SEG_CHAIN] + [(n, "LABELMAP") for n in LABELMAP_CHAIN]
)
def test_seg_chain(name: str, seg_type: str, items: list[tuple[str, Path]], tmp_path: Path) -> None:
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy (dicom3tools) is not installed")
    path = dict(items)[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        outcome = corpus.check_item(
            name,
            path,
            tmp_path,
            dcmqi=shutil.which("segimage2itkimage") is not None,
            segmentation_type=seg_type,
        )
    assert outcome.status == "image", outcome.reason
    assert outcome.seg_written, outcome.seg_refused
    assert not outcome.seg_errors, outcome.seg_errors
    assert outcome.readback["medseg"] == "ok", outcome.readback
    assert outcome.readback["highdicom"] == "ok", outcome.readback
    assert outcome.readback.get("dcmqi", "ok") == "ok" or outcome.readback["dcmqi"].startswith("skip")
    if name.endswith("/") and "dcmqi" in outcome.readback:
        assert outcome.readback["dcmqi"] == "ok"


@pytest.mark.parametrize("name", sorted(SEG_REFUSED))
def test_seg_refusals_name_the_attribute(name: str, items: list[tuple[str, Path]], tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        outcome = corpus.check_item(name, dict(items)[name], tmp_path, dcmqi=False)
    assert outcome.status == "image"
    assert re.search(SEG_REFUSED[name], outcome.seg_refused), outcome.seg_refused
    assert "highdicom" not in outcome.seg_refused.split("Fix:")[0] or "in highdicom" in outcome.seg_refused


# ---------------------------------------------------------------------------------------------
# reader regressions found by the corpus
# ---------------------------------------------------------------------------------------------
def test_deflated_transfer_syntax_is_read() -> None:
    path = get_testdata_file("image_dfl.dcm")
    image = read_image(path)
    ds = pydicom.dcmread(path)
    expected = ds.pixel_array.astype(np.float64) * float(ds.get("RescaleSlope", 1)) + float(
        ds.get("RescaleIntercept", 0)
    )
    assert image.shape == expected.shape
    assert np.array_equal(np.asarray(image.array, dtype=np.float64), expected)


def test_codec_failure_names_the_codec_and_the_package() -> None:
    from pydicom.pixels import get_decoder
    from pydicom.uid import JPEGExtended12Bit

    if "gdcm" in get_decoder(JPEGExtended12Bit).available_plugins:
        pytest.skip("GDCM is installed and decodes this file")
    with pytest.raises(DicomInputError) as info:
        read_image(get_testdata_file("JPEG-lossy.dcm"))  # 12-bit JPEG Extended: pillow and libjpeg refuse
    text = str(info.value)
    assert "JPEG Extended" in text and "python-gdcm" in text, text
    assert "truncated" not in text
