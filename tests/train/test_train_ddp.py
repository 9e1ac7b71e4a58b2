"""Two-process gloo DDP on CPU via torchrun: same weights on both ranks, disjoint data shards, clean exit."""

from __future__ import annotations

import csv
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from medseg.config import save_config

WORKER = Path(__file__).with_name("ddp_worker.py")


def test_two_rank_gloo_ddp(make_config: Any, tmp_path: Path) -> None:
    # 4 training images, batch 1 per rank, 1 epoch: 2 steps on each of the 2 ranks
    cfg = make_config(data={"batch_size": 1}, train={"epochs": 1}, optim={"warmup_epochs": 0})
    cfg_file = tmp_path / "cfg.yaml"
    save_config(cfg, cfg_file)
    out = tmp_path / "dump"
    out.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
         str(WORKER), str(cfg_file), str(out)],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]  # both ranks exit cleanly (gloo teardown)
    r0 = torch.load(out / "rank0.pt", weights_only=True)
    r1 = torch.load(out / "rank1.pt", weights_only=True)
    assert r0["world_size"] == r1["world_size"] == 2 and r0["step"] == r1["step"] == 2
    for k, v in r0["weights"].items():
        assert torch.equal(v, r1["weights"][k]), k  # gradients were all-reduced: identical replicas
    ids0 = {i for batch in r0["ids"] for i in batch}
    ids1 = {i for batch in r1["ids"] for i in batch}
    assert len(ids0) == len(ids1) == 2 and not ids0 & ids1  # different shards covering the 4 images
    # validation results are gathered: both ranks hold the same metrics (NaN = class never predicted)
    m0, m1 = r0["metrics"], r1["metrics"]
    assert m0.keys() == m1.keys() and 0.0 <= m0["dice"] <= 1.0
    assert all(m0[k] == m1[k] or (math.isnan(m0[k]) and math.isnan(m1[k])) for k in m0)
    run = Path(cfg.train.out_dir)
    with (run / "metrics.csv").open() as f:
        assert [r["epoch"] for r in csv.DictReader(f)] == ["1"]  # rank 0 alone writes the run folder
    assert (run / "checkpoints" / "last" / "config.json").is_file()
