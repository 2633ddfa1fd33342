"""What one process computes with: torch's threads, resolved once when it starts.

Every process that runs a model resolves its threads with one precedence, at its start:

1. the placement's `torch_threads`: `pipeline.<stage>` for a Ray Data actor,
   `serve.<deployment>` for a Serve replica, `<sft|dpo>.scaling` for a Ray Train worker;
2. else the model's `torch_threads` (`ModelSpec`; a Train worker has no model knob);
3. else the CPUs Ray reserved for the process (`num_cpus` / `cpus_per_worker`, rounded up,
   at least 1), as Ray itself would set OMP_NUM_THREADS;
4. else, in a process Ray did not place (the CLI, a script), torch's own default.

`start_threads` is the one place that calls `torch.set_num_threads`, before the process
builds an engine; the engine gets the resolved number in its spec (`with_threads`; vLLM-CPU
binds that many cores) and never sets threads itself. Batch sizes have one owner each and
are not resolved here (docs/ARCHITECTURE.md "Resources").
"""

from __future__ import annotations

import logging
import math

from anchor_service.config import ModelSpec

log = logging.getLogger(__name__)


def resolve_threads(
    placement: int | None, model: ModelSpec | None = None, cpus: float | None = None
) -> int | None:
    """The process's torch threads by the precedence above; None: leave torch's default."""
    if placement:
        return placement
    if model is not None and model.torch_threads:
        return model.torch_threads
    if cpus is not None:
        return max(1, math.ceil(cpus))
    return None


def start_threads(threads: int | None, what: str = "process") -> int | None:
    """Set torch's thread count once, at process start (None: leave torch's default)."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    log.debug("%s: %d torch threads", what, torch.get_num_threads())
    return threads


def with_threads(spec: ModelSpec, threads: int | None) -> ModelSpec:
    """The spec an engine is built from: the process's resolved threads in `torch_threads`."""
    if threads is None or spec.torch_threads == threads:
        return spec
    return spec.model_copy(update={"torch_threads": threads})
