"""Bodies of the OpenAI-compatible routes: POST /v1/chat/completions, POST /v1/completions and
GET /v1/models, in OpenAI's shapes (the fields this service supports; an unknown field is a 400
naming it, as OpenAI's own API answers).

Request models are built from `serve.limits` (`openai_request_models`), so the OpenAPI schema
states every limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, create_model, model_validator

from anchor_service.config import LimitsConfig
from anchor_service.serve.schemas import MAX_TEMPERATURE, ModelInfo, Strict

MAX_STOP = 4  # stop sequences per request, as OpenAI
MAX_STOP_CHARS = 100
SEED_RANGE = 2**63


class OpenAIError(BaseModel):
    message: str = Field(description="What is wrong and what to do about it")
    type: str = Field(
        description="invalid_request_error | authentication_error | server_error | request_timeout"
    )
    param: str | None = Field(default=None, description="The request field at fault, if one")
    code: str | None = Field(
        default=None, description="model_not_found, invalid_api_key, overloaded, ..."
    )


class OpenAIErrorResponse(BaseModel):
    """Every error of the OpenAI routes: `{"error": {"message", "type", "param", "code"}}`."""

    error: OpenAIError


# --- /v1/models -------------------------------------------------------------------------------


class ModelCard(BaseModel):
    """One model, in OpenAI's `model` object, plus what this service knows of it."""

    model_config = ConfigDict(extra="allow")

    id: str = Field(description="The name to send as `model`")
    object: Literal["model"] = "model"
    created: int = Field(description="When this service started (Unix seconds)")
    owned_by: str = Field(description="`anchor-service` (the policy) or `anchor-service-judge`")
    role: Literal["policy", "judge"] = Field(
        description="`policy`: answers questions; `judge`: the service's judge model (scores "
        "explanations through /v1/score; its completions serve remote probability judges)"
    )
    root: str = Field(description="The model's weights (and adapter) this name runs")
    parent: str | None = Field(default=None, description="For an adapter: the model under it")
    engine: str = Field(description="hf | vllm | openai | oracle")
    logprobs: bool = Field(description="Whether `logprobs` can be asked of this model")


class ModelsResponse(BaseModel):
    """OpenAI's model list (`object`, `data`), and the models of /v1/explain and /v1/score."""

    object: Literal["list"] = "list"
    data: list[ModelCard] = Field(description="Every model the OpenAI routes take, by `id`")
    policy: ModelInfo = Field(description="The model /v1/explain answers with")
    judge: ModelInfo = Field(description="The model /v1/score judges with")


# --- shared pieces ------------------------------------------------------------------------------


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None = None


class TokenLogprobEntry(TopLogprob):
    top_logprobs: list[TopLogprob]


class ChatLogprobs(BaseModel):
    content: list[TokenLogprobEntry] | None


class CompletionLogprobs(BaseModel):
    """The completions endpoint's (legacy) logprobs shape."""

    tokens: list[str]
    token_logprobs: list[float]
    top_logprobs: list[dict[str, float]]
    text_offset: list[int]


class ChatMessageOut(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    index: int
    message: ChatMessageOut
    finish_reason: Literal["stop", "length"]
    logprobs: ChatLogprobs | None = None


class ChatCompletionResponse(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage
    system_fingerprint: str | None = None


class CompletionChoice(BaseModel):
    index: int
    text: str
    finish_reason: Literal["stop", "length"]
    logprobs: CompletionLogprobs | None = None


class CompletionResponse(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage
    system_fingerprint: str | None = None


# --- requests (limits from config) --------------------------------------------------------------


class StreamOptions(Strict):
    include_usage: bool = Field(
        default=False, description="Send a last chunk with the request's token usage"
    )


@dataclass(frozen=True)
class OpenAIRequestModels:
    chat: type[BaseModel]
    completion: type[BaseModel]


def _sampling_fields(limits: LimitsConfig, max_tokens_default: int) -> dict[str, Any]:
    """The fields both routes share, as (annotation, FieldInfo) pairs for a model body."""
    stop = Annotated[str, StringConstraints(min_length=1, max_length=MAX_STOP_CHARS)]
    return {
        "model": (str, Field(min_length=1, max_length=200, description="A name of /v1/models")),
        "n": (int, Field(default=1, ge=1, le=limits.max_n, description="Choices per prompt")),
        "temperature": (
            float,
            Field(default=1.0, ge=0.0, le=MAX_TEMPERATURE, description="0 = greedy"),
        ),
        "top_p": (float, Field(default=1.0, gt=0.0, le=1.0)),
        "max_tokens": (
            int,
            Field(
                default=max_tokens_default,
                ge=1,
                le=limits.max_tokens,
                description="Most new tokens per choice",
            ),
        ),
        "seed": (
            int | None,
            Field(
                default=None,
                ge=-SEED_RANGE,
                lt=SEED_RANGE,
                description="Choice i draws with a key of (seed, the request's model and "
                "prompt, i): equal requests give equal answers. None: fresh randomness",
            ),
        ),
        "stop": (
            stop | Annotated[list[stop], Field(max_length=MAX_STOP)] | None,
            Field(default=None, description="Up to 4 stop sequences"),
        ),
        "stream": (bool, Field(default=False, description="Answer as server-sent events")),
        "stream_options": (StreamOptions | None, Field(default=None)),
        "user": (str | None, Field(default=None, max_length=200, description="Ignored")),
    }


def openai_request_models(limits: LimitsConfig) -> OpenAIRequestModels:
    """Pydantic request models of the two routes, their limits from `serve.limits`."""
    text = Annotated[str, StringConstraints(max_length=limits.max_prompt_chars)]
    prompt_text = Annotated[
        str, StringConstraints(min_length=1, max_length=limits.max_prompt_chars)
    ]

    class TextPart(Strict):
        type: Literal["text"]
        text: text

    class ChatMessage(Strict):
        """A message; `developer` is read as `system`. The last one may be the assistant's
        reply begun for the model: the completion continues it."""

        role: Literal["system", "developer", "user", "assistant"]
        content: text | Annotated[list[TextPart], Field(max_length=limits.max_messages)]
        name: str | None = Field(default=None, max_length=64)

        def as_message(self) -> dict[str, str]:
            content = self.content
            if isinstance(content, list):
                content = "".join(part.text for part in content)
            role = "system" if self.role == "developer" else self.role
            return {"role": role, "content": content}

    chat_fields = create_model(  # type: ignore[call-overload]
        "ChatSamplingFields", __base__=Strict, **_sampling_fields(limits, limits.max_tokens)
    )
    # OpenAI's default for completions is 16 new tokens.
    text_fields = create_model(  # type: ignore[call-overload]
        "CompletionSamplingFields", __base__=Strict, **_sampling_fields(limits, 16)
    )
    top = Field(default=None, ge=0, le=limits.max_logprobs)

    class ChatCompletionRequest(chat_fields):  # type: ignore[valid-type,misc]
        """A chat completion (OpenAI's request, the fields this service supports)."""

        messages: list[ChatMessage] = Field(min_length=1, max_length=limits.max_messages)
        max_completion_tokens: int | None = Field(
            default=None, ge=1, le=limits.max_tokens, description="Wins over max_tokens"
        )
        logprobs: bool = Field(default=False, description="Return each token's logprob")
        top_logprobs: int | None = top

        @model_validator(mode="after")
        def _top_needs_logprobs(self) -> ChatCompletionRequest:
            if self.top_logprobs and not self.logprobs:
                raise ValueError("top_logprobs needs logprobs: true")
            return self

    class CompletionRequest(text_fields):  # type: ignore[valid-type,misc]
        """A text completion (OpenAI's request, the fields this service supports)."""

        # An empty prompt gives the model nothing to continue from: refused, not guessed at.
        prompt: (
            prompt_text
            | Annotated[list[prompt_text], Field(min_length=1, max_length=limits.max_prompts)]
        )
        logprobs: int | None = Field(
            default=None,
            ge=0,
            le=limits.max_logprobs,
            description="Also return each token's logprob and this many alternatives",
        )

    return OpenAIRequestModels(chat=ChatCompletionRequest, completion=CompletionRequest)
