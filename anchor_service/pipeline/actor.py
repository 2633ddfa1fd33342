"""What every engine-owning stage does when its actor starts."""

from __future__ import annotations

from typing import Any


def load_engine(spec: dict[str, Any], torch_threads: int | None):
    """Start the actor's torch threads (resolved by the recipe), then build the engine."""
    from anchor_service.compute import start_threads, with_threads
    from anchor_service.config import ModelSpec
    from anchor_service.engines.factory import make_engine

    start_threads(torch_threads, "pipeline actor")
    return make_engine(with_threads(ModelSpec(**spec), torch_threads))
