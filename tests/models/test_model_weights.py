"""The ImageNet transfer is real: the right tensors arrive, in the right places, and classify a cat.

Oracles independent of medseg: the weight file itself, the reference implementation
``efficientnet_lite_pytorch`` (ml-illustrated, lukemelas-style) and a photo of a cat.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from medseg.config import ModelConfig
from medseg.errors import ModelError
from medseg.models import (
    ENCODERS,
    adapt_stem_weight,
    build_model,
    encoder_preprocessing,
    resolve_encoder_weights,
    stem_channel_mixing,
)

ref_lib = pytest.importorskip("efficientnet_lite_pytorch")
skdata = pytest.importorskip("skimage.data")

CAT_CLASSES = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat
HEAD = ("_conv_head.", "_bn1.", "_fc.")


@pytest.fixture(autouse=True)
def _empty_torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a user's hub cache must not change what these tests load
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))


@pytest.fixture(scope="module")
def lite0_file() -> Path:
    src = resolve_encoder_weights("efficientnet-lite0", "imagenet")
    assert src is not None
    return src.path


@pytest.fixture(scope="module")
def lite0_sd(lite0_file: Path) -> dict[str, torch.Tensor]:
    return torch.load(lite0_file, map_location="cpu", weights_only=True)


def _cfg(**kw) -> ModelConfig:
    base: dict[str, Any] = dict(num_classes=2, decoder_channels=[32, 16, 16, 8, 8])
    base.update(kw)
    return ModelConfig(**base)


def _flat_key(monai_key: str) -> str:
    # written independently of medseg: MONAI "_blocks.<stage>.<i>.x" -> file "_blocks.<i>.x"
    m = re.match(r"_blocks\.\d+\.(\d+)\.(.*)", monai_key)
    return f"_blocks.{m.group(1)}.{m.group(2)}" if m else monai_key


def _head_logits(features: torch.Tensor, sd: dict[str, torch.Tensor]) -> torch.Tensor:
    """The ImageNet classifier head of the weight file, applied by hand (eval-mode BN)."""
    h = F.conv2d(features, sd["_conv_head.weight"])
    h = F.batch_norm(
        h,
        sd["_bn1.running_mean"],
        sd["_bn1.running_var"],
        sd["_bn1.weight"],
        sd["_bn1.bias"],
        False,
        0.0,
        1e-3,
    )
    return F.linear(F.relu6(h).mean((2, 3)), sd["_fc.weight"], sd["_fc.bias"])


def _reference(name: str, sd: dict[str, torch.Tensor]) -> torch.nn.Module:
    # image_size=224: TF "SAME" padding as for any input whose sides are multiples of 32
    ref = ref_lib.EfficientNet.from_name(name, image_size=224)
    ref.load_state_dict(sd, strict=True)
    return ref.eval()


def _reference_features(ref: Any, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    outs: list[torch.Tensor] = []
    hooks = [b.register_forward_hook(lambda _m, _i, o: outs.append(o)) for b in ref._blocks]
    try:
        logits = ref(x)
    finally:
        for h in hooks:
            h.remove()
    return logits, outs


def _cat_batch() -> torch.Tensor:
    img = torch.from_numpy(np.ascontiguousarray(skdata.chelsea())).permute(2, 0, 1).float()[None] / 255.0
    return F.interpolate(img, size=(224, 224), mode="bilinear", antialias=True, align_corners=False)


@pytest.mark.parametrize("in_channels", [1, 3, 5])
def test_every_encoder_tensor_equals_the_file(in_channels: int, lite0_sd: dict[str, torch.Tensor]) -> None:
    model = build_model(_cfg(in_channels=in_channels))
    enc_sd = model.encoder.state_dict()
    used = set()
    for key, value in enc_sd.items():
        fkey = _flat_key(key)
        assert fkey in lite0_sd, f"{key} has no source tensor"
        used.add(fkey)
        expected = lite0_sd[fkey]
        if key == "_conv_stem.weight":
            expected = adapt_stem_weight(expected, in_channels)
        assert torch.equal(value, expected), key
    # nothing of the encoder part of the file was left out; only the classifier head is unused
    assert {k for k in lite0_sd if not k.startswith(HEAD)} == used
    # and the classifier head is gone from the encoder (unused parameters break DDP)
    assert not any(k.startswith(HEAD) for k in enc_sd)


def test_stem_adaptation_is_the_documented_one(lite0_sd: dict[str, torch.Tensor]) -> None:
    w = lite0_sd["_conv_stem.weight"]
    assert torch.equal(adapt_stem_weight(w, 3), w)
    torch.testing.assert_close(adapt_stem_weight(w, 1), w.sum(1, keepdim=True))
    torch.testing.assert_close(adapt_stem_weight(w, 6), w.repeat_interleave(2, dim=1) / 2)
    for k in (1, 2, 3, 5, 7):
        a = stem_channel_mixing(k)
        assert a.shape == (k, 3)
        torch.testing.assert_close(a.sum(0), torch.ones(3, dtype=torch.float64))  # each RGB kernel used once
        torch.testing.assert_close(a, a.flip(0, 1))  # symmetric about the centre slice
        torch.testing.assert_close(adapt_stem_weight(w, k).sum(1), w.sum(1))
    torch.testing.assert_close(stem_channel_mixing(5)[2], torch.tensor([0.0, 0.6, 0.0], dtype=torch.float64))


def test_encoder_matches_reference_and_sees_a_cat(lite0_sd: dict[str, torch.Tensor]) -> None:
    model = build_model(_cfg(in_channels=3)).eval()
    ref = _reference("efficientnet-lite0", lite0_sd)
    pre = encoder_preprocessing(_cfg(in_channels=3))
    x = pre.normalize(_cat_batch())
    with torch.no_grad():
        feats = model.encoder(x)
        ref_logits, ref_blocks = _reference_features(ref, x)
        logits = _head_logits(feats[-1], lite0_sd)
    # every skip feature the decoder uses equals the reference's output at the end of that stage
    assert [f.shape[1] for f in feats] == [16, 24, 40, 112, 320]
    assert [f.shape[-1] for f in feats] == [112, 56, 28, 14, 7]
    for f in feats:
        stage_end = [o for o in ref_blocks if o.shape == f.shape][-1]
        torch.testing.assert_close(f, stage_end, atol=1e-4, rtol=1e-4)
    assert (logits - ref_logits).abs().max().item() < 1e-3
    top5 = logits[0].topk(5).indices.tolist()
    assert top5[0] in CAT_CLASSES, top5
    assert len(CAT_CLASSES & set(top5)) >= 2, top5


def test_a_broken_key_mapping_fails_the_reference_check(lite0_sd: dict[str, torch.Tensor]) -> None:
    """Two blocks of identical shape swapped: strict shape checks pass, the reference check must not."""
    model = build_model(_cfg(in_channels=3)).eval()
    enc = model.encoder
    a, b = enc._blocks[3][1], enc._blocks[3][2]  # lite0 stage 3 = blocks 5, 6, 7; 6 and 7 are both 80 -> 80
    sa, sb = a.state_dict(), b.state_dict()
    assert {k: v.shape for k, v in sa.items()} == {k: v.shape for k, v in sb.items()}
    a.load_state_dict(sb)
    b.load_state_dict(sa)
    x = encoder_preprocessing(_cfg(in_channels=3)).normalize(_cat_batch())
    with torch.no_grad():
        logits = _head_logits(enc(x)[-1], lite0_sd)
        ref_logits = _reference("efficientnet-lite0", lite0_sd)(x)
    assert (logits - ref_logits).abs().max().item() > 0.1


@pytest.mark.parametrize("name", ["efficientnet-lite1", "efficientnet-lite2"])
def test_lite1_lite2_architecture_matches_reference(name: str, tmp_path: Path) -> None:
    """Without their weight packages: the reference's (random) weights load strictly and compute the same."""
    torch.manual_seed(0)
    ref = ref_lib.EfficientNet.from_name(name, image_size=224).eval()
    sd = ref.state_dict()
    path = tmp_path / f"{name}.pth"
    torch.save(sd, path)
    model = build_model(_cfg(encoder=name, in_channels=3, encoder_weights=str(path))).eval()
    x = torch.rand(1, 3, 224, 224)
    with torch.no_grad():
        feats = model.encoder(x)
        ref_logits, ref_blocks = _reference_features(ref, x)
        logits = _head_logits(feats[-1], sd)
    assert tuple(f.shape[1] for f in feats) == ENCODERS[name].feature_channels()
    for f in feats:
        stage_end = [o for o in ref_blocks if o.shape == f.shape][-1]
        torch.testing.assert_close(f, stage_end, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(logits, ref_logits, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", ["efficientnet-lite1", "efficientnet-lite2"])
def test_missing_weight_package_says_what_to_install(name: str) -> None:
    import importlib.util

    spec = ENCODERS[name]
    if importlib.util.find_spec(spec.package) is not None:
        pytest.skip(f"{spec.pip_name} is installed here")
    with pytest.raises(ModelError) as e:
        build_model(_cfg(encoder=name))
    assert spec.pip_name in str(e.value) and spec.file_name in str(e.value)
    build_model(_cfg(encoder=name, encoder_weights="none"))  # random init still works
