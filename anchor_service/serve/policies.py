"""The policy models one replica serves, by name (the OpenAI routes' `model`).

Without a run directory the replica serves one model, `policy` (the config's policy). With
`serve.policy_run_dir` it serves the run's models: `sft` (models/sft, METHOD.md step 0; the
base policy itself when SFT was off) and every trained strategy (`anchor`, `rank`, ...: the
LoRA adapters in models/<strategy>) on that one SFT model, chosen per request; `base` (the
config's policy, a second engine) only with `serve.serve_base`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from anchor_service.config import ModelSpec
from anchor_service.engines.base import Engine, EngineError
from anchor_service.engines.factory import make_adapter_engines, make_engine
from anchor_service.rundir import RunDir

PLAIN = "policy"  # the one model of a replica serving no run
SFT = "sft"
BASE = "base"


@dataclass
class PolicyModels:
    """Engines by served name, the name /v1/explain uses, and each name's model card."""

    engines: dict[str, Engine]
    default: str
    cards: list[dict[str, Any]]


def run_adapters(run_dir: Path) -> dict[str, str]:
    """Strategy name -> adapter directory, for every models/<strategy> holding a PEFT adapter."""
    models = RunDir(run_dir, create=False).model(SFT).parent
    if not models.is_dir():
        raise EngineError(
            f"serve.policy_run_dir {run_dir}: no models/ directory; point it at a run directory "
            "whose sft (and dpo) stages have finished"
        )
    return {
        d.name: str(d)
        for d in sorted(models.iterdir())
        if d.name != SFT and (d / "adapter_config.json").is_file()
    }


def policy_models(
    spec: ModelSpec,
    run_dir: str | None,
    strategy: str,
    serve_base: bool = False,
    continuous_batching: bool = False,
) -> PolicyModels:
    """Build the replica's engines (module docstring); `spec` is the config's policy."""
    if not run_dir:
        engine = make_engine(spec, continuous_batching=continuous_batching)
        return PolicyModels({PLAIN: engine}, PLAIN, [_card(PLAIN, engine, spec, None)])
    root = Path(run_dir).expanduser()
    adapters = run_adapters(root)
    if strategy != SFT and strategy not in adapters:
        found = ", ".join([SFT, *adapters])
        raise EngineError(
            f"serve.policy_run_dir {root}: no DPO adapter for strategy '{strategy}' "
            f"({root}/models/{strategy}/adapter_config.json is missing); the run has: {found}. "
            "Set serve.policy_strategy to one of them, or run the pipeline's dpo stage"
        )
    sft_dir = RunDir(root, create=False).model(SFT)
    sft_is_base = not (sft_dir / "config.json").is_file()
    sft_spec = spec if sft_is_base else spec.model_copy(update={"name": str(sft_dir)})
    views = make_adapter_engines(sft_spec, adapters, continuous_batching=continuous_batching)
    engines: dict[str, Engine] = {SFT: views[None]}
    cards = [_card(SFT, views[None], sft_spec, None)]
    for name in adapters:
        engines[name] = views[name]
        cards.append(_card(name, views[name], sft_spec, SFT))
    if serve_base:
        base = (
            views[None]
            if sft_is_base
            else make_engine(spec, continuous_batching=continuous_batching)
        )
        engines[BASE] = base
        cards.append(_card(BASE, base, spec, None))
    return PolicyModels(engines, strategy, cards)


def _card(name: str, engine: Engine, spec: ModelSpec, parent: str | None) -> dict[str, Any]:
    return {
        "id": name,
        "root": engine.model_id,
        "parent": parent,
        "engine": spec.engine,
        # Only the hf engine reports token logprobs (engines/base.SamplingParams.logprobs).
        "logprobs": spec.engine == "hf",
    }
