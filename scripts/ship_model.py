"""Copy a trained checkpoint into the package (``medseg/weights/<name>``) with half-precision weights.

    python scripts/ship_model.py runs/cxr_lung/checkpoints/best cxr_lung
    python scripts/ship_model.py runs/ct_lung_all/checkpoints/last ct_lung --background-offset 1.0
    python scripts/ship_model.py runs/cxr_v7/checkpoints/best cxr_lung_v7 --set infer.remove_gas=false

``--set key=value`` changes the shipped config (e.g. the ``infer.*`` defaults the Predictor uses with
this model), validated like any config override.

``--background-offset d`` subtracts ``d`` from the bias of the background output channel (the last
layer is a convolution; everything after it is linear), i.e. labels become ``argmax(logits - [d, 0, ..])``:
the boundary moves outwards along the probability ramp. Use it to remove a systematic volume bias
measured on held-out data (``scripts/eval_ct_folds.py``); the value is recorded in the checkpoint's
training info (``background_offset``).

Floating-point tensors are stored as float16 (half the size; the Predictor loads them into a float32
model, see the check printed at the end), everything else unchanged. ``MODEL_CARD.md`` is not
written here: edit it by hand from the numbers of ``scripts/eval_shipped.py``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from medseg.models import load_checkpoint, save_checkpoint


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("name")
    ap.add_argument("--background-offset", type=float, default=0.0)
    ap.add_argument("--set", action="append", default=[], help="config override key=value (repeatable)")
    args = ap.parse_args()
    dest = Path(__file__).resolve().parents[1] / "medseg" / "weights" / args.name
    loaded = load_checkpoint(args.checkpoint)
    card = dest / "MODEL_CARD.md"
    card_text = card.read_text() if card.is_file() else None
    model = loaded.model
    config = loaded.config
    if args.set:
        from medseg.config import apply_overrides, config_from_dict, config_to_dict

        config = config_from_dict(apply_overrides(config_to_dict(config), args.set))
    training = dict(loaded.info.get("training") or {})
    if args.background_offset:
        head = dict(model.named_parameters())["segmentation_head.0.bias"]
        with torch.no_grad():
            head[0] -= args.background_offset
        training["background_offset"] = args.background_offset
    for t in list(model.parameters()) + list(model.buffers()):
        if t.is_floating_point():
            t.data = t.data.half()
    save_checkpoint(dest, model, config, training=training)
    if card_text is not None:
        card.write_text(card_text)
    shipped = load_checkpoint(dest)
    x = torch.randn(1, loaded.config.model.in_channels, 256, 256)
    with torch.no_grad():
        ref_logits = load_checkpoint(args.checkpoint).model(x)
        ref_logits[:, 0] -= args.background_offset
        ref = ref_logits.softmax(1)
        out = shipped.model(x).softmax(1)
    size = sum(p.stat().st_size for p in dest.iterdir()) / 1e6
    print(f"shipped {dest} ({size:.1f} MB); max |prob fp32 - prob fp16 weights| = {float((ref - out).abs().max()):.2e}")


if __name__ == "__main__":
    main()
