"""The HTTP service as a Ray Serve application: a FastAPI ingress (serve/routes.py behind
serve/guard.py) in front of the judge and policy deployments (serve/deployments.py).

Overload is bounded on purpose: every deployment has `max_queued_requests`, and a request
beyond it is answered 503 with `Retry-After` (by Serve's proxy for the ingress, by the ingress
for the judge and policy). The only 5xx this service sends is 503: an engine failure, a dead
replica or anything unexpected is answered 503 with `Retry-After`, never 500.

`build_application(cfg)` builds the Serve application; `build_app(args)` is the builder for
`serve run` / `serve deploy` config files; `start(cfg)` runs it on a (local or attached) cluster.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI
from ray import serve
from ray.serve.handle import DeploymentHandle

from anchor_service.config import ConfigError, RunConfig, ServeConfig, load_config
from anchor_service.demo.oracle import is_oracle
from anchor_service.serve import metrics as m
from anchor_service.serve.auth import load_token
from anchor_service.serve.deployments import (
    JUDGE,
    POLICY,
    JudgeDeployment,
    PolicyDeployment,
    deployment_options,
)
from anchor_service.serve.routes import create_api

log = logging.getLogger(__name__)

INGRESS = "ingress"


@serve.deployment
@serve.ingress()
class Gateway:
    """The ingress deployment: HTTP in, judge and policy deployments behind it."""

    def __init__(
        self, judge: DeploymentHandle, policy: DeploymentHandle, serve_cfg: dict[str, Any]
    ) -> None:
        self.cfg = ServeConfig.model_validate(serve_cfg)
        self.judge = judge
        self.policy = policy
        # Read here, in the replica: on a cluster the secret lives where the replica runs.
        self.token = load_token(self.cfg.token_file)
        if self.token is None:
            log.warning("no API token configured (ANCHOR_API_TOKEN or serve.token_file): open")
        self.metrics = m.ServiceMetrics()

    def __serve_build_asgi_app__(self) -> FastAPI:
        return create_api(self.cfg, self.judge, self.policy, self.token, self.metrics)


def build_application(cfg: RunConfig) -> Any:
    """The Serve application of a config: judge and policy deployments behind the ingress."""
    s = cfg.serve
    retry = float(s.limits.retry_after_s)
    judge_spec = None if is_oracle(cfg.judge) else cfg.judge.model
    # Only the fields the config set: the replica rebuilds the specs, and an unset field keeps
    # its meaning there (a vLLM-CPU KV cache sized by us unless gpu_memory_utilization is set).
    judge = JudgeDeployment.options(
        **deployment_options(s.judge_deployment, JUDGE, retry, judge_spec)
    ).bind(
        cfg.judge.model_dump(mode="json", exclude_unset=True),
        s.judge_deployment.model_dump(mode="json"),
    )
    policy = PolicyDeployment.options(
        **deployment_options(s.policy_deployment, POLICY, retry, cfg.policy)
    ).bind(
        cfg.policy.model_dump(mode="json", exclude_unset=True),
        s.policy_deployment.model_dump(mode="json"),
        s.policy_run_dir,
        s.policy_strategy,
        s.serve_base,
    )
    return Gateway.options(**deployment_options(s.ingress_deployment, INGRESS, retry)).bind(
        judge, policy, s.model_dump(mode="json")
    )


def build_app(args: dict[str, Any]) -> Any:
    """Application builder for `serve run` / `serve deploy` (`args: {config, overrides}`).

    `config` is a YAML file readable where the application is built (the working_dir of the
    runtime_env on a cluster); `overrides` is a list of `key.sub=value` strings.
    """
    unknown = sorted(set(args) - {"config", "overrides"})
    if unknown:
        raise ConfigError(
            f"serve application args: unknown key(s) {', '.join(unknown)}; "
            "known: config (a run config YAML path), overrides (a list of key=value)"
        )
    overrides = args.get("overrides") or []
    if not isinstance(overrides, list):
        raise ConfigError("serve application args: 'overrides' must be a list of key=value")
    cfg = load_config(args.get("config"), [str(o) for o in overrides])
    return build_application(cfg)


def start(cfg: RunConfig) -> str:
    """Deploy the application and return its base URL (Serve's HTTP proxy on serve.host:port)."""
    from anchor_service.cluster import ensure_ray

    # The service's counters go to Ray's Prometheus endpoint: a local cluster for it keeps
    # metrics collection on (`cluster.lean` applies to the pipeline's clusters only).
    ensure_ray(cfg.cluster.model_copy(update={"lean": False}))
    serve.start(http_options={"host": cfg.serve.host, "port": cfg.serve.port})
    serve.run(build_application(cfg), name=cfg.serve.app_name, route_prefix="/")
    host = "127.0.0.1" if cfg.serve.host in ("0.0.0.0", "::") else cfg.serve.host
    return f"http://{host}:{cfg.serve.port}"


def stop(cfg: RunConfig) -> None:
    """Delete the application (Serve itself keeps running for other applications)."""
    serve.delete(cfg.serve.app_name)
