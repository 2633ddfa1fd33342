"""A test hook: the run kills itself with SIGKILL at a named point inside one step.

Inert unless the environment variable `ANCHOR_KILL_AT` is set, to `<step>:<n>`. It exists so
that tests/test_faults.py can cut a run at a known point of every step and check that the rerun
resumes to the same content; nothing else sets it. The points:

- a Ray Data stage (`sample`, `judge`, `eval-answers-sft`, ...; pipeline/runner.py): the driver
  kills itself once it has written `n` part files of the stage in this process;
- training (`sft`, `dpo-<strategy>`; training/faults.py): once `n` checkpoints of the training
  run are registered with Ray Train, its rank-0 worker kills the driver, then waits to be
  ended with it (Ray ends a dead driver's actors and workers);
- `report` (report/summary.py): the driver kills itself after summary.json is written.

SIGKILL of the driver is what `kill -9` of the run does: no cleanup, no atexit, nothing flushed.
"""

from __future__ import annotations

import os
import signal

KILL_AT_ENV = "ANCHOR_KILL_AT"


def kill_target(step: str) -> int | None:
    """`n` when `ANCHOR_KILL_AT` is `<step>:<n>` for this step, else None."""
    spec = os.environ.get(KILL_AT_ENV)
    if not spec:
        return None
    name, _, count = spec.rpartition(":")
    if not name or not count.isdigit() or int(count) < 1:
        raise ValueError(f"{KILL_AT_ENV}={spec!r}: expected '<step>:<n>' with n >= 1")
    return int(count) if name == step else None


def kill_point(step: str, done: int) -> None:
    """Called after `done` units of `step` are written: SIGKILL this process at the target."""
    target = kill_target(step)
    if target is not None and done >= target:
        os.kill(os.getpid(), signal.SIGKILL)
