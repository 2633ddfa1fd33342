"""Where a vLLM engine with tensor parallelism runs: one Ray placement group per engine.

A vLLM engine with `tensor_parallel_size` = k > 1 runs k workers, one per GPU. As in Ray's
own LLM libraries (`ray.data.llm`'s vLLM stage, Ray Serve LLM), the actor that owns the
engine (a Ray Data stage actor or a Serve replica) is scheduled in bundle 0 of a placement
group of k bundles, capturing its child tasks, and vLLM's Ray executor
(`distributed_executor_backend="ray"`) starts one worker in each bundle. The actor itself
holds no GPU; bundle 0 carries the actor's CPUs on top of its worker's bundle (as Serve LLM
merges them), so every worker gets a full bundle.

For tensor_parallel_size 1 and for engines other than vLLM everything is as before: the actor
reserves the stage's or deployment's num_cpus/num_gpus and no placement group is made.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from anchor_service.config import ConfigError, DeploymentConfig, ModelSpec, StageResources

log = logging.getLogger(__name__)

# One tensor-parallel worker's bundle when the config names none (Ray Data LLM's default).
DEFAULT_TP_BUNDLE: dict[str, float] = {"GPU": 1.0, "CPU": 1.0}


def uses_tp_placement(spec: ModelSpec | None) -> bool:
    """Whether `spec`'s engine needs a placement group: vLLM with tensor_parallel_size > 1."""
    return spec is not None and spec.engine == "vllm" and spec.tensor_parallel_size > 1


def tp_bundles(
    spec: ModelSpec, actor_cpus: float, tp_bundle: dict[str, float] | None = None
) -> list[dict[str, float]]:
    """The placement group bundles of one engine: one per tensor-parallel worker.

    Bundle 0 also holds the owning actor's `actor_cpus` (the actor is placed there).
    """
    worker = dict(DEFAULT_TP_BUNDLE if tp_bundle is None else tp_bundle)
    bad = {k: v for k, v in worker.items() if v < 0}
    if bad or not any(v > 0 for v in worker.values()) or worker.get("GPU", 0) > 1:
        # vLLM's Ray executor runs one worker per bundle and refuses bundles of several GPUs.
        raise ConfigError(
            f"tp_bundle {worker} of model '{spec.name}': a tensor-parallel worker's bundle needs "
            "at least one positive resource, none negative and at most 1 GPU, "
            "e.g. {GPU: 1, CPU: 1}"
        )
    bundles = [dict(worker) for _ in range(spec.tensor_parallel_size)]
    if actor_cpus > 0:
        bundles[0]["CPU"] = bundles[0].get("CPU", 0.0) + actor_cpus
    return bundles


@dataclass
class StagePlacement:
    """`map_batches` keywords of a stage's actor pool, and the placement groups it made.

    The placement groups live as long as the driver unless removed: `release()` them when
    the stage's dataset is consumed, or the GPUs stay reserved for the stages after it.
    """

    kwargs: dict[str, Any]
    groups: list[Any] = field(default_factory=list)

    def release(self) -> None:
        """Remove the placement groups made for this stage's actors (kills what ran in them)."""
        from ray.util import remove_placement_group

        while self.groups:
            remove_placement_group(self.groups.pop())


def stage_placement(spec: ModelSpec | None, res: StageResources, stage: str) -> StagePlacement:
    """Resources of a Ray Data stage's actors: today's num_cpus/num_gpus, or, for vLLM with
    tensor parallelism, a placement group of TP bundles per actor (`ray_remote_args_fn`)."""
    if spec is None or not uses_tp_placement(spec):
        return StagePlacement({"num_cpus": res.num_cpus, "num_gpus": res.num_gpus or None})
    bundles = tp_bundles(spec, res.num_cpus, res.tp_bundle)
    _note_ignored_gpus(res.num_gpus, spec, f"pipeline.{stage}")
    placement = StagePlacement({"num_cpus": res.num_cpus, "num_gpus": None})
    groups = placement.groups
    strategy = res.placement_strategy

    # A closure, not a bound method: Ray Data may copy the operator's arguments, and the
    # groups list must stay the one `release()` empties.
    def remote_args() -> dict[str, Any]:
        import ray
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        pg = ray.util.placement_group(bundles, strategy=strategy)
        groups.append(pg)
        log.info(
            "%s: actor placement group %s, %d bundles %s (%s)",
            stage,
            pg.id.hex()[:8],
            len(bundles),
            bundles,
            strategy,
        )
        return {
            "scheduling_strategy": PlacementGroupSchedulingStrategy(
                pg, placement_group_bundle_index=0, placement_group_capture_child_tasks=True
            )
        }

    placement.kwargs["ray_remote_args_fn"] = remote_args
    return placement


def serve_placement(spec: ModelSpec | None, dep: DeploymentConfig) -> dict[str, Any]:
    """`Deployment.options` keywords for a replica's resources: today's ray_actor_options, or,
    for vLLM with tensor parallelism, also `placement_group_bundles`/`_strategy` (Serve puts
    the replica in bundle 0 and its child actors, vLLM's workers, in the group)."""
    if spec is None or not uses_tp_placement(spec):
        return {"ray_actor_options": {"num_cpus": dep.num_cpus, "num_gpus": dep.num_gpus}}
    _note_ignored_gpus(dep.num_gpus, spec, "serve deployment")
    return {
        "ray_actor_options": {"num_cpus": dep.num_cpus, "num_gpus": 0},
        "placement_group_bundles": tp_bundles(spec, dep.num_cpus, dep.tp_bundle),
        "placement_group_strategy": dep.placement_strategy,
    }


def vllm_executor_backend(tensor_parallel_size: int, ray_device_key: str) -> str | None:
    """vLLM's `distributed_executor_backend` for an engine on a platform whose Ray resource is
    `ray_device_key` (vLLM's `current_platform.ray_device_key`; "" where vLLM has no Ray
    executor, e.g. CPU).

    Tensor parallelism under Ray: `ray`, so the workers start in the current placement group
    (vLLM would refuse a TP actor that sees fewer GPUs than TP otherwise). Where vLLM has no
    Ray executor: `mp`, local processes (vLLM would pick `ray` inside a placement group and
    fail). Otherwise None: vLLM's own choice.
    """
    if tensor_parallel_size <= 1:
        return None
    if not ray_device_key:
        return "mp"
    import ray

    return "ray" if ray.is_initialized() else None


def _note_ignored_gpus(num_gpus: float, spec: ModelSpec, where: str) -> None:
    if num_gpus:
        log.info(
            "%s: num_gpus=%s not reserved for the actor of %s (tensor_parallel_size=%d): "
            "its placement group's bundles hold the GPUs",
            where,
            num_gpus,
            spec.name,
            spec.tensor_parallel_size,
        )
