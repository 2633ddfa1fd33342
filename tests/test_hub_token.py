"""The hub token never travels in a Ray runtime_env (the dashboard and job API show those)."""

from __future__ import annotations

from pathlib import Path

import yaml

from anchor_service import cluster
from anchor_service.config import ClusterConfig, TrainScaling
from anchor_service.training.ray_trainer import worker_env_vars

ROOT = Path(__file__).resolve().parents[1]
TOKEN_VARS = {"HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"}


def _env_var_names(node: object) -> set[str]:
    """Every key under an `env_vars` mapping, also inside YAML held in strings."""
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "env_vars" and isinstance(value, dict):
                found |= set(value)
            found |= _env_var_names(value)
    elif isinstance(node, list):
        for item in node:
            found |= _env_var_names(item)
    elif isinstance(node, str) and "\n" in node:  # runtimeEnvYAML, serveConfigV2
        try:
            found |= _env_var_names(yaml.safe_load(node))
        except yaml.YAMLError:
            pass
    return found


def test_no_runtime_env_in_the_repository_carries_the_token():
    files = [
        *sorted((ROOT / "jobs").glob("runtime_env*.yaml")),
        *sorted((ROOT / "clusters").rglob("*.yaml")),
    ]
    checked = 0
    for path in files:
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            names = _env_var_names(doc)
            checked += bool(names)
            assert not names & TOKEN_VARS, f"{path} puts {names & TOKEN_VARS} in env_vars"
    assert checked >= 3  # jobs/runtime_env.yaml, the RayJob, the Serve configs


def test_env_vars_the_code_passes_to_workers_never_include_the_token(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    monkeypatch.delenv("RAY_JOB_CONFIG_JSON_ENV_VAR", raising=False)
    monkeypatch.setenv("ANCHOR_MODEL_CACHE", str(tmp_path))  # restored by monkeypatch
    assert not set(worker_env_vars(TrainScaling())) & TOKEN_VARS
    passed = cluster.model_cache_env(ClusterConfig(model_cache=str(tmp_path)))
    assert set(passed) == {"ANCHOR_MODEL_CACHE"}
