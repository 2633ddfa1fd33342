"""The ingress's ASGI guard: bearer auth and the body-size limit before the body is read, the
whole body read under a deadline before any route runs, and every failure answered 503 with
Retry-After (never 500). The OpenAI routes get their errors in OpenAI's shape."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi.responses import JSONResponse
from ray.serve.exceptions import BackPressureError

from anchor_service.serve import metrics as m
from anchor_service.serve.auth import bearer_matches
from anchor_service.serve.openai_schemas import OpenAIErrorResponse

log = logging.getLogger(__name__)

OPEN_PATHS = frozenset({"/healthz"})
OPENAI_PATHS = frozenset({"/v1/chat/completions", "/v1/completions"})

# OpenAI's error `type` of each status this service sends.
_OPENAI_TYPES = {
    401: "authentication_error",
    408: "request_timeout",
    503: "server_error",
}

OPENAI_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": OpenAIErrorResponse, "description": "A field is invalid or beyond its limit"},
    401: {"model": OpenAIErrorResponse, "description": "Missing or wrong bearer token"},
    404: {"model": OpenAIErrorResponse, "description": "No such model (see /v1/models)"},
    408: {"model": OpenAIErrorResponse, "description": "The body was not sent in time"},
    413: {"model": OpenAIErrorResponse, "description": "Request body larger than the limit"},
    503: {
        "model": OpenAIErrorResponse,
        "description": "Overloaded or a model replica is unavailable; retry after "
        "the `Retry-After` seconds",
    },
}


class OpenAIHTTPError(Exception):
    """An error of an OpenAI route, answered `{"error": {message, type, param, code}}`."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.headers = headers

    def response(self) -> JSONResponse:
        error = {
            "message": self.message,
            "type": _OPENAI_TYPES.get(self.status, "invalid_request_error"),
            "param": self.param,
            "code": self.code,
        }
        return JSONResponse({"error": error}, status_code=self.status, headers=self.headers)


def error_response(
    path: str,
    status: int,
    detail: str,
    headers: dict[str, str] | None = None,
    code: str | None = None,
    param: str | None = None,
    **extra: Any,
) -> JSONResponse:
    """An error answer in the route's shape: OpenAI's on the OpenAI routes, else {detail}."""
    if path in OPENAI_PATHS:
        return OpenAIHTTPError(status, detail, code=code, param=param, headers=headers).response()
    return json_response(status, detail, headers=headers, **extra)


class ServiceBusy(Exception):
    """A deployment could not take or finish the request; answered 503 with Retry-After."""

    def __init__(self, detail: str, reason: str) -> None:
        super().__init__(detail)
        self.detail = detail
        self.reason = reason


def json_response(
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
        body_timeout_s: float = 30.0,
    ) -> None:
        self.app = app
        self.token = token
        self.max_body_bytes = max_body_bytes
        self.retry_after = str(retry_after_s)
        self.metrics = metrics
        self.body_timeout_s = body_timeout_s

    def _reject(self, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.record_rejected(reason)

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        path = scope["path"]
        if self.token is not None and path not in OPEN_PATHS:
            if not bearer_matches(headers.get("authorization"), self.token):
                self._reject(m.UNAUTHORIZED)
                response = error_response(
                    path,
                    401,
                    "missing or wrong bearer token: send the header "
                    "'Authorization: Bearer <token>' (the token the service was configured with)",
                    headers={"WWW-Authenticate": "Bearer"},
                    code="invalid_api_key",
                )
                await response(scope, receive, send)
                return
        limit = self.max_body_bytes
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await self._too_large(scope, receive, send, int(declared))
            return
        if declared not in ("", "0") or "transfer-encoding" in headers:
            # The whole body (at most limit + 1 bytes) is read here, under the deadline, and
            # replayed to the route: a client that sends it slowly or never finishes is cut
            # off before any route, and so any model replica, sees its request.
            try:
                async with asyncio.timeout(self.body_timeout_s):
                    buffered, size = await self._read_bounded(receive, limit)
            except TimeoutError:
                await self._timed_out(scope, receive, send)
                return
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
            log.exception("unexpected error answering %s %s", scope["method"], path)
            if not started:
                self._reject(m.UNAVAILABLE)
                response = error_response(
                    path,
                    503,
                    "the service could not answer this request right now; retry later",
                    headers={"Retry-After": self.retry_after},
                    code="unavailable",
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
        response = error_response(
            scope["path"],
            413,
            f"request body {told} is larger than the limit of {self.max_body_bytes} bytes "
            "(serve.limits.max_body_bytes); send fewer or shorter items",
            code="request_too_large",
        )
        await response(scope, receive, send)

    async def _timed_out(self, scope: dict, receive: Callable, send: Callable) -> None:
        self._reject(m.TIMED_OUT)
        response = error_response(
            scope["path"],
            408,
            f"the request body did not arrive within {self.body_timeout_s:g} s "
            "(serve.limits.body_timeout_s); send the whole body at once",
            # The rest of the body may still come: the connection cannot be reused.
            headers={"Connection": "close"},
            code="request_timeout",
        )
        await response(scope, receive, send)


async def call_deployment(what: str, call: Awaitable[Any]) -> Any:
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
