"""The OpenAI-compatible routes of the ingress: POST /v1/chat/completions, POST /v1/completions
(both with `stream: true` as server-sent events) and the model list of GET /v1/models.

A request names a model of /v1/models: a policy model (`policy`, or a run's `sft`, `anchor`,
`rank`, ...: serve/policies.py) or `judge`, the judge deployment's model (so the project's own
`openai` engine can judge through this service in probability mode, with `logprobs`). Choice i
of a request with `seed` draws with the key ("openai", seed, digest of model and prompt, i), so
equal requests give equal answers; without a seed each request gets a fresh random key.

A stream carries a choice's text once the engine has finished it (the engines decode a whole
batch at once): the events are OpenAI's, the first token does not come sooner.
"""

# No `from __future__ import annotations`: FastAPI reads the routes' body types (built at run
# time from the limits) from their annotations.
import hashlib
import json
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from ray.serve.handle import DeploymentHandle

from anchor_service.engines.base import GenRequest, SamplingParams
from anchor_service.serve.deployments import JUDGE, POLICY
from anchor_service.serve.guard import OPENAI_ERRORS, OpenAIHTTPError, call_deployment
from anchor_service.serve.openai_schemas import (
    ChatCompletionResponse,
    CompletionResponse,
    OpenAIRequestModels,
)

JUDGE_MODEL = "judge"
# One server-sent event: `data` is a JSON chunk (OpenAI's), the last one `[DONE]`.
STREAM_DOC = {
    "text/event-stream": {
        "schema": {
            "type": "object",
            "properties": {"data": {"type": "string"}, "event": {"type": "string"}},
            "required": ["data"],
        }
    }
}


def sample_keys(seed: int | None, content: Any, n: int) -> list[tuple]:
    """The randomness key of each of n choices (module docstring)."""
    if seed is None:
        nonce = secrets.token_hex(16)
        return [("openai", nonce, i) for i in range(n)]
    text = json.dumps(content, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return [("openai", seed, digest, i) for i in range(n)]


class Catalogue:
    """The served models' cards, read once from the deployments, and where each one runs."""

    def __init__(
        self, judge: DeploymentHandle, policy: DeploymentHandle, model_info: dict, created: int
    ) -> None:
        self.judge = judge
        self.policy = policy
        self.model_info = model_info
        self.created = created

    async def cards(self) -> list[dict[str, Any]]:
        if "judge" not in self.model_info:
            self.model_info["judge"] = await call_deployment(JUDGE, self.judge.info.remote())
        if "policy" not in self.model_info:
            self.model_info["policy"] = await call_deployment(POLICY, self.policy.info.remote())
        judge, policy = self.model_info["judge"], self.model_info["policy"]
        cards = [
            {**card, "object": "model", "created": self.created, "owned_by": "anchor-service"}
            | {"role": "policy"}
            for card in policy.get("models", [])
        ]
        cards.append(
            {
                "id": JUDGE_MODEL,
                "object": "model",
                "created": self.created,
                "owned_by": "anchor-service-judge",
                "role": "judge",
                "root": judge["id"],
                "parent": None,
                "engine": judge["engine"],
                "logprobs": bool(judge.get("logprobs")),
                "mode": judge.get("mode"),
                "prompt_version": judge.get("prompt_version"),
            }
        )
        return cards

    async def resolve(self, name: str, logprobs: bool) -> tuple[str, DeploymentHandle, str]:
        """(deployment name, its handle, the model) for a request naming `name`."""
        cards = {c["id"]: c for c in await self.cards()}
        card = cards.get(name)
        if card is None:
            raise OpenAIHTTPError(
                404,
                f"the model '{name}' does not exist here; this service has: "
                f"{', '.join(cards)} (GET /v1/models)",
                code="model_not_found",
                param="model",
            )
        if card["engine"] == "oracle":
            raise OpenAIHTTPError(
                400,
                "the judge is the demo oracle, which writes no text; it scores through "
                "/v1/score only",
                param="model",
            )
        if logprobs and not card["logprobs"]:
            raise OpenAIHTTPError(
                400,
                f"the model '{name}' runs on engine {card['engine']}, which does not return "
                "logprobs here; leave logprobs unset or serve it with engine: hf",
                param="logprobs",
            )
        if card["role"] == "judge":
            return JUDGE, self.judge, JUDGE_MODEL
        return POLICY, self.policy, name


def openai_routes(
    app: FastAPI,
    models: OpenAIRequestModels,
    catalogue: Catalogue,
    bearer: Any,
) -> None:
    """POST /v1/chat/completions and POST /v1/completions."""
    ChatRequest = models.chat
    TextRequest = models.completion
    common = {
        "responses": {**OPENAI_ERRORS, 200: {"content": STREAM_DOC}},
        "dependencies": [bearer],
        "tags": ["openai"],
    }

    @app.post("/v1/chat/completions", response_model=ChatCompletionResponse, **common)
    async def chat_completions(body: ChatRequest) -> Any:
        """A chat completion of a served model (OpenAI's API; `stream: true` for SSE)."""
        messages = [m.as_message() for m in body.messages]
        top = (body.top_logprobs or 0) if body.logprobs else None
        params = _params(body, body.max_completion_tokens or body.max_tokens, top)
        where, handle, model = await catalogue.resolve(body.model, top is not None)
        keys = sample_keys(body.seed, {"model": body.model, "messages": messages}, body.n)
        requests = [GenRequest(prompt=messages, key=k) for k in keys]
        done = await call_deployment(where, handle.complete.remote(model, requests, params))
        response = _chat_response(body.model, done, top)
        if body.stream:
            return _sse(_chat_events(response, _include_usage(body)))
        return response

    @app.post("/v1/completions", response_model=CompletionResponse, **common)
    async def completions(body: TextRequest) -> Any:
        """A text completion of a served model (OpenAI's API; `stream: true` for SSE)."""
        prompts = [body.prompt] if isinstance(body.prompt, str) else list(body.prompt)
        params = _params(body, body.max_tokens, body.logprobs)
        where, handle, model = await catalogue.resolve(body.model, body.logprobs is not None)
        requests = [
            GenRequest(prompt=p, key=k)
            for p in prompts
            for k in sample_keys(body.seed, {"model": body.model, "prompt": p}, body.n)
        ]
        done = await call_deployment(where, handle.complete.remote(model, requests, params))
        response = _completion_response(body.model, done, body.n, body.logprobs)
        if body.stream:
            return _sse(_completion_events(response, _include_usage(body)))
        return response


def _params(body: Any, max_tokens: int, logprobs: int | None) -> SamplingParams:
    stop = body.stop if isinstance(body.stop, list) else [body.stop] if body.stop else []
    return SamplingParams(
        temperature=body.temperature,
        top_p=body.top_p,
        max_tokens=max_tokens,
        stop=list(stop),
        logprobs=logprobs,
    )


def _include_usage(body: Any) -> bool:
    return bool(body.stream_options and body.stream_options.include_usage)


def _finish(reason: str) -> str:
    # An engine error on one request is answered as an ended (empty) choice, never a 5xx.
    return "length" if reason == "length" else "stop"


def _usage(prompt_tokens: int, done: list[dict[str, Any]]) -> dict[str, int]:
    completion_tokens = sum(int(d["completion_tokens"]) for d in done)
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def _top_sorted(top: dict[str, float], n: int) -> list[tuple[str, float]]:
    return sorted(top.items(), key=lambda kv: -kv[1])[:n]


def _chat_logprobs(entries: list | None, top_n: int) -> dict[str, Any] | None:
    if entries is None:
        return None

    def one(token: str, lp: float) -> dict[str, Any]:
        return {"token": token, "logprob": lp, "bytes": list(token.encode("utf-8"))}

    return {
        "content": [
            {**one(tok, lp), "top_logprobs": [one(t, v) for t, v in _top_sorted(top, top_n)]}
            for tok, lp, top in entries
        ]
    }


def _completion_logprobs(entries: list | None, top_n: int) -> dict[str, Any] | None:
    if entries is None:
        return None
    offsets, at = [], 0
    for tok, _, _ in entries:
        offsets.append(at)  # offsets into the completion's text (no echo of the prompt)
        at += len(tok)
    return {
        "tokens": [tok for tok, _, _ in entries],
        "token_logprobs": [lp for _, lp, _ in entries],
        "top_logprobs": [dict(_top_sorted(top, top_n)) for _, _, top in entries],
        "text_offset": offsets,
    }


def _chat_response(model: str, done: list[dict[str, Any]], top: int | None) -> dict[str, Any]:
    choices = [
        {
            "index": i,
            "message": {"role": "assistant", "content": d["text"]},
            "finish_reason": _finish(d["finish_reason"]),
            "logprobs": _chat_logprobs(d["logprobs"], top or 0) if top is not None else None,
        }
        for i, d in enumerate(done)
    ]
    prompt_tokens = int(done[0]["prompt_tokens"]) if done else 0
    return {
        "id": f"chatcmpl-{secrets.token_hex(12)}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
        "usage": _usage(prompt_tokens, done),
        "system_fingerprint": None,
    }


def _completion_response(
    model: str, done: list[dict[str, Any]], n: int, logprobs: int | None
) -> dict[str, Any]:
    choices = [
        {
            "index": i,
            "text": d["text"],
            "finish_reason": _finish(d["finish_reason"]),
            "logprobs": (
                _completion_logprobs(d["logprobs"], logprobs) if logprobs is not None else None
            ),
        }
        for i, d in enumerate(done)
    ]
    # Each prompt is counted once, not once per choice.
    prompt_tokens = sum(int(d["prompt_tokens"]) for d in done[::n])
    return {
        "id": f"cmpl-{secrets.token_hex(12)}",
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
        "usage": _usage(prompt_tokens, done),
        "system_fingerprint": None,
    }


def _sse(events: AsyncIterator[dict[str, Any]]) -> StreamingResponse:
    async def body() -> AsyncIterator[bytes]:
        async for event in events:
            yield f"data: {json.dumps(event, ensure_ascii=False)}\n\n".encode()
        yield b"data: [DONE]\n\n"

    return StreamingResponse(
        body(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
    )


def _chunk(response: dict[str, Any], obj: str, choices: list, usage: bool) -> dict[str, Any]:
    out = {
        "id": response["id"],
        "object": obj,
        "created": response["created"],
        "model": response["model"],
        "choices": choices,
        "system_fingerprint": None,
    }
    if usage:
        out["usage"] = None  # only the last chunk carries it (OpenAI's include_usage)
    return out


async def _chat_events(response: dict[str, Any], usage: bool) -> AsyncIterator[dict[str, Any]]:
    obj = "chat.completion.chunk"

    def delta(i: int, d: dict, finish: str | None, lp: Any = None) -> list:
        return [{"index": i, "delta": d, "finish_reason": finish, "logprobs": lp}]

    for c in response["choices"]:
        i = c["index"]
        yield _chunk(response, obj, delta(i, {"role": "assistant", "content": ""}, None), usage)
        text = c["message"]["content"]
        yield _chunk(response, obj, delta(i, {"content": text}, None, c["logprobs"]), usage)
        yield _chunk(response, obj, delta(i, {}, c["finish_reason"]), usage)
    if usage:
        yield {**_chunk(response, obj, [], False), "usage": response["usage"]}


async def _completion_events(
    response: dict[str, Any], usage: bool
) -> AsyncIterator[dict[str, Any]]:
    obj = "text_completion"
    for c in response["choices"]:
        text = {**c, "finish_reason": None}
        yield _chunk(response, obj, [text], usage)
        end = {"index": c["index"], "text": "", "finish_reason": c["finish_reason"]}
        yield _chunk(response, obj, [{**end, "logprobs": None}], usage)
    if usage:
        yield {**_chunk(response, obj, [], False), "usage": response["usage"]}
