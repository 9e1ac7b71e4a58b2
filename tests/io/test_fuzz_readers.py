"""Issue #13: a seeded mutation-fuzz campaign over every reader, bounded to about a minute.

Runs ``scripts/fuzz_readers.py`` (seeded; forked workers with an address-space cap and a time
limit per input) on mutations of the real files in ``../shared/data`` across DICOM file, DICOM
series, NIfTI, PNG/TIFF/JPEG and DICOM-SEG, and asserts: every input was either read into a
result with finite voxels and plausible geometry, or refused with a one-line ``MedsegError`` from
a specific check (not the readers' last-resort guard); no other exception, no timeout, no worker
killed, no ``MemoryError`` and a bounded peak RSS. Long campaigns: run the script itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "fuzz_readers.py"
KINDS = ("dicom_file", "dicom_series", "nifti", "picture", "seg")
INPUTS = 1500  # 300 per kind; ~30-60 s on 2 cores
PEAK_MIB = 512


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the fuzzer forks a worker per input")
def test_seeded_fuzz_campaign(shared_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "fuzz.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--inputs",
            str(INPUTS),
            "--seed",
            "13",
            "--workers",
            "2",
            "--mem-mib",
            "2048",
            "--peak-mib",
            str(PEAK_MIB),
            "--time-s",
            "20",
            "--max-seconds",
            "150",
            "--corpus",
            str(tmp_path / "corpus"),
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=400,
        cwd=REPO,
    )
    assert out.is_file(), proc.stderr[-3000:]
    results = json.loads(out.read_text())["results"]
    summary = proc.stdout
    assert len(results) >= INPUTS // 3, summary  # a slow machine may stop early, never at nothing
    bad = [r for r in results if r["outcome"] not in ("ok", "refused")]
    assert not bad, summary
    for kind in KINDS:
        outcomes = Counter(r["outcome"] for r in results if r["kind"] == kind)
        # the mutations must exercise both paths: some inputs still read, some refused
        assert outcomes["ok"] > 0 and outcomes["refused"] > 0, (kind, outcomes)
    assert max(r["peak_mib"] for r in results) < PEAK_MIB
    assert proc.returncode == 0, summary
