"""The HTTP service: a FastAPI ingress on Ray Serve in front of the judge and policy deployments.

Routes (ARCHITECTURE.md "The HTTP service"): POST /v1/score, POST /v1/score/batch,
POST /v1/explain, GET /healthz, GET /v1/models, OpenAPI at /docs. The ingress validates
(limits from `serve.limits`, 413/422 with a message naming the field and the limit),
checks the bearer token, and forwards to the deployments, which batch across callers.

Overload is bounded on purpose: every deployment has `max_queued_requests`, and a request
beyond it is answered 503 with `Retry-After` (by Serve's proxy for the ingress, by the ingress
for the judge and policy). The only 5xx this service sends is 503: an engine failure, a dead
replica or anything unexpected is answered 503 with `Retry-After`, never 500.

`build_application(cfg)` builds the Serve application; `build_app(args)` is the builder for
`serve run` / `serve deploy` config files; `start(cfg)` runs it on a (local or attached) cluster.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPBearer
from pydantic import ValidationError
from ray import serve
from ray.serve.exceptions import BackPressureError
from ray.serve.handle import DeploymentHandle
from starlette.exceptions import HTTPException as StarletteHTTPException

from anchor_service.config import ConfigError, RunConfig, ServeConfig, load_config
from anchor_service.engines.base import SamplingParams
from anchor_service.scoring.explain import ExplainRequest
from anchor_service.scoring.validate import ItemError, make_item
from anchor_service.serve import metrics as m
from anchor_service.serve.auth import bearer_matches, load_token
from anchor_service.serve.deployments import (
    JUDGE,
    POLICY,
    JudgeDeployment,
    PolicyDeployment,
    deployment_options,
)
from anchor_service.serve.schemas import (
    BatchScoreResponse,
    ErrorResponse,
    ExplainResponse,
    HealthResponse,
    ModelsResponse,
    ScoreResult,
    describe_errors,
    item_error,
    request_models,
)

log = logging.getLogger(__name__)

INGRESS = "ingress"
OPEN_PATHS = frozenset({"/healthz"})

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "The body could not be decoded as JSON"},
    401: {"model": ErrorResponse, "description": "Missing or wrong bearer token"},
    413: {"model": ErrorResponse, "description": "Request body larger than the limit"},
    422: {"model": ErrorResponse, "description": "A field is invalid or beyond its limit"},
    503: {
        "model": ErrorResponse,
        "description": "Overloaded or a model replica is unavailable; retry after "
        "the `Retry-After` seconds",
    },
}


class ServiceBusy(Exception):
    """A deployment could not take or finish the request; answered 503 with Retry-After."""

    def __init__(self, detail: str, reason: str) -> None:
        super().__init__(detail)
        self.detail = detail
        self.reason = reason


def _json_response(
    status: int, detail: str, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    return JSONResponse({"detail": detail, **extra}, status_code=status, headers=headers)


class Guard:
    """ASGI middleware: bearer auth, body size limit, and 503 for anything unexpected.

    It runs before the body is read, so a large or unauthorised request costs nothing; it
    sits inside FastAPI's server-error middleware and turns any exception into a 503.
    """

    def __init__(
        self,
        app: Callable,
        token: str | None,
        max_body_bytes: int,
        retry_after_s: int,
        metrics: m.ServiceMetrics | None,
    ) -> None:
        self.app = app
        self.token = token
        self.max_body_bytes = max_body_bytes
        self.retry_after = str(retry_after_s)
        self.metrics = metrics

    def _reject(self, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.record_rejected(reason)

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if self.token is not None and scope["path"] not in OPEN_PATHS:
            if not bearer_matches(headers.get("authorization"), self.token):
                self._reject(m.UNAUTHORIZED)
                response = _json_response(
                    401,
                    "missing or wrong bearer token: send the header "
                    "'Authorization: Bearer <token>' (the token the service was configured with)",
                    headers={"WWW-Authenticate": "Bearer"},
                )
                await response(scope, receive, send)
                return
        limit = self.max_body_bytes
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await self._too_large(scope, receive, send, int(declared))
            return
        if not declared.isdigit() and scope["method"] not in ("GET", "HEAD"):
            # No Content-Length (chunked): read at most limit + 1 bytes here, then replay them.
            # The server enforces a declared Content-Length, so only this case needs counting.
            buffered, size = await self._read_bounded(receive, limit)
            if size > limit:
                await self._too_large(scope, receive, send, size, exact=False)
                return
            receive = self._replay(buffered, receive)

        started = False

        async def tracked_send(message: dict) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracked_send)
        except Exception:  # noqa: BLE001 - the service answers 503, never 500
            log.exception("unexpected error answering %s %s", scope["method"], scope["path"])
            if not started:
                self._reject(m.UNAVAILABLE)
                response = _json_response(
                    503,
                    "the service could not answer this request right now; retry later",
                    headers={"Retry-After": self.retry_after},
                )
                await response(scope, receive, send)

    @staticmethod
    async def _read_bounded(receive: Callable, limit: int) -> tuple[list[dict], int]:
        messages, size = [], 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > limit or not message.get("more_body", False):
                break
        return messages, size

    @staticmethod
    def _replay(messages: list[dict], receive: Callable) -> Callable:
        pending = list(messages)

        async def replay() -> dict:
            return pending.pop(0) if pending else await receive()

        return replay

    async def _too_large(
        self, scope: dict, receive: Callable, send: Callable, size: int, exact: bool = True
    ) -> None:
        self._reject(m.TOO_LARGE)
        told = f"of {size} bytes" if exact else f"of more than {self.max_body_bytes} bytes"
        response = _json_response(
            413,
            f"request body {told} is larger than the limit of {self.max_body_bytes} bytes "
            "(serve.limits.max_body_bytes); send fewer or shorter items",
        )
        await response(scope, receive, send)


async def _call_deployment(what: str, call: Awaitable[Any]) -> Any:
    """Await a deployment call; overload and failures become ServiceBusy (503)."""
    try:
        return await call
    except BackPressureError:
        raise ServiceBusy(
            f"the {what} is at capacity (its queue is full); retry after the Retry-After delay",
            m.OVERLOADED,
        ) from None
    except Exception as exc:  # noqa: BLE001 - engine errors, dead replicas: all answered 503
        log.warning("%s deployment failed: %s", what, exc)
        raise ServiceBusy(
            f"the {what} could not answer this request ({type(exc).__name__}); retry later",
            m.UNAVAILABLE,
        ) from None


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


def create_api(
    cfg: ServeConfig,
    judge: DeploymentHandle,
    policy: DeploymentHandle,
    token: str | None,
    metrics: m.ServiceMetrics | None,
) -> FastAPI:
    """The ASGI app of the ingress: the routes, behind the Guard."""
    limits = cfg.limits
    models = request_models(limits)
    ScoreRequest = models.score
    BatchScoreRequest = models.batch
    ExplainRequestBody = models.explain
    retry_after = {"Retry-After": str(limits.retry_after_s)}
    model_info: dict[str, Any] = {}

    app = FastAPI(
        title="anchor-service",
        version="0.1.0",
        description="Scores self-explanations of multiple-choice answers on five criteria "
        "(0-3 each, 0-15 in all) and answers questions with the (anchored) policy. "
        "Send 'Authorization: Bearer <token>' when the service has a token.",
        docs_url="/docs",
        openapi_url="/openapi.json",
        redoc_url=None,
    )
    bearer = [Depends(HTTPBearer(auto_error=False, description="The service's API token"))]

    def reject(reason: str) -> None:
        if metrics is not None:
            metrics.record_rejected(reason)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        reject(m.INVALID)
        messages = describe_errors(list(exc.errors()))
        return _json_response(422, "; ".join(messages), errors=messages)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = str(exc.detail)
        if exc.status_code == 400:
            # FastAPI's own words ("error parsing the body") do not say what to fix.
            reject(m.INVALID)
            detail = (
                "the request body could not be decoded: send a UTF-8 JSON object with "
                "'Content-Type: application/json'"
            )
        return _json_response(exc.status_code, detail, headers=exc.headers)

    @app.exception_handler(ItemError)
    async def invalid_item(_: Request, exc: ItemError) -> JSONResponse:
        reject(m.INVALID)
        return _json_response(422, str(exc), errors=[str(exc)])

    @app.exception_handler(ServiceBusy)
    async def busy(_: Request, exc: ServiceBusy) -> JSONResponse:
        reject(exc.reason)
        return _json_response(503, exc.detail, headers=retry_after)

    async def score_items(items: list) -> list[dict[str, Any]]:
        results = await _call_deployment(JUDGE, judge.score.remote(items))
        if metrics is not None:
            metrics.record_scores(r["status"] for r in results)
        return results

    @app.get("/healthz", response_model=HealthResponse, tags=["service"])
    async def healthz() -> dict[str, str]:
        """Liveness of the ingress (no token needed)."""
        return {"status": "ok"}

    @app.get(
        "/v1/models",
        response_model=ModelsResponse,
        responses=ERROR_RESPONSES,
        dependencies=bearer,
        tags=["service"],
    )
    async def list_models() -> dict[str, Any]:
        """The policy and judge models this service runs."""
        if "judge" not in model_info or "policy" not in model_info:
            judge_info, policy_info = await asyncio.gather(
                _call_deployment(JUDGE, judge.info.remote()),
                _call_deployment(POLICY, policy.info.remote()),
            )
            model_info.update(judge=judge_info, policy=policy_info)
        return dict(model_info)

    @app.post(
        "/v1/score",
        response_model=ScoreResult,
        responses=ERROR_RESPONSES,
        dependencies=bearer,
        tags=["judge"],
    )
    async def score(body: ScoreRequest) -> dict[str, Any]:
        """Score one explanation (the object of `anchor-align score --json`, plus latency)."""
        started = time.perf_counter()
        item = make_item(body.question, body.options, body.answer, body.explanation)
        (result,) = await score_items([item])
        return {**result, "latency_ms": _ms(started)}

    @app.post(
        "/v1/score/batch",
        response_model=BatchScoreResponse,
        responses=ERROR_RESPONSES,
        dependencies=bearer,
        tags=["judge"],
    )
    async def score_batch(body: BatchScoreRequest) -> dict[str, Any]:
        """Score several explanations; an invalid item gets `{error}` in its place."""
        started = time.perf_counter()
        results: list[dict[str, Any] | None] = [None] * len(body.items)
        valid: list[tuple[int, Any]] = []
        for i, raw in enumerate(body.items):
            try:
                req = ScoreRequest.model_validate(raw)
                valid.append((i, make_item(req.question, req.options, req.answer, req.explanation)))
            except ValidationError as exc:
                results[i] = {"error": item_error(exc, i)}
            except ItemError as exc:
                results[i] = {"error": f"items[{i}]: {exc}"}
        if valid:
            judged = await score_items([item for _, item in valid])
            latency = _ms(started)
            for (i, _), result in zip(valid, judged, strict=True):
                results[i] = {**result, "latency_ms": latency}
        return {"results": results, "latency_ms": _ms(started)}

    @app.post(
        "/v1/explain",
        response_model=ExplainResponse,
        responses=ERROR_RESPONSES,
        dependencies=bearer,
        tags=["policy"],
    )
    async def explain(body: ExplainRequestBody) -> dict[str, Any]:
        """Answer and explain a question with the policy, optionally scoring each explanation."""
        started = time.perf_counter()
        make_item(body.question, body.options, None, "")  # the same checks as /v1/score
        # Keys as in `anchor-align explain --seed`: the same request gives the same samples.
        keys = [(body.seed, "explain", i) for i in range(body.n)]
        request = ExplainRequest(question=body.question, options=list(body.options), keys=keys)
        params = SamplingParams(
            temperature=body.temperature, top_p=body.top_p, max_tokens=body.max_tokens
        )
        if "policy" not in model_info:
            model_info["policy"] = await _call_deployment(POLICY, policy.info.remote())
        completions = await _call_deployment(POLICY, policy.explain.remote(request, params))
        if metrics is not None:
            metrics.record_unparseable_answers(sum(c["answer"] is None for c in completions))
        out = [
            {"answer": c["answer"], "explanation": c["explanation"], "text": c["text"]}
            for c in completions
        ]
        if body.score and out:
            judge_started = time.perf_counter()
            items = [
                make_item(body.question, body.options, c["answer"], c["explanation"]) for c in out
            ]
            judged = await score_items(items)
            latency = _ms(judge_started)
            for c, result in zip(out, judged, strict=True):
                c["score"] = {**result, "latency_ms": latency}
        return {
            "completions": out,
            "policy": model_info["policy"]["id"],
            "latency_ms": _ms(started),
        }

    # Inside FastAPI's own error middleware, so nothing reaches it to become a 500.
    app.add_middleware(
        Guard,
        token=token,
        max_body_bytes=limits.max_body_bytes,
        retry_after_s=limits.retry_after_s,
        metrics=metrics,
    )
    return app


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
    judge_spec = None if cfg.judge.mode == "oracle" else cfg.judge.model
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
