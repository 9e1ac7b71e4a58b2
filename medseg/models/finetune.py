"""Fine-tuning controls: freeze/unfreeze the pretrained encoder, discriminative learning rates.

A frozen encoder keeps its BatchNorm layers in eval mode (running statistics from ImageNet are
neither used batch-wise nor updated) and its drop-connect off. ``MedsegUNet.train()`` re-applies
this by itself; for other models call :func:`apply_frozen_bn_eval` after ``model.train()``.

DDP note: DistributedDataParallel records the trainable parameters when it is constructed; wrap
the model again after :func:`set_encoder_trainable` changes them.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from medseg.errors import ModelError

__all__ = [
    "unwrap_model",
    "encoder_parameters",
    "set_encoder_trainable",
    "apply_frozen_bn_eval",
    "param_groups",
]

_BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain network inside DDP/DataParallel (``.module``) and ``torch.compile`` (``._orig_mod``)."""
    while True:
        inner = getattr(model, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            inner = getattr(model, "module", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner


def _encoder(model: nn.Module) -> nn.Module:
    enc = getattr(unwrap_model(model), "encoder", None)
    if not isinstance(enc, nn.Module):
        raise ModelError(
            f"{type(unwrap_model(model)).__name__} has no 'encoder' module",
            hint="build it with medseg.models.build_model",
        )
    return enc


def encoder_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters of the pretrained encoder (``model.encoder``), DDP/compile wrappers unwrapped."""
    return list(_encoder(model).parameters())


def set_encoder_trainable(model: nn.Module, trainable: bool) -> None:
    """Freeze (``False``) or unfreeze (``True``) the encoder.

    Frozen: ``requires_grad=False`` on every encoder parameter and the encoder switched to eval
    mode (BatchNorm uses and keeps its running statistics). Unfrozen: ``requires_grad=True`` and,
    if the model is in training mode, the encoder back in training mode.
    """
    enc = _encoder(model)
    for p in enc.parameters():
        p.requires_grad_(trainable)
    if trainable:
        if unwrap_model(model).training:
            enc.train()
    else:
        apply_frozen_bn_eval(model)


def apply_frozen_bn_eval(model: nn.Module) -> int:
    """Put frozen parts in eval mode; call after ``model.train()``. Returns how many modules it switched.

    A fully frozen encoder goes to eval mode as a whole (BatchNorm and drop-connect); any other
    BatchNorm layer whose parameters are all frozen goes to eval mode too.
    """
    net = unwrap_model(model)
    switched = 0
    enc = getattr(net, "encoder", None)
    if isinstance(enc, nn.Module):
        params = list(enc.parameters())
        if params and not any(p.requires_grad for p in params):
            switched += sum(1 for m in enc.modules() if m.training)
            enc.eval()
    for m in net.modules():
        if isinstance(m, _BN_TYPES) and m.training:
            params = list(m.parameters())
            if params and not any(p.requires_grad for p in params):
                m.eval()
                switched += 1
    return switched


def param_groups(
    model: nn.Module, lr: float, encoder_lr_mult: float = 0.1, weight_decay: float = 1e-4
) -> list[dict[str, Any]]:
    """Optimizer parameter groups: encoder at ``lr * encoder_lr_mult``, the rest at ``lr``.

    Biases and normalisation weights (every parameter with ``ndim <= 1``) get no weight decay.
    Frozen parameters are included (their gradient is ``None``, so optimizers skip them) so that
    unfreezing later needs no new optimizer. Each group has a ``"name"``: ``encoder``,
    ``encoder_no_decay``, ``decoder``, ``decoder_no_decay`` (decoder = everything not in the
    encoder); empty groups are left out. Pass the result to e.g. ``torch.optim.AdamW``.
    """
    if lr <= 0 or encoder_lr_mult < 0 or weight_decay < 0:
        raise ModelError(
            f"need lr > 0, encoder_lr_mult >= 0 and weight_decay >= 0, got {lr}, {encoder_lr_mult}, {weight_decay}",
            path="optim",
        )
    enc_ids = {id(p) for p in encoder_parameters(model)}
    buckets: dict[str, list[nn.Parameter]] = {
        "encoder": [],
        "encoder_no_decay": [],
        "decoder": [],
        "decoder_no_decay": [],
    }
    for p in unwrap_model(model).parameters():
        part = "encoder" if id(p) in enc_ids else "decoder"
        buckets[part + ("_no_decay" if p.ndim <= 1 else "")].append(p)
    out = []
    for name, params in buckets.items():
        if not params:
            continue
        out.append(
            {
                "name": name,
                "params": params,
                "lr": lr * (encoder_lr_mult if name.startswith("encoder") else 1.0),
                "weight_decay": 0.0 if name.endswith("no_decay") else weight_decay,
            }
        )
    return out
