"""Write the patient-level train/val manifests of the two chest X-ray lung annotation protocols.

    python scripts/prepare_cxr_lung_manifests.py [--data ../shared/data] [--out data_prepared/cxr_lung]

Two protocols, two manifests (see the folders' PROVENANCE.md):

* ``gb.csv`` - ``cxr_lung_covid19_gb``: radiologists' lungs that **stop at the cardiac border**.
  Validation patients: ``split_entries(val_fraction=0.2, seed=0)``, the split every earlier ``cxr_lung``
  model was validated on (7 images, 4 patients), so old and new numbers compare.
* ``v7.csv`` - ``cxr_lung_v7_covid``: V7's lungs that **include the lung behind the heart**, plus V7's
  second-reader masks of 12 ``cxr_lung_covid19_gb`` films (``second_reader_v7/``), each with the split
  its film has in ``gb.csv`` (a film validating one protocol is never trained on under the other).
  Validation patients of ``cxr_lung_v7_covid``: ``split_entries(val_fraction=0.25, seed=0)``.

Both splits are written as an explicit ``split`` column, so the validation patients stay fixed
whatever the config's ``val_fraction``. Patient ids come from each folder's ``index.csv`` (one id
namespace, that of the COVID-19 Image Data Collection; the two folders share no patient).
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from medseg.data.manifest import ManifestEntry, build_manifest, split_entries, write_manifest

GB_VAL_FRACTION, V7_VAL_FRACTION, SEED = 0.2, 0.25, 0


def manifests(data: Path) -> tuple[list[ManifestEntry], list[ManifestEntry]]:
    """(gb entries, v7 entries), every entry with its split."""
    gb = split_entries(build_manifest(data / "cxr_lung_covid19_gb"), GB_VAL_FRACTION, SEED)
    v7 = split_entries(build_manifest(data / "cxr_lung_v7_covid"), V7_VAL_FRACTION, SEED)
    second = data / "cxr_lung_covid19_gb" / "second_reader_v7"
    for e in gb:
        assert e.label is not None
        alt = second / e.label.name
        if alt.is_file():
            v7.append(replace(e, label=alt.resolve()))
    return gb, v7


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    here = Path(__file__).resolve().parents[1]
    ap.add_argument("--data", type=Path, default=here / ".." / "shared" / "data")
    ap.add_argument("--out", type=Path, default=here / "data_prepared" / "cxr_lung")
    args = ap.parse_args()
    gb, v7 = manifests(args.data.resolve())
    for name, entries in (("gb", gb), ("v7", v7)):
        path = write_manifest(entries, args.out / f"{name}.csv")
        for split in ("train", "val"):
            sel = [e for e in entries if e.split == split]
            print(f"{path}: {split} {len(sel)} images, {len({e.patient for e in sel})} patients")


if __name__ == "__main__":
    main()
