"""torch DDP plumbing: process group set-up from the ``torchrun`` environment, collectives, clean teardown.

A run is distributed when ``WORLD_SIZE > 1`` (set by ``torchrun``/``srun``): NCCL on CUDA (one GPU per
process, ``cuda:LOCAL_RANK``), gloo on CPU. Rank 0 logs and writes checkpoints; every rank trains.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from medseg.errors import ConfigError
from medseg.utils import resolve_device

__all__ = ["DistContext", "init_distributed"]

log = logging.getLogger(__name__)


@dataclass
class DistContext:
    """This process's place in the run: ``rank`` of ``world_size``, its ``device``."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    owns_group: bool = False

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def any_flags(self, *flags: bool) -> list[bool]:
        """Element-wise OR of boolean flags over all ranks (one all-reduce; local when not distributed)."""
        if not self.distributed:
            return [bool(f) for f in flags]
        t = torch.tensor([float(f) for f in flags], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return [bool(v > 0) for v in t.tolist()]

    def sum(self, *values: float) -> list[float]:
        """Element-wise sum of numbers over all ranks."""
        if not self.distributed:
            return [float(v) for v in values]
        t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return [float(v) for v in t.tolist()]

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj`` (picklable), in rank order, on every rank."""
        if not self.distributed:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if not self.distributed:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def broadcast_buffers(self, module: torch.nn.Module) -> None:
        """Copy rank 0's buffers (BatchNorm running statistics) to every rank.

        DDP broadcasts them at the start of each forward pass, so after the last step every rank
        holds statistics of its own last batch; this makes validation and saved state agree.
        """
        if not self.distributed:
            return
        for buf in module.buffers():
            dist.broadcast(buf.data, src=0)

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def shutdown(self, clean: bool = True) -> None:
        """Destroy the process group we created.

        After a successful run: barrier, destroy, then a short pause. Without the pause a gloo rank
        that exits first can tear down the TCP store while the other rank is still closing its
        connections, which aborts that rank after a run that succeeded. After an error there is no
        barrier (the other ranks may never arrive).
        """
        if not (self.owns_group and dist.is_available() and dist.is_initialized()):
            return
        try:
            if clean:
                dist.barrier()
            dist.destroy_process_group()
        except Exception as e:  # teardown must not hide the run's own result or error
            log.warning("process group teardown: %s", e)
        if clean:
            time.sleep(0.5)


def init_distributed(device: str = "auto") -> DistContext:
    """Join the process group described by the environment, or a single-process context.

    ``device`` is ``train.device`` ("auto", "cpu", "cuda", "cuda:1", ...). Distributed CUDA runs use
    ``cuda:LOCAL_RANK`` and NCCL; CPU runs use gloo.
    """
    dev = resolve_device(device)
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        if dev.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError("train.device is CUDA but no CUDA GPU is available", path="train.device",
                              hint="set train.device=cpu (or auto)")
        return DistContext(device=torch.device(dev))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if dev.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError("train.device is CUDA but no CUDA GPU is available", path="train.device")
        torch.cuda.set_device(local_rank)
        device_t, backend = torch.device("cuda", local_rank), "nccl"
    else:
        device_t, backend = torch.device("cpu"), "gloo"
    owns = False
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
        owns = True
    log.info("rank %d/%d on %s (%s)", rank, world, device_t, backend)
    return DistContext(rank=rank, world_size=world, local_rank=local_rank, device=device_t, owns_group=owns)
