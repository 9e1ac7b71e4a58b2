"""Pre-emption: SIGTERM / SIGUSR1 (SLURM ``--signal``, ``scancel``, torchrun shutdown) -> save and stop.

The handler only records the signal; the loop finishes the current step, saves the last checkpoint
and ``state.pt``, writes ``<run_dir>/preempted.json`` and raises :class:`TrainingPreempted`, whose
exit code is :data:`EXIT_PREEMPTED` = 75 (``EX_TEMPFAIL`` from sysexits.h: "temporary failure, try
again"). The sbatch scripts requeue the job on that code (or on ``preempted.json`` when torchrun,
which reports any failed worker as 1, sits in between).
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType, TracebackType
from typing import Any

from medseg.errors import TrainingError

__all__ = ["EXIT_PREEMPTED", "PREEMPT_MARKER", "TrainingPreempted", "PreemptionHandler"]

log = logging.getLogger(__name__)

#: process exit code after a pre-emption: EX_TEMPFAIL (sysexits.h)
EXIT_PREEMPTED = 75
#: file written into the run folder when a run was pre-empted (removed when it resumes)
PREEMPT_MARKER = "preempted.json"


class TrainingPreempted(TrainingError):
    """Training stopped on SIGTERM/SIGUSR1 after saving a resumable state (exit code 75)."""

    exit_code = EXIT_PREEMPTED


class PreemptionHandler:
    """Context manager that records SIGTERM/SIGUSR1 instead of dying (main thread only).

    ``requested`` is the signal name once one arrived. Previous handlers are restored on exit.
    """

    SIGNALS = tuple(s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGUSR1", None)) if s is not None)

    def __init__(self) -> None:
        self.requested: str | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested is None:
            log.warning("received %s: finishing the current step, then saving and stopping",
                        signal.Signals(signum).name)
        self.requested = signal.Signals(signum).name

    def __enter__(self) -> PreemptionHandler:
        if threading.current_thread() is threading.main_thread():
            for s in self.SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        else:
            log.info("not in the main thread: SIGTERM/SIGUSR1 are not intercepted")
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        for s, previous in self._previous.items():
            signal.signal(s, previous)
        self._previous.clear()
