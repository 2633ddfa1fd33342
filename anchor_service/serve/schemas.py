"""Request and response bodies of the HTTP service (ARCHITECTURE.md "The HTTP service").

Request models are built from `serve.limits` (`request_models`), so the OpenAPI schema states
every limit (maxLength, maxItems, maximum) and a request beyond one is a 422 whose message
names the field and the limit. Response models are fixed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from anchor_service.config import LimitsConfig

# An answer is one option letter, optionally in parentheses ("B", "(b)"); null if none.
MAX_ANSWER_CHARS = 3
# Sampling settings a caller may ask for on /v1/explain.
MAX_TEMPERATURE = 2.0


class Strict(BaseModel):
    """Request bodies: unknown fields are rejected (a typo should not be silently ignored)."""

    model_config = ConfigDict(extra="forbid")


# --- responses ------------------------------------------------------------------------------


class ScoreResult(BaseModel):
    """The judge's verdict on one explanation: `anchor-align score --json`, plus latency."""

    status: Literal["scored", "unscored", "empty"] = Field(
        description="`scored`; `empty`: empty explanation, 0 without a model call; "
        "`unscored`: the judge's output could not be read"
    )
    verdicts: dict[str, str] | None = Field(
        description="One verdict word per criterion (Excellent, Satisfactory, "
        "Needs Improvement, Unsatisfactory); null when unscored"
    )
    score: int | None = Field(description="Sum of the five verdict values, 0..15")
    score_expected: float | None = Field(
        description="Probability-weighted score (probability mode), else null"
    )
    mode: str = Field(description="probability | generative | oracle")
    judge: str = Field(description="The judge model")
    latency_ms: float = Field(description="Time spent answering this request, in ms")


class ItemErrorResult(BaseModel):
    """An item of /v1/score/batch that failed validation (the others are still scored)."""

    error: str = Field(description="What is wrong with this item and how to fix it")


class BatchScoreResponse(BaseModel):
    results: list[ScoreResult | ItemErrorResult] = Field(
        description="One entry per input item, in input order"
    )
    latency_ms: float


class ExplainedCompletion(BaseModel):
    answer: str | None = Field(description="The option letter the policy chose; null if none")
    explanation: str = Field(description="The explanation after `Explanation:`")
    text: str = Field(description="The policy's whole reply")
    score: ScoreResult | None = Field(
        default=None, description="The judge's score of this explanation (when asked)"
    )


class ExplainResponse(BaseModel):
    completions: list[ExplainedCompletion]
    policy: str = Field(description="The policy model (with its adapter, if any)")
    latency_ms: float


class ModelInfo(BaseModel):
    id: str = Field(description="Model name (and adapter)")
    engine: str = Field(description="hf | vllm | openai | oracle")
    mode: str | None = Field(default=None, description="Judge only: how verdicts are read")


class HealthResponse(BaseModel):
    status: Literal["ok"]


class ErrorResponse(BaseModel):
    """Every 4xx/503 body: a message a person can act on."""

    detail: str
    errors: list[str] | None = Field(
        default=None, description="422 only: one message per invalid field"
    )


# --- requests (limits from config) ------------------------------------------------------------


@dataclass(frozen=True)
class RequestModels:
    """The request models of one set of limits."""

    score: type[BaseModel]
    batch: type[BaseModel]
    explain: type[BaseModel]


def request_models(limits: LimitsConfig) -> RequestModels:
    """Pydantic request models whose constraints are the configured limits."""
    option = Annotated[str, StringConstraints(min_length=1, max_length=limits.max_option_chars)]
    options_field = Field(
        min_length=limits.min_options,
        max_length=limits.max_options,
        description=f"Option texts in order (labelled A, B, ...), "
        f"{limits.min_options} to {limits.max_options}",
    )
    question_field = Field(
        min_length=1,
        max_length=limits.max_question_chars,
        description=f"The question, at most {limits.max_question_chars} characters",
    )

    class ScoreRequest(Strict):
        """One explanation of a multiple-choice answer to score."""

        question: str = question_field
        options: list[option] = options_field
        answer: str | None = Field(
            default=None,
            max_length=MAX_ANSWER_CHARS,
            description="The letter the response chose (A, B, ...); null if it chose none",
        )
        explanation: str = Field(
            default="",
            max_length=limits.max_explanation_chars,
            description="The explanation to score; empty scores 0 (status `empty`)",
        )

    class BatchScoreRequest(Strict):
        """Several items; an invalid item gets `{error}` in its place, the rest are scored."""

        items: list[Any] = Field(
            min_length=1,
            max_length=limits.max_batch_items,
            description=f"1 to {limits.max_batch_items} objects shaped like the /v1/score request",
        )

    class ExplainRequest(Strict):
        """A question for the policy to answer and explain."""

        question: str = question_field
        options: list[option] = options_field
        n: int = Field(default=1, ge=1, le=limits.max_n, description="Completions wanted")
        temperature: float = Field(
            default=0.0, ge=0.0, le=MAX_TEMPERATURE, description="0 = greedy"
        )
        top_p: float = Field(default=0.95, gt=0.0, le=1.0)
        max_tokens: int = Field(
            default=min(256, limits.max_tokens),
            ge=1,
            le=limits.max_tokens,
            description="Most new tokens per completion",
        )
        seed: int = Field(
            default=0,
            ge=0,
            le=2**31 - 1,
            description="Keys each completion's sampling: the same request gives the same text",
        )
        score: bool = Field(default=False, description="Also score each explanation")

    return RequestModels(score=ScoreRequest, batch=BatchScoreRequest, explain=ExplainRequest)


def _field_name(loc: tuple) -> str:
    """`('body', 'items', 3, 'options')` -> `items[3].options`."""
    out = ""
    for part in loc:
        if part in ("body",) and not out:
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "body"


# Which `serve.limits` key a too-long / too-large (or too-short) field runs into, so the
# message says where the limit is set. Keyed by the field's last name and the bound's side.
_LIMIT_KEYS: dict[tuple[str, str], str] = {
    ("question", "max"): "max_question_chars",
    ("options", "max"): "max_options",
    ("options", "min"): "min_options",
    ("option", "max"): "max_option_chars",
    ("explanation", "max"): "max_explanation_chars",
    ("items", "max"): "max_batch_items",
    ("n", "max"): "max_n",
    ("max_tokens", "max"): "max_tokens",
}
_UPPER = {"string_too_long", "too_long", "less_than_equal", "less_than"}
_LOWER = {"too_short"}


def _limit_hint(loc: tuple, kind: str) -> str:
    side = "max" if kind in _UPPER else "min" if kind in _LOWER else ""
    names = [p for p in loc if isinstance(p, str) and p != "body"]
    if not side or not names:
        return ""
    name = "option" if names[-1] == "options" and isinstance(loc[-1], int) else names[-1]
    key = _LIMIT_KEYS.get((name, side))
    return f" (limit set by serve.limits.{key})" if key else ""


def describe_errors(errors: list[dict[str, Any]]) -> list[str]:
    """Pydantic errors as messages naming the field and the limit it broke."""
    messages = []
    for err in errors:
        loc = tuple(err.get("loc", ()))
        field = _field_name(loc)
        kind = err.get("type", "")
        if kind == "extra_forbidden":
            messages.append(f"'{field}': unknown field; remove it")
        elif kind == "missing":
            messages.append(f"'{field}': required field is missing")
        elif kind == "json_invalid":
            messages.append(f"body: not valid JSON ({err.get('msg')})")
        else:
            messages.append(f"'{field}': {err.get('msg')}{_limit_hint(loc, kind)}")
    return messages


def item_error(exc: ValidationError, index: int) -> str:
    """One message for an invalid /v1/score/batch item."""
    return "; ".join(
        describe_errors([dict(e, loc=("items", index, *e["loc"])) for e in exc.errors()])
    )
