"""The HTTP service against a real Ray Serve app on 127.0.0.1 (tiny trained model).

One app per module (started once, shut down after): routes, auth, limits, overload, and the
same score as `anchor-align score --json`.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.ray

TOKEN = "test-token-h8-5b1e"
RETRY_AFTER_S = 3
LIMIT_OVERRIDES = [
    "serve.limits.max_body_bytes=4096",
    "serve.limits.max_question_chars=300",
    "serve.limits.max_option_chars=60",
    "serve.limits.max_explanation_chars=1500",
    "serve.limits.max_options=6",
    "serve.limits.max_batch_items=4",
    "serve.limits.max_n=2",
    "serve.limits.max_tokens=12",
    f"serve.limits.retry_after_s={RETRY_AFTER_S}",
    # A judge that takes one request at a time and queues one more: overload is easy to make.
    "serve.judge_deployment.max_ongoing_requests=1",
    "serve.judge_deployment.max_queued_requests=1",
    "serve.judge_deployment.max_batch_size=4",
    "serve.policy_deployment.max_batch_size=4",
]

QUESTION = "What is 17 + 25?"
OPTIONS = ["42", "43", "32", "-8"]
EXPLANATION = "17 + 25 = 42. 43 is off by one, 32 is off by ten and -8 is 17 - 25."
ITEM = {"question": QUESTION, "options": OPTIONS, "answer": "A", "explanation": EXPLANATION}


@dataclass
class Service:
    url: str
    model_dir: Path

    def client(self, token: str | None = TOKEN) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=120)


@pytest.fixture(scope="module")
def service(serve_tiny_model, tiny_model_dir: Path):
    with serve_tiny_model(*LIMIT_OVERRIDES, token=TOKEN) as live:
        yield Service(url=live.url, model_dir=tiny_model_dir)


# --- routes -----------------------------------------------------------------------------------


def test_healthz_answers_without_a_token(service: Service) -> None:
    r = service.client(token=None).get("/healthz")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


def test_every_route_answers_200_with_the_token(service: Service) -> None:
    with service.client() as c:
        score = c.post("/v1/score", json=ITEM)
        batch = c.post("/v1/score/batch", json={"items": [ITEM, ITEM]})
        explain = c.post(
            "/v1/explain",
            json={"question": QUESTION, "options": OPTIONS, "n": 2, "max_tokens": 12},
        )
        models = c.get("/v1/models")
        docs = c.get("/docs")
        schema = c.get("/openapi.json")
    for r in (score, batch, explain, models, docs, schema):
        assert r.status_code == 200, (r.request.url, r.text)
    result = score.json()
    assert set(result) == {
        "status",
        "verdicts",
        "score",
        "score_expected",
        "mode",
        "judge",
        "latency_ms",
    }
    assert result["status"] == "scored" and 0 <= result["score"] <= 15
    assert result["latency_ms"] > 0
    assert len(explain.json()["completions"]) == 2
    assert explain.json()["policy"] == str(service.model_dir)
    assert models.json()["judge"]["id"] == str(service.model_dir)
    assert models.json()["judge"]["mode"] == "probability"
    assert "swagger" in docs.text.lower()
    paths = schema.json()["paths"]
    assert {"/v1/score", "/v1/score/batch", "/v1/explain", "/healthz", "/v1/models"} <= set(paths)


def test_empty_explanation_scores_zero_with_status_empty(service: Service) -> None:
    with service.client() as c:
        r = c.post("/v1/score", json=dict(ITEM, explanation=""))
    assert r.status_code == 200
    assert r.json()["status"] == "empty" and r.json()["score"] == 0


def test_batch_keeps_input_order_and_marks_each_invalid_item(service: Service) -> None:
    items = [
        ITEM,
        {"question": QUESTION, "options": OPTIONS, "answer": "Z", "explanation": "x"},
        7,
        dict(ITEM, explanation=""),
    ]
    with service.client() as c:
        r = c.post("/v1/score/batch", json={"items": items})
        alone = c.post("/v1/score", json=ITEM).json()
    assert r.status_code == 200
    results = r.json()["results"]
    assert len(results) == 4
    assert results[0]["score"] == alone["score"]
    assert "items[1]" in results[1]["error"] and "answer" in results[1]["error"]
    assert "items[2]" in results[2]["error"]
    assert results[3]["status"] == "empty"


def test_explain_is_reproducible_for_the_same_seed(service: Service) -> None:
    body = {
        "question": QUESTION,
        "options": OPTIONS,
        "n": 2,
        "temperature": 0.9,
        "max_tokens": 12,
        "seed": 7,
        "score": True,
    }
    with service.client() as c:
        first = c.post("/v1/explain", json=body).json()
        second = c.post("/v1/explain", json=body).json()
    texts = [x["text"] for x in first["completions"]]
    assert texts == [x["text"] for x in second["completions"]]
    for completion in first["completions"]:
        assert completion["score"]["status"] in ("scored", "empty")


# --- auth -------------------------------------------------------------------------------------

PROTECTED = [
    ("POST", "/v1/score", ITEM),
    ("POST", "/v1/score/batch", {"items": [ITEM]}),
    ("POST", "/v1/explain", {"question": QUESTION, "options": OPTIONS}),
    ("GET", "/v1/models", None),
    ("GET", "/docs", None),
    ("GET", "/openapi.json", None),
]


@pytest.mark.parametrize("method,path,body", PROTECTED)
def test_protected_route_refuses_missing_and_wrong_tokens(
    service: Service, method: str, path: str, body: dict | None
) -> None:
    for headers in (
        {},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": f"Bearer {TOKEN}x"},
    ):
        r = httpx.request(method, service.url + path, json=body, headers=headers, timeout=60)
        assert r.status_code == 401, (path, headers, r.text)
        assert r.headers["www-authenticate"] == "Bearer"
        assert "Authorization: Bearer" in r.json()["detail"]


# --- limits -----------------------------------------------------------------------------------


def test_body_over_the_size_limit_is_413(service: Service) -> None:
    big = dict(ITEM, explanation="x" * 5000)
    with service.client() as c:
        r = c.post("/v1/score", json=big)
    assert r.status_code == 413
    assert "4096" in r.json()["detail"] and "max_body_bytes" in r.json()["detail"]


def test_chunked_body_over_the_size_limit_is_413(service: Service) -> None:
    payload = json.dumps(dict(ITEM, explanation="x" * 5000)).encode()

    def chunks():
        for i in range(0, len(payload), 1000):
            yield payload[i : i + 1000]

    with service.client() as c:
        # A generator body is sent chunked, without Content-Length: counted as it arrives.
        r = c.post("/v1/score", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413


LIMIT_CASES = [
    ("/v1/score", dict(ITEM, question="q" * 301), "question", "300"),
    ("/v1/score", dict(ITEM, options=["o"] * 7), "options", "6"),
    ("/v1/score", dict(ITEM, options=["only one"]), "options", "2"),
    ("/v1/score", dict(ITEM, options=["a", "b" * 61]), "options[1]", "60"),
    ("/v1/score", dict(ITEM, explanation="e" * 1501), "explanation", "1500"),
    ("/v1/score", dict(ITEM, answer="ABCD"), "answer", "3"),
    ("/v1/score/batch", {"items": [ITEM] * 5}, "items", "4"),
    ("/v1/explain", {"question": QUESTION, "options": OPTIONS, "n": 3}, "n", "2"),
    (
        "/v1/explain",
        {"question": QUESTION, "options": OPTIONS, "max_tokens": 13},
        "max_tokens",
        "12",
    ),
    ("/v1/explain", {"question": QUESTION, "options": OPTIONS * 2}, "options", "6"),
]


@pytest.mark.parametrize("path,body,field,limit", LIMIT_CASES)
def test_field_beyond_its_limit_is_422_naming_field_and_limit(
    service: Service, path: str, body: dict, field: str, limit: str
) -> None:
    with service.client() as c:
        r = c.post(path, json=body)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert f"'{field}'" in detail and limit in detail, detail


def test_semantic_errors_are_422_with_the_field(service: Service) -> None:
    with service.client() as c:
        bad_letter = c.post("/v1/score", json=dict(ITEM, answer="F"))
        blank_option = c.post("/v1/score", json=dict(ITEM, options=["a", "   "]))
        not_json = c.post(
            "/v1/score", content=b"{not json", headers={"Content-Type": "application/json"}
        )
        unknown = c.post("/v1/score", json=dict(ITEM, rubric="lenient"))
    assert bad_letter.status_code == 422 and "'answer'" in bad_letter.json()["detail"]
    assert blank_option.status_code == 422 and "'options'" in blank_option.json()["detail"]
    assert not_json.status_code == 422 and "JSON" in not_json.json()["detail"]
    assert unknown.status_code == 422 and "'rubric'" in unknown.json()["detail"]


# --- overload ---------------------------------------------------------------------------------


async def _flood(url: str, n: int) -> list[httpx.Response]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    batch = {"items": [ITEM] * 4}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=120) as c:
        return list(
            await asyncio.gather(*(c.post("/v1/score/batch", json=batch) for _ in range(n)))
        )


def test_overload_is_503_with_retry_after_and_the_service_recovers(service: Service) -> None:
    # The judge takes 1 request and queues 1 more; 24 at once must overflow. Bounded: at
    # most 3 floods of 24 requests.
    responses: list[httpx.Response] = []
    for _ in range(3):
        responses += asyncio.run(_flood(service.url, 24))
        if any(r.status_code == 503 for r in responses):
            break
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 503}, statuses
    rejected = [r for r in responses if r.status_code == 503]
    assert rejected, "no request was rejected under overload"
    assert any(r.status_code == 200 for r in responses)
    for r in rejected:
        assert r.headers["retry-after"] == str(RETRY_AFTER_S)
        assert "retry" in r.json()["detail"].lower()
    with service.client() as c:
        assert c.post("/v1/score", json=ITEM).status_code == 200
        assert c.get("/healthz").status_code == 200


# --- same score as the CLI ----------------------------------------------------------------------


def test_score_matches_cli_score_json(service: Service) -> None:
    cli = subprocess.run(
        [
            sys.executable,
            "-m",
            "anchor_service.cli.main",
            "-q",
            "score",
            "--model",
            str(service.model_dir),
            "--dtype",
            "float32",
            "--question",
            QUESTION,
            *[arg for o in OPTIONS for arg in ("--option", o)],
            "--answer",
            "A",
            "--explanation",
            EXPLANATION,
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert cli.returncode == 0, cli.stderr
    expected = json.loads(cli.stdout.strip().splitlines()[-1])
    with service.client() as c:
        got = c.post("/v1/score", json=ITEM).json()
    latency = got.pop("latency_ms")
    assert latency > 0
    assert got["status"] == expected["status"] == "scored"
    assert got["verdicts"] == expected["verdicts"]
    assert got["score"] == expected["score"]
    assert got["mode"] == expected["mode"] and got["judge"] == expected["judge"]
    # Different thread counts may move the last float bit; the value is rounded to 3 places.
    assert got["score_expected"] == pytest.approx(expected["score_expected"], abs=1e-3)


# --- metrics ----------------------------------------------------------------------------------


def test_counters_reach_the_prometheus_endpoint(service: Service) -> None:
    import time

    import ray

    with service.client() as c:
        assert c.post("/v1/score", json=ITEM).status_code == 200
    assert httpx.post(service.url + "/v1/score", json=ITEM).status_code == 401
    port = ray.nodes()[0]["MetricsExportPort"]
    wanted = (
        "ray_anchor_scored_items_total",
        "ray_anchor_rejected_requests_total",
        "ray_serve_deployment_request_counter",  # Serve's own, on the same endpoint
    )
    deadline = time.monotonic() + 60  # Ray exports every few seconds
    text = ""
    while time.monotonic() < deadline:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=30).text
        if all(w in text for w in wanted):
            break
        time.sleep(2)
    lines = [line for line in text.splitlines() if line.startswith(wanted)]
    assert any('status="scored"' in line for line in lines), lines
    assert any('reason="unauthorized"' in line for line in lines), lines
    assert any(line.startswith("ray_serve_deployment_request_counter") for line in lines)


# --- pieces that need no cluster ------------------------------------------------------------------


def test_token_from_environment_wins_over_token_file(tmp_path: Path) -> None:
    from anchor_service.serve.auth import TOKEN_ENV, load_token

    f = tmp_path / "token"
    f.write_text("  from-file \n")
    assert load_token(str(f), environ={}) == "from-file"
    assert load_token(str(f), environ={TOKEN_ENV: "from-env"}) == "from-env"
    assert load_token(None, environ={}) is None


@pytest.mark.parametrize("content", [None, "", "  \n"])
def test_unreadable_or_empty_token_file_is_an_error_naming_it(
    tmp_path: Path, content: str | None
) -> None:
    from anchor_service.serve.auth import TokenFileError, load_token

    f = tmp_path / "token"
    if content is not None:
        f.write_text(content)
    with pytest.raises(TokenFileError, match=str(f)):
        load_token(str(f), environ={})


def test_bearer_check_needs_the_exact_token_and_scheme() -> None:
    from anchor_service.serve.auth import bearer_matches

    assert bearer_matches("Bearer s3cret", "s3cret")
    assert bearer_matches("bearer s3cret", "s3cret")
    for header in (None, "", "s3cret", "Bearer", "Bearer s3cre", "Bearer s3cret2", "Basic s3cret"):
        assert not bearer_matches(header, "s3cret"), header


def test_unexpected_error_in_a_route_is_503_with_retry_after_not_500() -> None:
    from fastapi import FastAPI

    from anchor_service.serve.guard import Guard

    app = FastAPI()

    @app.get("/boom")
    async def boom() -> dict:
        raise RuntimeError("a bug")

    app.add_middleware(Guard, token=None, max_body_bytes=1024, retry_after_s=5, metrics=None)

    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            return await c.get("/boom")

    r = asyncio.run(call())
    assert r.status_code == 503
    assert r.headers["retry-after"] == "5"


# --- Serve config files -----------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]


def serve_configs() -> list[tuple[str, dict]]:
    import yaml

    plain = yaml.safe_load((ROOT / "clusters" / "serve_config.yaml").read_text())
    manifest = yaml.safe_load((ROOT / "clusters" / "kuberay" / "rayservice.yaml").read_text())
    return [
        ("serve_config.yaml", plain),
        ("rayservice.yaml", yaml.safe_load(manifest["spec"]["serveConfigV2"])),
    ]


@pytest.mark.parametrize(
    "name,config", serve_configs(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_serve_config_args_build_the_application(
    name: str, config: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ray.serve import Application

    from anchor_service.serve.app import build_app

    # Relative config paths are read from working_dir, i.e. the repository root.
    monkeypatch.chdir(ROOT)
    (app,) = config["applications"]
    assert app["import_path"] == "anchor_service.serve.app:build_app"
    assert isinstance(build_app(app["args"]), Application)


def test_serve_config_args_with_an_unknown_key_are_refused() -> None:
    from anchor_service.config import ConfigError
    from anchor_service.serve.app import build_app

    with pytest.raises(ConfigError, match="overide"):
        build_app({"overide": ["serve.port=1"]})
    with pytest.raises(ConfigError, match="serve.limits.max_nn"):
        build_app({"overrides": ["serve.limits.max_nn=3"]})


def _serve_cli_args(argv: list[str]):
    import argparse

    from anchor_service.cli import serve as serve_cli

    parser = argparse.ArgumentParser(prog="anchor-align")
    serve_cli.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["serve", *argv])


def test_serve_command_refuses_a_bad_port_and_a_missing_token_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from anchor_service.cli.common import UsageError
    from anchor_service.serve.auth import TOKEN_ENV

    monkeypatch.delenv(TOKEN_ENV, raising=False)  # the environment would win over the file

    args = _serve_cli_args(["--port", "70000"])
    with pytest.raises(UsageError, match="--port 70000"):
        args.func(args)
    missing = tmp_path / "no-such-token"
    args = _serve_cli_args(["--set", f"serve.token_file={missing}"])
    with pytest.raises(UsageError, match="no-such-token"):
        args.func(args)
