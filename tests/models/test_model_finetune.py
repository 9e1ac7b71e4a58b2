"""Freezing the encoder, BatchNorm behaviour under model.train(), discriminative parameter groups."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from medseg.config import ModelConfig
from medseg.models import (
    apply_frozen_bn_eval,
    build_model,
    encoder_parameters,
    param_groups,
    set_encoder_trainable,
)


def _model() -> Any:
    cfg = ModelConfig(
        num_classes=2, in_channels=1, decoder_channels=[32, 16, 16, 8, 8], encoder_weights="none"
    )
    return build_model(cfg)


class _Wrapper(nn.Module):  # stands in for DDP (which exposes the network as .module)
    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)


def test_frozen_encoder_keeps_bn_statistics_and_gets_no_gradient() -> None:
    model = _model()
    set_encoder_trainable(model, False)
    model.train()  # MedsegUNet.train re-applies the frozen-BN rule
    assert not model.encoder.training and model.decoder.training
    assert all(not p.requires_grad for p in encoder_parameters(model))
    enc_bn = model.encoder._bn0
    dec_bn: Any = next(m for m in model.decoder.modules() if isinstance(m, nn.BatchNorm2d))
    enc_before, dec_before = enc_bn.running_mean.clone(), dec_bn.running_mean.clone()
    out = model(torch.randn(2, 1, 64, 64) * 3 + 1)
    out.mean().backward()
    assert torch.equal(enc_bn.running_mean, enc_before)
    assert not torch.equal(dec_bn.running_mean, dec_before)
    assert all(p.grad is None for p in encoder_parameters(model))

    set_encoder_trainable(model, True)
    assert model.encoder.training and all(p.requires_grad for p in encoder_parameters(model))
    model(torch.randn(2, 1, 64, 64)).mean().backward()
    assert model.encoder._conv_stem.weight.grad is not None


def test_apply_frozen_bn_eval_through_a_wrapper() -> None:
    wrapped: Any = _Wrapper(_model())
    set_encoder_trainable(wrapped, False)
    nn.Module.train(wrapped.module)  # a plain train() that knows nothing about frozen layers
    assert wrapped.module.encoder.training
    assert apply_frozen_bn_eval(wrapped) > 0
    assert not wrapped.module.encoder.training and wrapped.module.decoder.training


def test_param_groups_partition_and_rates() -> None:
    model = _model()
    groups = param_groups(_Wrapper(model), lr=1e-3, encoder_lr_mult=0.1, weight_decay=1e-4)
    by_name = {g["name"]: g for g in groups}
    assert set(by_name) == {"encoder", "encoder_no_decay", "decoder", "decoder_no_decay"}
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))  # each parameter exactly once
    enc_ids = {id(p) for p in encoder_parameters(model)}
    for g in groups:
        in_enc = {id(p) in enc_ids for p in g["params"]}
        assert in_enc == {g["name"].startswith("encoder")}
        assert g["lr"] == pytest.approx(1e-4 if g["name"].startswith("encoder") else 1e-3)
        assert g["weight_decay"] == (0.0 if g["name"].endswith("no_decay") else 1e-4)
    no_decay = {id(p) for g in groups if g["name"].endswith("no_decay") for p in g["params"]}
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert id(m.weight) in no_decay and id(m.bias) in no_decay
        if isinstance(m, nn.Conv2d):
            assert id(m.weight) not in no_decay
            if m.bias is not None:
                assert id(m.bias) in no_decay


def test_optimizer_step_with_frozen_encoder_leaves_encoder_unchanged() -> None:
    model = _model()
    set_encoder_trainable(model, False)
    model.train()
    opt = torch.optim.AdamW(param_groups(model, 1e-2, 0.1, 1e-2))
    enc_before = [p.detach().clone() for p in encoder_parameters(model)]
    head_before = model.segmentation_head[0].weight.detach().clone()
    model(torch.randn(2, 1, 64, 64)).mean().backward()
    opt.step()
    assert all(torch.equal(a, b) for a, b in zip(enc_before, encoder_parameters(model), strict=True))
    assert not torch.equal(head_before, model.segmentation_head[0].weight)
