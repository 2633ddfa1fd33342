"""`cluster.model_cache` reaches every worker of the job as ANCHOR_MODEL_CACHE (real Ray)."""

from __future__ import annotations

import json
import os

import pytest

from anchor_service import cluster
from anchor_service.config import ClusterConfig, ConfigError
from anchor_service.hub_download import MODEL_CACHE_ENV, cache_dir


@pytest.fixture(autouse=True)
def _restore_model_cache_env():
    """model_cache_env sets ANCHOR_MODEL_CACHE in this process: put it back afterwards."""
    before = os.environ.get(MODEL_CACHE_ENV)
    yield
    if before is None:
        os.environ.pop(MODEL_CACHE_ENV, None)
    else:
        os.environ[MODEL_CACHE_ENV] = before


def _job_env(monkeypatch, env_vars: dict[str, str]) -> None:
    job = {"runtime_env": {"env_vars": env_vars}}
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", json.dumps(job))


def test_unset_model_cache_adds_nothing(monkeypatch):
    monkeypatch.delenv(MODEL_CACHE_ENV, raising=False)
    assert cluster.model_cache_env(ClusterConfig()) == {}
    assert MODEL_CACHE_ENV not in os.environ


def test_job_runtime_env_with_the_same_cache_is_not_repeated_and_a_different_one_is_refused(
    monkeypatch, tmp_path
):
    monkeypatch.delenv(MODEL_CACHE_ENV, raising=False)
    cfg = ClusterConfig(model_cache=str(tmp_path / "models"))
    _job_env(monkeypatch, {MODEL_CACHE_ENV: str(tmp_path / "models")})
    assert cluster.model_cache_env(cfg) == {}
    assert os.environ[MODEL_CACHE_ENV] == str(tmp_path / "models")
    _job_env(monkeypatch, {MODEL_CACHE_ENV: "/elsewhere"})
    with pytest.raises(
        ConfigError, match="the job's runtime_env sets ANCHOR_MODEL_CACHE=/elsewhere"
    ):
        cluster.model_cache_env(cfg)


def test_local_cluster_workers_see_the_model_cache(monkeypatch, tmp_path):
    import ray

    if ray.is_initialized():
        ray.shutdown()
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv("RAY_JOB_CONFIG_JSON_ENV_VAR", raising=False)
    monkeypatch.delenv(MODEL_CACHE_ENV, raising=False)
    for key in cluster.LOCAL_TRAIN_ENV | cluster.LEAN_TRAIN_ENV:
        monkeypatch.delenv(key, raising=False)
    shared = tmp_path / "shared-models"
    cluster.ensure_ray(ClusterConfig(num_cpus=1, model_cache=str(shared)))
    try:

        @ray.remote
        def worker_cache() -> tuple[str, dict]:
            env = ray.get_runtime_context().runtime_env.get("env_vars") or {}
            return str(cache_dir("model")), env

        # Through the job's runtime_env, so workers on other nodes get it as well.
        seen, env = ray.get(worker_cache.remote())
        assert seen == str(shared) and env[MODEL_CACHE_ENV] == str(shared)
        assert cache_dir("model") == shared  # the driver resolves there too
    finally:
        ray.shutdown()
