"""The training side of the kill hook (anchor_service/faults.py): inert unless ANCHOR_KILL_AT
names the training step."""

from __future__ import annotations

import os
import signal
import socket
import time
from typing import Any

from transformers import TrainerCallback

from anchor_service.faults import KILL_AT_ENV, kill_target

# How long the worker waits for Ray to end it once the driver is dead.
_WAIT_FOR_END_S = 600


class KillDriverAfterCheckpoints(TrainerCallback):
    """Rank 0 SIGKILLs the driver once `checkpoints` checkpoints are registered with Ray Train.

    It looks at the first step after the n-th save (HF saves after `on_step_end`, and Ray's
    report callback runs after this one), waits until Ray Train has registered every reported
    checkpoint (so a rerun finds it in the run's snapshot), kills the driver, and then blocks:
    no further step, checkpoint or model is written.
    """

    def __init__(self, checkpoints: int, driver_pid: int, driver_host: str) -> None:
        self.checkpoints = checkpoints
        self.driver_pid = driver_pid
        self.driver_host = driver_host

    def on_step_end(self, args, state, control, **kwargs):
        import ray.train

        if ray.train.get_context().get_world_rank() != 0:
            return
        if state.global_step <= self.checkpoints * args.save_steps:
            return
        if len(ray.train.get_all_reported_checkpoints(timeout_s=120)) < self.checkpoints:
            return
        if socket.gethostname() != self.driver_host:
            raise RuntimeError(
                f"{KILL_AT_ENV}: the driver runs on {self.driver_host}, this worker on "
                f"{socket.gethostname()}; the kill hook works on one machine only"
            )
        os.kill(self.driver_pid, signal.SIGKILL)
        time.sleep(_WAIT_FOR_END_S)
        os._exit(1)


def kill_callbacks(step: str) -> list[Any]:
    """[] unless ANCHOR_KILL_AT names `step`; then the callback that kills this driver."""
    target = kill_target(step)
    if target is None:
        return []
    return [KillDriverAfterCheckpoints(target, os.getpid(), socket.gethostname())]
