"""The `serve` engine: the Engine protocol over a live Serve deployment's handle.

With `pipeline.placement: serve`, the pipeline's stages reach the judge and policy
deployments of the HTTP service through this adapter, so one set of model replicas answers
users and builds pairs (ARCHITECTURE.md "Where Ray comes in"). The model is named
`<app>/<deployment>` (e.g. `anchor/judge`, `anchor/policy`) or just `<deployment>` (app
`anchor`), and `model_id` is the deployed engine's own id, so rows written through Serve
carry the same judge/model name as rows written inline.

`timeout_s` bounds each call; a call rejected because the deployment's queue is full is
retried up to `max_retries` times with backoff (a batch job should wait, not fail). Ray is
imported lazily: the rest of `engines` must import without it.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from anchor_service.config import ModelSpec
from anchor_service.engines.base import (
    ChoiceQuery,
    Completion,
    EngineError,
    GenRequest,
    SamplingParams,
)

log = logging.getLogger(__name__)

DEFAULT_APP = "anchor"
DEPLOYMENTS = ("judge", "policy")
_MAX_BACKOFF_S = 10.0


def serve_model(app_name: str, deployment: str, timeout_s: float = 600.0) -> ModelSpec:
    """The ModelSpec that reaches a deployment of a Serve application (placement `serve`)."""
    return ModelSpec(name=f"{app_name}/{deployment}", engine="serve", timeout_s=timeout_s)


def parse_target(name: str) -> tuple[str, str]:
    """`app/deployment` or `deployment` -> (app, deployment)."""
    app, _, deployment = name.rpartition("/")
    app = app or DEFAULT_APP
    if not deployment or "/" in app:
        raise EngineError(
            f"engine 'serve': model name '{name}' must be '<app>/<deployment>' "
            f"(e.g. '{DEFAULT_APP}/judge') or a deployment name ({', '.join(DEPLOYMENTS)})"
        )
    return app, deployment


class ServeEngine:
    """Engine over a Serve deployment's handle (judge or policy of the HTTP service)."""

    def __init__(self, spec: ModelSpec, handle: Any | None = None) -> None:
        self.spec = spec
        self.app_name, self.deployment = parse_target(spec.name)
        if handle is None:
            from ray import serve
            from ray.serve.exceptions import RayServeException

            try:
                handle = serve.get_deployment_handle(self.deployment, app_name=self.app_name)
            except (RayServeException, KeyError, ValueError) as exc:
                raise EngineError(
                    f"engine 'serve': no deployment '{self.deployment}' in Serve application "
                    f"'{self.app_name}' ({exc}); start the service first (anchor-align serve, "
                    "or serve run clusters/serve_config.yaml) on this Ray cluster"
                ) from None
        self.handle = handle
        info = self._call("info")
        self.model_id = str(info["id"])
        self.mode = info.get("mode")
        log.info("serve engine on %s/%s: %s", self.app_name, self.deployment, info)

    def _call(self, method: str, *args: Any) -> Any:
        """One handle call, blocking; queue-full rejections are retried with backoff."""
        from ray.exceptions import RayError, RayTaskError
        from ray.serve.exceptions import BackPressureError, RayServeException

        where = f"{self.app_name}/{self.deployment}.{method}"
        for attempt in range(self.spec.max_retries + 1):
            try:
                response = getattr(self.handle, method).remote(*args)
                return response.result(timeout_s=self.spec.timeout_s)
            except BackPressureError:
                if attempt == self.spec.max_retries:
                    raise EngineError(
                        f"{where}: the deployment's queue stayed full after "
                        f"{self.spec.max_retries} retries; add replicas or raise its "
                        "max_queued_requests"
                    ) from None
                time.sleep(min(_MAX_BACKOFF_S, 0.5 * 2**attempt))
            except RayTaskError as exc:
                cause = exc.cause if isinstance(exc.cause, BaseException) else exc
                if isinstance(cause, NotImplementedError):
                    raise NotImplementedError(f"{where}: {cause}") from None
                raise EngineError(f"{where}: {type(cause).__name__}: {cause}") from None
            except TimeoutError:
                raise EngineError(
                    f"{where}: no answer within {self.spec.timeout_s}s (model.timeout_s); "
                    "the deployment is overloaded or stuck"
                ) from None
            except (RayError, RayServeException) as exc:
                raise EngineError(
                    f"{where}: the deployment is unavailable ({type(exc).__name__}: {exc})"
                ) from None
        raise AssertionError("unreachable")

    def generate(self, requests: list[GenRequest], params: SamplingParams) -> list[Completion]:
        """One completion per request, in order, from the deployment's engine."""
        if not requests:
            return []
        return self._call("generate", list(requests), params)

    def choice_probs(
        self, queries: list[ChoiceQuery], tokens: list[str]
    ) -> list[list[dict[str, float]]]:
        """Per query and slot: {token: probability}, from the deployment's engine."""
        if not queries:
            return []
        return self._call("choice_probs", list(queries), list(tokens))

    def check_single_tokens(self, tokens: list[str]) -> None:
        """Raise EngineError naming any token the deployment's tokenizer splits."""
        self._call("check_single_tokens", list(tokens))
