"""Attach to a Ray cluster, or start a local one sized for a small machine."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from anchor_service.config import ClusterConfig, ConfigError
from anchor_service.hub_download import MODEL_CACHE_ENV

log = logging.getLogger(__name__)

# Ray settings of a `lean` local cluster (ClusterConfig.lean): metrics collection and
# export off, task events batched every minute: less background work on a small machine
# (docs/DESIGN.md "Ray overhead on small machines").
LEAN_SYSTEM_CONFIG = {
    "enable_metrics_collection": False,
    "metrics_report_interval_ms": 600_000,
    "task_events_report_interval_ms": 60_000,
}


# Ray starts worker processes at niceness 15, below the driver, raylet and GCS. On a local
# cluster the workers are the work (stage actors, training workers), so they run at the
# driver's priority; it matters when other work shares the machine (on an idle one it makes
# no measurable difference: docs/DESIGN.md). `ray start` clusters keep Ray's default.
#
# Every Ray Python worker wakes 100 times a second (the core worker's signal check, fixed at
# 10 ms), idle or not, and on 2 cores each wake-up takes a core from training or sampling. Ray
# prestarts one idle worker per CPU for the first driver; they then idle through the run. A
# local cluster starts workers on demand instead, and runs no preemption watcher (below);
# the wake-ups saved: docs/DESIGN.md "Ray overhead on small machines".
LOCAL_SYSTEM_CONFIG = {"worker_niceness": 0, "prestart_worker_first_driver": False}

# Ray Train settings of a local cluster, set in the driver's environment unless set there
# already (Ray Train passes them on to its controller and workers). The preemption watcher is
# an actor that polls the cluster for nodes about to be preempted (spot instances); a local
# cluster has one node, which is not preempted.
LOCAL_TRAIN_ENV = {"RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0"}
# With `lean` (metrics collection off), Ray Train's metrics callbacks have nowhere to report.
LEAN_TRAIN_ENV = {"RAY_TRAIN_METRICS_ENABLED": "0"}


def quiet_worker_logs() -> None:
    """Worker-process setup hook of local clusters (runtime_env worker_process_setup_hook).

    Without the dashboard there is no state API, and Ray Train's PlacementGroupCleaner then
    logs "Failed to query Ray Train Controller actor state" every second of every training
    run. Its job (removing a crashed controller's placement group) does not arise locally: the
    cluster ends with the driver. Other warnings stay.
    """
    logging.getLogger(
        "ray.train.v2._internal.execution.controller.placement_group_cleaner"
    ).setLevel(logging.ERROR)


def _job_env_vars() -> dict[str, str]:
    """The env_vars of the runtime_env a submitted job was started with (`ray job submit`)."""
    raw = os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR")
    if not raw:
        return {}
    try:
        env = (json.loads(raw).get("runtime_env") or {}).get("env_vars") or {}
    except (ValueError, AttributeError):
        return {}
    return dict(env) if isinstance(env, dict) else {}


def model_cache_env(cfg: ClusterConfig) -> dict[str, str]:
    """The env_vars that give every worker `cfg.model_cache` (also set in this process).

    Empty when unset, or when the job's own runtime_env already sets the same value (Ray
    refuses a driver runtime_env that repeats one of the job's variables)."""
    if not cfg.model_cache:
        return {}
    path = str(Path(cfg.model_cache).expanduser().resolve())
    job = _job_env_vars().get(MODEL_CACHE_ENV)
    if job is not None and job != path:
        raise ConfigError(
            f"cluster.model_cache is {path} but the job's runtime_env sets {MODEL_CACHE_ENV}="
            f"{job}; set one of them"
        )
    os.environ[MODEL_CACHE_ENV] = path
    return {} if job is not None else {MODEL_CACHE_ENV: path}


def ensure_ray(cfg: ClusterConfig | None = None) -> None:
    """ray.init once: `cfg.address`, else RAY_ADDRESS, else a local cluster with cfg.num_cpus."""
    import ray

    if ray.is_initialized():
        return
    cfg = cfg or ClusterConfig()
    address = cfg.address or os.environ.get("RAY_ADDRESS")
    env_vars = model_cache_env(cfg)
    # Workers inherit the driver's logging level; keep Ray's own chatter down.
    kwargs = {"log_to_driver": True, "logging_level": logging.WARNING}
    if address:
        log.info("attaching to Ray at %s", address)
        ray.init(
            address=address, runtime_env={"env_vars": env_vars} if env_vars else None, **kwargs
        )
        return
    log.info("starting a local Ray cluster with %s logical CPUs", cfg.num_cpus)
    for key, value in (LOCAL_TRAIN_ENV | (LEAN_TRAIN_ENV if cfg.lean else {})).items():
        os.environ.setdefault(key, value)
    ray.init(
        num_cpus=cfg.num_cpus,
        object_store_memory=cfg.object_store_memory,
        # The dashboard adds a dozen processes that wake up all the time; `ray start --head`
        # clusters (jobs, the launcher YAMLs) have it.
        include_dashboard=False,
        runtime_env={
            "worker_process_setup_hook": "anchor_service.cluster.quiet_worker_logs",
            **({"env_vars": env_vars} if env_vars else {}),
        },
        _system_config=LOCAL_SYSTEM_CONFIG | (LEAN_SYSTEM_CONFIG if cfg.lean else {}),
        **kwargs,
    )
