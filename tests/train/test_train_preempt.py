"""SIGTERM during training: the step finishes, a resumable state is saved, exit code 75 (EX_TEMPFAIL)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from medseg.config import save_config
from medseg.training import EXIT_PREEMPTED, train


def test_sigterm_saves_and_exits_75(make_config: Any, tmp_path: Path) -> None:
    assert EXIT_PREEMPTED == 75
    cfg = make_config(train={"epochs": 1000, "save_every_steps": 1})
    cfg_file = tmp_path / "cfg.yaml"
    save_config(cfg, cfg_file)
    run = Path(cfg.train.out_dir)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "medseg", "train", str(cfg_file)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (run / "state.pt").exists():  # written after every step here: training is under way
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "training did not start"
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 75, err
    lines = err.strip().splitlines()
    assert lines[-1].startswith("medseg: error:") and "pre-emption signal" in lines[-1] and "--resume" in lines[-1]
    marker = json.loads((run / "preempted.json").read_text())
    assert marker["signal"] == "SIGTERM"
    state = torch.load(run / "state.pt", weights_only=True)
    assert state["counters"]["step"] == marker["step"] >= 1
    assert (run / "checkpoints" / "last" / "model.safetensors").is_file()

    # it resumes where it stopped (one more step here), and the marker goes away
    result = train(make_config(train={"epochs": 1000, "max_steps": marker["step"] + 1}), resume=run)
    assert result.steps == marker["step"] + 1 and result.stop_reason == "max_steps"
    assert not (run / "preempted.json").exists()
