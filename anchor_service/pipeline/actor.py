"""What every engine-owning stage does when its actor starts."""

from __future__ import annotations

from typing import Any


def load_engine(spec: dict[str, Any], torch_threads: int | None):
    """Set torch's thread count (Ray sets OMP threads from num_cpus), then build the engine."""
    from anchor_service.config import ModelSpec
    from anchor_service.engines.factory import make_engine

    if torch_threads:
        import torch

        torch.set_num_threads(torch_threads)
    return make_engine(ModelSpec(**spec))
