"""One structure concept: every spelling of the lung labels gives the same behaviour on every path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch

from medseg.config import load_config
from medseg.errors import ConfigError
from medseg.image import Image
from medseg.infer.postprocess import postprocess_labels
from medseg.infer.predictor import _swap_left_right
from medseg.io import read_image, write_dicom_seg
from medseg.io.rtstruct import canonical_roi_name
from medseg.labelling import qc
from medseg.structures import LabelMap, parse_structure

SPELLINGS = [
    {1: "Lung_R", 2: "Lung_L"},
    {1: "right lung", 2: "left lung"},
    {1: "Right Lung", 2: "Left Lung"},
    {1: "Lung R", 2: "Lung L"},
    {1: "RIGHT  LUNG", 2: "Left  Lung"},
    {1: "Lung-Right", 2: "Lung-Left"},
]
SAMPLE_CXR = Path(__file__).resolve().parents[1] / "sample_data" / "cxr" / "siim_cr_chest_pa.dcm"


@pytest.mark.parametrize("names", SPELLINGS, ids=lambda n: n[1])
def test_every_spelling_parses_to_the_same_structures(names: dict[int, str]) -> None:
    lm = LabelMap.from_names(names)
    assert lm.names() == {1: "right lung", 2: "left lung"}
    assert lm.side_values() == (1, 2) and lm.mirror_pairs() == [(1, 2)] and lm.lung_values() == [1, 2]
    assert lm[1].concept.type.meaning == "Lung" and lm[1].concept.modifier.meaning == "Right"
    assert lm[2].concept.modifier.meaning == "Left"
    assert canonical_roi_name(names[2]) == "left lung"


def _swapped_cxr() -> tuple[Image, np.ndarray]:
    """A PA radiograph grid with the *left* lung label on the image left (patient's right)."""
    image = Image(np.zeros((64, 64), np.float32), np.eye(3))
    labels = np.zeros((64, 64), np.uint8)
    labels[10:50, 5:25] = 2  # image left = patient right in a PA film
    labels[10:50, 40:60] = 1
    labels[30, 45] = 0  # a hole
    labels[2:4, 2:4] = 1  # a speck
    return image, labels


@pytest.mark.parametrize("names", SPELLINGS, ids=lambda n: n[1])
def test_post_processing_fixes_sides_holes_and_specks_for_every_spelling(names: dict[int, str]) -> None:
    image, labels = _swapped_cxr()
    out = postprocess_labels(labels, image, names)
    assert (out[10:50, 5:25] == 1).all() and (out[10:50, 40:60] == 2).all()  # sides fixed, hole filled
    assert out[2:4, 2:4].sum() == 0  # speck gone


@pytest.mark.parametrize("names", SPELLINGS, ids=lambda n: n[1])
def test_flip_tta_swaps_left_and_right_channels_for_every_spelling(names: dict[int, str]) -> None:
    probs = torch.arange(3, dtype=torch.float32).view(1, 3, 1, 1)
    assert _swap_left_right(probs, names).flatten().tolist() == [0.0, 2.0, 1.0]
    nodule = {1: "right lung", 2: "left lung", 3: "nodule"}
    assert _swap_left_right(torch.arange(4.0).view(1, 4, 1, 1), nodule).flatten().tolist() == [0, 2, 1, 3]


@pytest.mark.parametrize("names", SPELLINGS, ids=lambda n: n[1])
def test_qc_knows_the_sides_for_every_spelling(names: dict[int, str]) -> None:
    image, labels = _swapped_cxr()
    flags = qc(Image(labels, np.eye(3), kind="label"), label_names=names)
    assert any(f.check == "swapped" for f in flags), flags


@pytest.mark.parametrize("names", SPELLINGS[:4], ids=lambda n: n[1])
def test_dicom_seg_codes_lung_with_laterality_for_every_spelling(names: dict[int, str], tmp_path: Path) -> None:
    source = read_image(SAMPLE_CXR)
    h, w = source.shape
    arr = np.zeros(source.shape, np.uint8)
    arr[h // 4 : h // 2, w // 8 : w // 3] = 1
    arr[h // 4 : h // 2, 2 * w // 3 : 7 * w // 8] = 2
    path = write_dicom_seg(Image(arr, source.affine, kind="label"), source, tmp_path / "seg.dcm", label_names=names)
    ds = pydicom.dcmread(path)
    got = [(s.SegmentedPropertyTypeCodeSequence[0].CodeValue,
            s.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence[0].CodeMeaning)
           for s in ds.SegmentSequence]
    assert got == [("39607008", "Right"), ("39607008", "Left")]


def test_flip_augmentation_pairs_come_from_the_structure_concept() -> None:
    from medseg.data.transforms import left_right_pairs

    assert left_right_pairs({1: "Lung_R", 2: "Lung_L"}) == [(2, 1)]
    assert left_right_pairs({1: "lungs"}) == []


def test_other_names_and_explicit_codes() -> None:
    assert parse_structure("lung nodule").name == "nodule"
    assert parse_structure("Lungs").laterality is None and parse_structure("Lungs").is_lung
    assert parse_structure("Spinal_Cord").concept.type.meaning == "Tissue"
    with pytest.raises(ConfigError, match="both mean 'right lung'"):
        LabelMap.from_names({1: "Lung_R", 2: "right lung"})
    cfg = load_config(None, ["labels={1: trachea, 2: thing}", "model.num_classes=3",
                             "structures={2: {category: {value: '91723000', scheme: SCT, meaning: Anatomical Structure},"
                             " type: {value: '44567001', scheme: SCT, meaning: Trachea}}}"])
    lm = cfg.label_map()
    assert lm[1].concept.type.meaning == "Trachea" and lm[2].concept.type.value == "44567001"
    with pytest.raises(ConfigError, match="structures"):
        load_config(None, ["structures={7: {category: {value: x, scheme: y, meaning: z}, type: {value: x, scheme: y, meaning: z}}}"])


@pytest.mark.parametrize("override,key", [
    ("infer.batch_size=0", "infer.batch_size"),
    ("infer.sliding_window_overlap=1.0", "infer.sliding_window_overlap"),
    ("model.decoder_channels=[10000000, 1, 1, 1, 1]", "model.decoder_channels"),
    ("detect.threshold=0", "detect.threshold"),
    ("qc.ct_lung_ml=[10, 1]", "qc.ct_lung_ml"),
    ("optim.lr=.nan", "optim.lr"),
    ("autolabel.airway_jump=0.5", "autolabel.airway_jump"),
])
def test_config_validation_names_the_key(override: str, key: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(None, [override])
    assert key in str(e.value)


def test_config_typo_suggests_the_closest_key() -> None:
    with pytest.raises(ConfigError, match="did you mean 'detect.threshold'"):
        load_config(None, ["detect.treshold=0.3"])
