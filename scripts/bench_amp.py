"""Training-step throughput: fp32 vs bf16 autocast (and fp16 + GradScaler on CUDA), in one run.

    python scripts/bench_amp.py [--size 256] [--batch 4] [--steps 8] [--warmup 3] [--device auto]

Each step is what ``medseg.train`` does: forward (under ``torch.autocast`` for bf16/fp16), MONAI
DiceCE loss in fp32, backward (GradScaler for fp16), gradient clipping, AdamW step, on the default
U-Net (EfficientNet-Lite0 encoder, decoder 256..16) with random inputs and labels. Modes alternate
step by step after an untimed warm-up, so machine load affects them alike; the median step time
gives images/s. Prints a table with the ratio to fp32.
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import statistics
import time

import torch

from medseg.config import Config, config_from_dict
from medseg.models import build_model
from medseg.training.optim import build_loss, build_optimizer
from medseg.utils import resolve_device


def make_step(cfg: Config, mode: str, device: torch.device, channels_last: bool):  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    model = build_model(cfg.model).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.train()
    opt = build_optimizer(model, cfg)
    loss_fn = build_loss(cfg)
    scaler = torch.amp.GradScaler("cuda") if mode == "fp16" else None
    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[mode]
    b, (h, w) = cfg.data.batch_size, cfg.data.image_size
    x = torch.randn(b, cfg.model.in_channels, h, w, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, cfg.model.num_classes, (b, 1, h, w), device=device)

    def step() -> float:
        ctx = torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with ctx:
            logits = model(x)
        loss = loss_fn(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=8, help="timed steps per mode")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps per mode first")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--channels-last", action="store_true")
    args = ap.parse_args()
    device = torch.device(resolve_device(args.device))
    cfg = config_from_dict({
        "model": {"encoder_weights": "none"},
        "data": {"image_size": [args.size, args.size], "batch_size": args.batch},
    }).validate()
    modes = ["fp32", "bf16"] + (["fp16"] if device.type == "cuda" else [])
    steps = {m: make_step(cfg, m, device, args.channels_last) for m in modes}
    for m in modes:
        for _ in range(args.warmup):
            steps[m]()
    times: dict[str, list[float]] = {m: [] for m in modes}
    for _ in range(args.steps):
        for m in modes:
            times[m].append(steps[m]())
    base = statistics.median(times["fp32"])
    print(f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else platform.processor() or 'cpu'}), "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch} x 1 x {args.size} x {args.size}, "
          f"channels_last={args.channels_last}, median of {args.steps} steps after {args.warmup} warm-up")
    print()
    print("| mode | step (s) | images/s | speed vs fp32 |")
    print("|---|---:|---:|---:|")
    for m in modes:
        med = statistics.median(times[m])
        print(f"| {m} | {med:.3f} | {args.batch / med:.1f} | {base / med:.2f}x |")


if __name__ == "__main__":
    main()
