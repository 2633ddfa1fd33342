"""Placement of vLLM engines with tensor parallelism: Ray Data stage actors and Serve replicas.

The unit tests check the keywords for TP=1 (today's num_cpus/num_gpus) and TP=4 (a placement
group of TP bundles). The Ray tests run the real pipeline runner and a real Serve deployment
with CPU-only bundles (`tp_bundle: {CPU: 0.5}`) and check, from inside the actor, that it runs
in a placement group of the expected bundles, and that a child task (what vLLM's Ray workers
are) lands in the same group.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from anchor_service.config import (
    ConfigError,
    DeploymentConfig,
    ModelSpec,
    StageResources,
    load_config,
)
from anchor_service.engines.placement import (
    DEFAULT_TP_BUNDLE,
    serve_placement,
    stage_placement,
    tp_bundles,
    uses_tp_placement,
    vllm_executor_backend,
)
from anchor_service.serve.deployments import JUDGE, JudgeDeployment, deployment_options


def vllm_spec(tp: int) -> ModelSpec:
    return ModelSpec(name="meta-llama/Meta-Llama-3-70B-Instruct", engine="vllm",
                     tensor_parallel_size=tp)  # fmt: skip


# --- keywords ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec",
    [
        None,
        vllm_spec(1),
        ModelSpec(engine="hf", tensor_parallel_size=4),
        ModelSpec(engine="openai"),
    ],
    ids=["no-model", "vllm-tp1", "hf-tp4", "openai"],
)
def test_without_tensor_parallel_vllm_the_actor_reserves_its_stage_resources(spec):
    res = StageResources(num_cpus=4, num_gpus=1)
    placement = stage_placement(spec, res, "sample")
    assert placement.kwargs == {"num_cpus": 4, "num_gpus": 1}
    cpu_only = stage_placement(spec, StageResources(num_cpus=0.5), "judge")
    assert cpu_only.kwargs == {"num_cpus": 0.5, "num_gpus": None}
    dep = DeploymentConfig(num_cpus=2, num_gpus=1)
    assert serve_placement(spec, dep) == {"ray_actor_options": {"num_cpus": 2, "num_gpus": 1}}
    assert not uses_tp_placement(spec)


def test_tp4_stage_actor_holds_no_gpu_and_gets_a_placement_group_function():
    res = StageResources(num_cpus=4, num_gpus=1, actors=2)
    placement = stage_placement(vllm_spec(4), res, "sample")
    assert placement.kwargs["num_cpus"] == 4
    assert placement.kwargs["num_gpus"] is None
    assert callable(placement.kwargs["ray_remote_args_fn"])
    assert set(placement.kwargs) == {"num_cpus", "num_gpus", "ray_remote_args_fn"}
    assert placement.groups == []  # made per actor, when Ray Data starts it


def test_tp4_bundles_are_one_per_worker_and_the_first_also_holds_the_actor():
    bundles = tp_bundles(vllm_spec(4), actor_cpus=4)
    assert bundles == [{"GPU": 1, "CPU": 5}, {"GPU": 1, "CPU": 1}, {"GPU": 1, "CPU": 1},
                       {"GPU": 1, "CPU": 1}]  # fmt: skip
    assert DEFAULT_TP_BUNDLE == {"GPU": 1, "CPU": 1}  # not changed by the merge
    custom = tp_bundles(vllm_spec(2), actor_cpus=0, tp_bundle={"GPU": 1, "accelerator": 0.1})
    assert custom == [{"GPU": 1, "accelerator": 0.1}] * 2


@pytest.mark.parametrize("bundle", [{}, {"GPU": 0}, {"GPU": 1, "CPU": -1}, {"GPU": 2}])
def test_empty_or_negative_tp_bundle_is_refused_naming_the_model(bundle):
    with pytest.raises(ConfigError, match="Meta-Llama-3-70B.*tp_bundle|tp_bundle.*Meta-Llama"):
        tp_bundles(vllm_spec(2), actor_cpus=1, tp_bundle=bundle)


def test_tp4_serve_options_put_the_replica_in_bundle_zero_with_the_configured_strategy():
    dep = DeploymentConfig(num_cpus=2, num_gpus=1)
    options = serve_placement(vllm_spec(4), dep)
    assert options["ray_actor_options"] == {"num_cpus": 2, "num_gpus": 0}
    assert options["placement_group_strategy"] == "STRICT_PACK"
    assert options["placement_group_bundles"] == tp_bundles(vllm_spec(4), 2)
    spread = serve_placement(vllm_spec(4), DeploymentConfig(placement_strategy="PACK"))
    assert spread["placement_group_strategy"] == "PACK"


def test_deployment_options_accepted_by_serve_for_tp4_and_unchanged_for_tp1():
    dep = DeploymentConfig(num_cpus=2, num_gpus=1)
    assert deployment_options(dep, JUDGE, 2.0, vllm_spec(1)) == deployment_options(dep, JUDGE, 2.0)
    options = deployment_options(dep, JUDGE, 2.0, vllm_spec(4))
    # Serve validates the bundles and that the replica fits in the first one.
    deployment = JudgeDeployment.options(**options)
    assert deployment.ray_actor_options["num_gpus"] == 0
    assert len(options["placement_group_bundles"]) == 4


def test_tp_placement_keys_load_from_config_overrides():
    cfg = load_config(
        None,
        [
            "pipeline.judge.tp_bundle={GPU: 1, CPU: 2}",
            "pipeline.judge.placement_strategy=PACK",
            "serve.judge_deployment.tp_bundle={CPU: 4}",
        ],
    )
    assert cfg.pipeline.judge.tp_bundle == {"GPU": 1.0, "CPU": 2.0}
    assert cfg.pipeline.judge.placement_strategy == "PACK"
    assert cfg.pipeline.sample.placement_strategy == "STRICT_PACK"
    assert cfg.serve.judge_deployment.tp_bundle == {"CPU": 4.0}
    with pytest.raises(ConfigError, match="placement_strategy"):
        load_config(None, ["pipeline.judge.placement_strategy=NEARBY"])


def test_vllm_keeps_its_own_executor_without_tensor_parallelism_or_without_ray():
    import ray

    assert vllm_executor_backend(1, "GPU") is None
    if not ray.is_initialized():  # the Ray tests below check the "ray" case
        assert vllm_executor_backend(4, "GPU") is None


def test_vllm_cpu_tensor_parallel_workers_stay_local_processes():
    # vLLM-CPU has no Ray executor; left to itself it would pick one inside a placement group.
    assert vllm_executor_backend(2, "") == "mp"
    assert vllm_executor_backend(1, "") is None


# --- real Ray ---------------------------------------------------------------------------------

CPU_BUNDLE = {"CPU": 0.5}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def placement_report() -> dict[str, Any]:
    """From inside an actor: its placement group, and the group a child task lands in."""
    import ray
    from ray.util import get_current_placement_group

    pg = get_current_placement_group()

    @ray.remote(num_cpus=0.5)
    def child() -> str | None:
        inner = get_current_placement_group()
        return inner.id.hex() if inner else None

    return {
        "pg": pg.id.hex() if pg else None,
        "bundles": [dict(b) for b in pg.bundle_specs] if pg else [],
        "child_pg": ray.get(child.remote(), timeout=60),
    }


class PlacementProbe:
    """A stage class in place of the vLLM one: reports where its actor runs."""

    COLUMNS = ["prompt_id", "pg", "n_bundles", "bundle0_cpu", "child_pg"]

    def __init__(self, spec: dict[str, Any]) -> None:
        self.report = placement_report()

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        r = self.report
        return pd.DataFrame(
            {
                "prompt_id": batch["prompt_id"],
                "pg": r["pg"],
                "n_bundles": len(r["bundles"]),
                "bundle0_cpu": r["bundles"][0].get("CPU", 0) if r["bundles"] else 0,
                "child_pg": r["child_pg"],
            }
        )


class PlacementProbeReplica:
    """A Serve replica in place of the judge: reports where it runs."""

    def __call__(self) -> dict[str, Any]:
        return placement_report()


@pytest.mark.ray
def test_stage_actor_runs_in_a_tp_placement_group_released_after_the_stage(
    local_ray, tmp_path: Path
):
    from anchor_service.pipeline.runner import StageSpec, run_stage
    from anchor_service.rundir import RunDir

    assert vllm_executor_backend(2, "GPU") == "ray"
    spec = vllm_spec(2)
    res = StageResources(actors=1, batch_size=2, num_cpus=0.5, tp_bundle=CPU_BUNDLE)
    rows = pd.DataFrame({"prompt_id": [f"p/{i}" for i in range(4)]})
    stage = StageSpec(
        name="probe",
        rows=rows,
        keys=("prompt_id",),
        stage_cls=PlacementProbe,
        args={"spec": spec.model_dump()},
        resources=res,
        out_path=tmp_path / "run" / "probe.parquet",
        fingerprint_parts=("fp",),
        model=spec,
        progress=False,
    )
    out = run_stage(RunDir(tmp_path / "run"), stage)
    assert len(out) == 4
    assert out["pg"].notna().all()
    assert (out["n_bundles"] == 2).all()
    assert (out["bundle0_cpu"] == 1.0).all()  # the worker's 0.5 plus the actor's 0.5
    assert (out["child_pg"] == out["pg"]).all()  # vLLM's workers would land in it too
    table = local_ray.util.placement_group_table()
    for pg_id in out["pg"].unique():
        assert table[pg_id]["state"] == "REMOVED", "the stage's placement group outlived it"


@pytest.mark.ray
def test_serve_replica_runs_in_a_tp_placement_group(local_ray):
    from ray import serve

    dep = DeploymentConfig(num_cpus=0.5, tp_bundle=CPU_BUNDLE, placement_strategy="PACK")
    options = deployment_options(dep, "placement-probe", 1.0, vllm_spec(2))
    serve.start(http_options={"host": "127.0.0.1", "port": free_port()})
    try:
        app = serve.deployment(PlacementProbeReplica).options(**options).bind()
        handle = serve.run(app, name="placement-probe", route_prefix=None)
        report = handle.remote().result(timeout_s=60)
        assert report["bundles"] == [{"CPU": 1.0}, {"CPU": 0.5}]
        assert report["child_pg"] == report["pg"]
        assert local_ray.util.placement_group_table()[report["pg"]]["strategy"] == "PACK"
    finally:
        serve.delete("placement-probe")
        serve.shutdown()
