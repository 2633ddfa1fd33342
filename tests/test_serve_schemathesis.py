"""Property-based requests from the service's own OpenAPI schema: no 5xx, ever.

schemathesis generates valid and invalid requests for every operation of /openapi.json (the
OpenAI-compatible routes included) and sends them to a live app on 127.0.0.1 (tiny model,
small `n` and `max_tokens` caps, queues large enough that this sequential run stays below the
overload threshold); every response must be a non-5xx that matches the documented schema.

CI sends at least 400 requests (`ANCHOR_SCHEMATHESIS_EXAMPLES`, 40 per operation and mode);
the full run of at least 1,000 is a command of scripts/test-separate.sh:
`ANCHOR_SCHEMATHESIS_EXAMPLES=110 ANCHOR_SCHEMATHESIS_MIN=1000 pytest tests/test_serve_schemathesis.py`.
"""

from __future__ import annotations

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

pytestmark = pytest.mark.ray

TOKEN = "schemathesis-token-7c2d"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
EXAMPLES_PER_OPERATION = int(os.environ.get("ANCHOR_SCHEMATHESIS_EXAMPLES", "40"))
MIN_REQUESTS = int(os.environ.get("ANCHOR_SCHEMATHESIS_MIN", "400"))
OPENAI_ROUTES = ("/v1/chat/completions", "/v1/completions")

sent: list[tuple[str, str, int]] = []


@pytest.fixture(scope="module")
def service_url(serve_tiny_model):
    with serve_tiny_model(
        # Small caps keep every generated request cheap on the tiny model.
        "serve.limits.max_n=2",
        "serve.limits.max_tokens=8",
        "serve.limits.max_batch_items=4",
        "serve.limits.max_question_chars=400",
        "serve.limits.max_option_chars=80",
        "serve.limits.max_explanation_chars=800",
        "serve.limits.max_body_bytes=16384",
        "serve.limits.max_prompt_chars=400",
        "serve.limits.max_prompts=3",
        "serve.limits.max_messages=4",
        token=TOKEN,
    ) as live:
        yield live.url


@pytest.fixture(scope="module")
def api_schema(service_url: str):
    config = schemathesis.Config.from_dict(
        {"generation": {"mode": "all", "deterministic": True}, "headers": AUTH}
    )
    return schemathesis.openapi.from_url(f"{service_url}/openapi.json", headers=AUTH, config=config)


POSITIVE, NEGATIVE = GenerationMode.POSITIVE, GenerationMode.NEGATIVE
# The GET routes take no input, so there is nothing invalid to generate for them.
CASES = [
    ("POST", "/v1/score", POSITIVE),
    ("POST", "/v1/score", NEGATIVE),
    ("POST", "/v1/score/batch", POSITIVE),
    ("POST", "/v1/score/batch", NEGATIVE),
    ("POST", "/v1/explain", POSITIVE),
    ("POST", "/v1/explain", NEGATIVE),
    ("POST", "/v1/chat/completions", POSITIVE),
    ("POST", "/v1/chat/completions", NEGATIVE),
    ("POST", "/v1/completions", POSITIVE),
    ("POST", "/v1/completions", NEGATIVE),
    ("GET", "/v1/models", POSITIVE),
    ("GET", "/healthz", POSITIVE),
]
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.mark.parametrize("method,path,mode", CASES)
def test_generated_requests_get_no_server_error(
    api_schema, method: str, path: str, mode: GenerationMode
) -> None:
    operation = api_schema[path][method]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def run(case: schemathesis.Case) -> None:
        if mode is POSITIVE and path in OPENAI_ROUTES and isinstance(case.body, dict):
            # A generated name is almost never a served model (a 404): valid bodies name one,
            # so that they reach the policy and the judge.
            case.body["model"] = "judge" if len(sent) % 3 == 0 else "policy"
        response = case.call(headers=AUTH, timeout=120)
        sent.append((f"{method} {path}", mode.value, response.status_code))
        # No 5xx, a documented status code, and a body matching its documented schema.
        case.validate_response(response, checks=CHECKS)

    run()


def test_run_sent_enough_requests_without_any_5xx() -> None:
    by_case: dict[tuple[str, str], int] = {}
    for op, mode, _ in sent:
        by_case[(op, mode)] = by_case.get((op, mode), 0) + 1
    assert len(sent) >= MIN_REQUESTS, f"only {len(sent)} requests were generated: {by_case}"
    assert not [s for s in sent if s[2] >= 500]
    posted = {op for op, _, _ in sent if op.startswith("POST")}
    assert posted == {
        "POST /v1/score",
        "POST /v1/score/batch",
        "POST /v1/explain",
        "POST /v1/chat/completions",
        "POST /v1/completions",
    }
    # Valid requests were scored and invalid ones refused.
    statuses = {status for _, _, status in sent}
    assert 200 in statuses and 422 in statuses
