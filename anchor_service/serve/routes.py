"""The ingress's routes (ARCHITECTURE.md "The HTTP service") and its error answers.

POST /v1/score, POST /v1/score/batch, POST /v1/explain, GET /healthz, GET /v1/models (OpenAI's
model list), and the OpenAI routes of serve/openai_routes.py; the request models carry the
limits of `serve.limits`, so a field beyond one is a 422 naming it (400 in OpenAI's shape on
the OpenAI routes).
"""

import time
from collections.abc import Callable
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPBearer
from pydantic import ValidationError
from ray.serve.handle import DeploymentHandle
from starlette.exceptions import HTTPException as StarletteHTTPException

from anchor_service.config import ServeConfig
from anchor_service.engines.base import SamplingParams
from anchor_service.scoring.explain import ExplainRequest
from anchor_service.scoring.validate import ItemError, make_item
from anchor_service.serve import metrics as m
from anchor_service.serve.deployments import JUDGE, POLICY
from anchor_service.serve.guard import (
    OPENAI_PATHS,
    Guard,
    OpenAIHTTPError,
    ServiceBusy,
    call_deployment,
    error_response,
    json_response,
)
from anchor_service.serve.openai_routes import Catalogue, openai_routes
from anchor_service.serve.openai_schemas import ModelsResponse, openai_request_models
from anchor_service.serve.schemas import (
    BatchScoreResponse,
    ErrorResponse,
    ExplainResponse,
    HealthResponse,
    RequestModels,
    ScoreResult,
    describe_errors,
    item_error,
    request_models,
)

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

    def reject(reason: str) -> None:
        if metrics is not None:
            metrics.record_rejected(reason)

    async def score_items(items: list) -> list[dict[str, Any]]:
        results = await call_deployment(JUDGE, judge.score.remote(items))
        if metrics is not None:
            metrics.record_scores(r["status"] for r in results)
        return results

    _error_handlers(app, reject, {"Retry-After": str(limits.retry_after_s)})
    model_info: dict[str, Any] = {}
    models = request_models(limits)
    catalogue = Catalogue(judge, policy, model_info, int(time.time()))
    _service_routes(app, catalogue)
    _judge_routes(app, models, score_items)
    _policy_routes(app, models, policy, model_info, metrics, score_items)
    openai_routes(app, openai_request_models(limits), catalogue, _bearer())
    # Inside FastAPI's own error middleware, so nothing reaches it to become a 500.
    app.add_middleware(
        Guard,
        token=token,
        max_body_bytes=limits.max_body_bytes,
        retry_after_s=limits.retry_after_s,
        metrics=metrics,
        body_timeout_s=limits.body_timeout_s,
    )
    return app


def _bearer() -> Any:
    return Depends(HTTPBearer(auto_error=False, description="The service's API token"))


def _guarded(route: Callable, path: str, model: type, tag: str) -> Callable:
    """A route decorator (`app.get` / `app.post`) for a path behind the bearer token."""
    return route(
        path, response_model=model, responses=ERROR_RESPONSES, dependencies=[_bearer()], tags=[tag]
    )


def _error_handlers(app: FastAPI, reject: Callable[[str], None], retry_after: dict) -> None:
    """422 for invalid input, 400 reworded, 503 with Retry-After when a deployment is busy;
    on the OpenAI routes, OpenAI's error shape and 400 for any invalid body."""

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        reject(m.INVALID)
        errors = list(exc.errors())
        messages = describe_errors(errors)
        if request.url.path in OPENAI_PATHS:
            param = _param_of(errors[0].get("loc", ())) if errors else None
            return OpenAIHTTPError(400, "; ".join(messages), param=param).response()
        return json_response(422, "; ".join(messages), errors=messages)

    @app.exception_handler(OpenAIHTTPError)
    async def openai_error(_: Request, exc: OpenAIHTTPError) -> JSONResponse:
        reject(m.INVALID)
        return exc.response()

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = str(exc.detail)
        if exc.status_code == 400:
            # FastAPI's own words ("error parsing the body") do not say what to fix.
            reject(m.INVALID)
            detail = (
                "the request body could not be decoded: send a UTF-8 JSON object with "
                "'Content-Type: application/json'"
            )
        return error_response(request.url.path, exc.status_code, detail, headers=exc.headers)

    @app.exception_handler(ItemError)
    async def invalid_item(_: Request, exc: ItemError) -> JSONResponse:
        reject(m.INVALID)
        return json_response(422, str(exc), errors=[str(exc)])

    @app.exception_handler(ServiceBusy)
    async def busy(request: Request, exc: ServiceBusy) -> JSONResponse:
        reject(exc.reason)
        return error_response(
            request.url.path, 503, exc.detail, headers=retry_after, code=exc.reason
        )


def _param_of(loc: tuple) -> str | None:
    """The request field of a validation error's location (`('body', 'n')` -> `n`)."""
    names = [str(p) for p in loc[1:] if not isinstance(p, int)] if loc else []
    return ".".join(names) or None


def _service_routes(app: FastAPI, catalogue: Catalogue) -> None:
    """GET /healthz and GET /v1/models."""

    @app.get("/healthz", response_model=HealthResponse, tags=["service"])
    async def healthz() -> dict[str, str]:
        """Liveness of the ingress (no token needed)."""
        return {"status": "ok"}

    @_guarded(app.get, "/v1/models", ModelsResponse, "service")
    async def list_models() -> dict[str, Any]:
        """The models this service runs, in OpenAI's list shape (`data`: the names the OpenAI
        routes take; the judge is the one with `role: judge`), plus `policy` and `judge`: the
        model behind /v1/explain and the one behind /v1/score."""
        cards = await catalogue.cards()
        info = catalogue.model_info
        return {"object": "list", "data": cards, "policy": info["policy"], "judge": info["judge"]}


def _judge_routes(app: FastAPI, models: RequestModels, score_items: Callable) -> None:
    """POST /v1/score and POST /v1/score/batch."""
    ScoreRequest = models.score
    BatchScoreRequest = models.batch

    @_guarded(app.post, "/v1/score", ScoreResult, "judge")
    async def score(body: ScoreRequest) -> dict[str, Any]:
        """Score one explanation (the object of `anchor-align score --json`, plus latency)."""
        started = time.perf_counter()
        item = make_item(body.question, body.options, body.answer, body.explanation)
        (result,) = await score_items([item])
        return {**result, "latency_ms": _ms(started)}

    @_guarded(app.post, "/v1/score/batch", BatchScoreResponse, "judge")
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


def _policy_routes(
    app: FastAPI,
    models: RequestModels,
    policy: DeploymentHandle,
    model_info: dict,
    metrics: m.ServiceMetrics | None,
    score_items: Callable,
) -> None:
    """POST /v1/explain."""
    ExplainRequestBody = models.explain

    @_guarded(app.post, "/v1/explain", ExplainResponse, "policy")
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
            model_info["policy"] = await call_deployment(POLICY, policy.info.remote())
        completions = await call_deployment(POLICY, policy.explain.remote(request, params))
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
