"""Training transforms: left/right flip with label swap, simulated dense opacity, pipeline wiring."""

from __future__ import annotations

import pytest
import torch

from medseg.config import config_from_dict
from medseg.data.transforms import RandFlipSwapLeftRightd, RandLungOpacityd, train_transforms
from medseg.errors import ConfigError


def _film() -> dict[str, torch.Tensor]:
    """(1, 128, 128) film in [0, 1]: dark lungs (right = image left = label 1) in bright tissue."""
    img = torch.full((1, 128, 128), 0.8)
    lab = torch.zeros((1, 128, 128), dtype=torch.uint8)
    img[0, 20:110, 15:55] = 0.2
    lab[0, 20:110, 15:55] = 1
    img[0, 20:110, 73:113] = 0.25
    lab[0, 20:110, 73:113] = 2
    return {"image": img, "label": lab}


def test_opacity_whitens_one_lung_and_keeps_the_label() -> None:
    sample = _film()
    t = RandLungOpacityd(("image", "label"), [1, 2], prob=1.0)
    changed_sides = set()
    for seed in range(12):
        t.set_random_state(seed)
        out = t(dict(sample))
        assert torch.equal(out["label"], sample["label"])  # the label never changes
        diff = (out["image"] - sample["image"])[0]
        assert float(diff.min()) >= 0.0 and float(out["image"].max()) <= 0.8 + 1e-6  # towards tissue, not past it
        right, left = float(diff[20:110, 15:55].mean()), float(diff[20:110, 73:113].mean())
        assert max(right, left) > 0.02 and min(right, left) < 0.1 * max(right, left)  # one lung only
        changed_sides.add(int(left > right) + 1)
        lung = diff[20:110, 15:55] if right > left else diff[20:110, 73:113]
        assert float(lung[45:].mean()) > float(lung[:20].mean())  # denser at the base than the apex
        assert float(diff[:8].abs().max()) < 1e-3  # tissue far from the lungs untouched
    assert changed_sides == {1, 2}
    t.set_random_state(3)
    a = t(dict(sample))["image"]
    t.set_random_state(3)
    assert torch.equal(a, t(dict(sample))["image"])  # seeded: reproducible


def test_opacity_leaves_films_without_lungs_alone() -> None:
    sample = {"image": torch.rand(1, 64, 64), "label": torch.zeros(1, 64, 64, dtype=torch.uint8)}
    out = RandLungOpacityd(("image", "label"), [1, 2], prob=1.0)(dict(sample))
    assert torch.equal(out["image"], sample["image"])


def test_flip_swaps_left_and_right_labels() -> None:
    sample = _film()
    t = RandFlipSwapLeftRightd(("image", "label"), [(2, 1)], prob=1.0)
    out = t(dict(sample))
    assert torch.equal(out["image"], torch.flip(sample["image"], dims=[-1]))
    # the mirrored left lung now lies on the image's left, where a right lung belongs: renamed
    assert int(out["label"][0, 50, 20]) == 1 and int(out["label"][0, 50, 100]) == 2
    flipped_only = torch.flip(sample["label"], dims=[-1])
    assert int(flipped_only[0, 50, 20]) == 2  # (a plain flip would have called it the left lung)


def test_opacity_is_wired_for_radiographs_only_and_validated() -> None:
    def names(cfg: dict) -> list[str]:
        return [type(t).__name__ for t in train_transforms(config_from_dict(cfg)).transforms]

    assert "RandLungOpacityd" not in names({})  # off by default
    assert "RandLungOpacityd" in names({"data": {"augment": {"opacity_prob": 0.3}}})
    assert "RandLungOpacityd" not in names({"data": {"task": "ct", "context_slices": 3,
                                                     "augment": {"opacity_prob": 0.3}},
                                            "model": {"in_channels": 3}})
    with pytest.raises(ConfigError, match="opacity_prob"):
        config_from_dict({"data": {"augment": {"opacity_prob": 1.5}}}).validate()
