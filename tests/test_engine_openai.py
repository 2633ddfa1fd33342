"""OpenAIEngine against a real local HTTP stub server (FastAPI + uvicorn on 127.0.0.1).

The stub answers from a per-test script (status, headers, body, delay) and otherwise echoes
the request, so every assertion is about what the engine sent and how it read the answer.
"""

from __future__ import annotations

import asyncio
import math
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from anchor_service.config import ModelSpec
from anchor_service.core.keys import key_seed
from anchor_service.engines.base import (
    ChoiceQuery,
    Engine,
    EngineError,
    GenRequest,
    SamplingParams,
)
from anchor_service.engines.openai import OpenAIEngine

Step = dict[str, Any] | Callable[[dict[str, Any]], dict[str, Any]]


class StubServer:
    """An OpenAI-shaped server whose answers are scripted per test; records every request."""

    def __init__(self) -> None:
        self.script: list[Step] = []
        self.requests: list[dict[str, Any]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.app = FastAPI()
        self.app.post("/v1/chat/completions")(self._handle)
        self.app.post("/v1/completions")(self._handle)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning"))
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )

    def start(self) -> None:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("stub server did not start within 10 s")
            time.sleep(0.01)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)

    def reset(self) -> None:
        self.script.clear()
        self.requests.clear()
        self.in_flight = self.max_in_flight = 0

    async def _handle(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append(
            {"path": request.url.path, "headers": dict(request.headers), "body": body}
        )
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            step = self.script.pop(0) if self.script else {}
            if callable(step):
                step = step(body)
            await asyncio.sleep(step.get("delay", 0.0))
            if "raw" in step:
                return Response(step["raw"], status_code=step.get("status", 200))
            content = step["body"] if "body" in step else _echo(request.url.path, body)
            return JSONResponse(
                content, status_code=step.get("status", 200), headers=step.get("headers")
            )
        finally:
            self.in_flight -= 1


def _echo(path: str, body: dict[str, Any]) -> dict[str, Any]:
    """A valid answer whose text names what was asked, so order and routing are checkable."""
    if path.endswith("/chat/completions"):
        text = "chat:" + body["messages"][-1]["content"]
        choice = {"index": 0, "message": {"role": "assistant", "content": text}}
    else:
        text = "text:" + body["prompt"]
        choice = {"index": 0, "text": text}
    choice["finish_reason"] = "length" if body.get("max_tokens") == 1 else "stop"
    return {"choices": [choice], "usage": {"completion_tokens": len(text)}}


@pytest.fixture(scope="module")
def stub() -> Iterator[StubServer]:
    server = StubServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def server(stub: StubServer) -> StubServer:
    stub.reset()
    return stub


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real (tiny) character-level tokenizer with a chat template that writes BOS itself."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, "<s>": 1}
    for ch in "abcdefghijklmnopqrstuvwxyz0123456789 :?\n<|>/":
        vocab.setdefault(ch, len(vocab))
    tk = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tk.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="[UNK]", bos_token="<s>")
    tok.chat_template = (
        "<s>{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}"
    )
    out = tmp_path_factory.mktemp("tokenizer")
    tok.save_pretrained(out)
    return out


def make_engine(server: StubServer, **spec_fields: Any) -> OpenAIEngine:
    fields: dict[str, Any] = {
        "name": "stub-model",
        "engine": "openai",
        "base_url": server.base_url,
        "api_key_env": "ANCHOR_TEST_NO_SUCH_KEY",
        "timeout_s": 5.0,
        "max_retries": 2,
    }
    fields.update(spec_fields)
    return OpenAIEngine(ModelSpec(**fields), backoff_s=0.01)


def test_engine_satisfies_protocol(server: StubServer) -> None:
    with make_engine(server) as engine:
        assert isinstance(engine, Engine)
        assert engine.model_id == "stub-model"


def test_chat_prompts_use_chat_and_text_prompts_use_completions(server: StubServer) -> None:
    reqs = [
        GenRequest([{"role": "user", "content": "why"}], key=(0, "p1", 0)),
        GenRequest("plain prompt", key=(0, "p1", 1)),
    ]
    with make_engine(server) as engine:
        out = engine.generate(reqs, SamplingParams(temperature=0.0, max_tokens=7, stop=["\n"]))
    assert [c.text for c in out] == ["chat:why", "text:plain prompt"]
    assert [c.key for c in out] == [(0, "p1", 0), (0, "p1", 1)]
    assert sorted(r["path"] for r in server.requests) == ["/v1/chat/completions", "/v1/completions"]
    for r in server.requests:
        assert r["body"]["model"] == "stub-model"
        assert r["body"]["max_tokens"] == 7
        assert r["body"]["stop"] == ["\n"]
        assert "seed" not in r["body"]  # greedy: no randomness to key


def test_json_schema_goes_as_response_format_on_chat_requests_only(server: StubServer) -> None:
    schema = {
        "type": "object",
        "properties": {"clarity": {"type": "string", "enum": ["Excellent", "Satisfactory"]}},
        "required": ["clarity"],
    }
    reqs = [GenRequest([{"role": "user", "content": "grade"}], key=(0, "j", 0)), GenRequest("p")]
    with make_engine(server) as engine:
        engine.generate(reqs, SamplingParams(max_tokens=30, json_schema=schema))
        engine.generate(reqs[:1], SamplingParams(max_tokens=30))
    chats = [r["body"] for r in server.requests if r["path"] == "/v1/chat/completions"]
    texts = [r["body"] for r in server.requests if r["path"] == "/v1/completions"]
    constrained = [b for b in chats if "response_format" in b]
    assert len(chats) == 2 and len(constrained) == 1 and len(texts) == 1
    assert constrained[0]["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "verdicts", "schema": schema},
    }
    # The completions endpoint has no response_format; a request without a schema sends none.
    assert "response_format" not in texts[0]


def test_sampled_requests_carry_seed_from_their_key(server: StubServer) -> None:
    keys = [(3, "q", i) for i in range(4)]
    with make_engine(server) as engine:
        engine.generate([GenRequest(f"p{k[2]}", key=k) for k in keys], SamplingParams(0.8, 0.95))
    seeds = {r["body"]["prompt"]: r["body"]["seed"] for r in server.requests}
    for k in keys:
        assert seeds[f"p{k[2]}"] == key_seed(k) & ((1 << 63) - 1)
    assert len(set(seeds.values())) == len(keys)
    assert all(0 <= s < 2**63 for s in seeds.values())


def test_seed_is_not_sent_when_disabled(server: StubServer) -> None:
    spec = ModelSpec(name="m", engine="openai", base_url=server.base_url, api_key_env="NONE_X")
    with OpenAIEngine(spec, send_seed=False) as engine:
        engine.generate([GenRequest("p", key=(0, "a", 0))], SamplingParams(temperature=1.0))
    assert "seed" not in server.requests[0]["body"]


def test_results_keep_request_order_with_bounded_concurrency(server: StubServer) -> None:
    # Later requests answer sooner, so completion order differs from request order.
    n = 9
    server.script.extend({"delay": 0.05 * (n - i)} for i in range(n))
    with make_engine(server, batch_size=3) as engine:
        out = engine.generate([GenRequest(f"p{i}") for i in range(n)], SamplingParams())
    assert [c.text for c in out] == [f"text:p{i}" for i in range(n)]
    assert 1 < server.max_in_flight <= 3


def test_429_is_retried_and_retry_after_is_honoured(server: StubServer) -> None:
    server.script.append(
        {"status": 429, "headers": {"Retry-After": "0.6"}, "body": {"error": {"message": "slow"}}}
    )
    with make_engine(server) as engine:
        start = time.monotonic()
        out = engine.generate([GenRequest("hello")], SamplingParams())
        elapsed = time.monotonic() - start
    assert out[0].text == "text:hello"
    assert len(server.requests) == 2
    assert elapsed >= 0.6  # backoff alone (0.01 s) would be far shorter


def test_server_errors_beyond_max_retries_raise_engine_error(server: StubServer) -> None:
    server.script.extend(
        {"status": 500, "body": {"error": {"message": "engine died"}}} for _ in range(3)
    )
    with make_engine(server, max_retries=2) as engine:
        with pytest.raises(EngineError, match=r"after 3 attempts.*HTTP 500: engine died"):
            engine.generate([GenRequest("x")], SamplingParams())
    assert len(server.requests) == 3


def test_client_error_raises_engine_error_with_server_message_without_retry(
    server: StubServer,
) -> None:
    msg = "This model's maximum context length is 2048 tokens"
    server.script.append({"status": 400, "body": {"error": {"message": msg}}})
    with make_engine(server) as engine:
        with pytest.raises(EngineError, match="HTTP 400: This model's maximum context length"):
            engine.generate([GenRequest("x")], SamplingParams())
    assert len(server.requests) == 1


def test_slow_response_times_out_and_is_retried(server: StubServer) -> None:
    server.script.append({"delay": 1.5})
    with make_engine(server, timeout_s=0.3) as engine:
        out = engine.generate([GenRequest("late")], SamplingParams())
    assert out[0].text == "text:late"
    assert len(server.requests) == 2


def test_unreachable_server_raises_engine_error_naming_connection(server: StubServer) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    spec = ModelSpec(
        name="m", engine="openai", base_url=f"http://127.0.0.1:{closed_port}/v1", max_retries=1
    )
    with OpenAIEngine(spec, backoff_s=0.01) as engine:
        with pytest.raises(EngineError, match="after 2 attempts.*connection failed"):
            engine.generate([GenRequest("x")], SamplingParams())


def test_malformed_bodies_give_empty_error_completions(server: StubServer) -> None:
    server.script.extend(
        [
            {"raw": "{not json"},
            {"body": {"choices": []}},
            {"body": {"choices": [{"message": {"content": None}}]}},
            {"body": ["not", "an", "object"]},
        ]
    )
    chat = [{"role": "user", "content": "q"}]
    with make_engine(server, batch_size=1) as engine:
        out = engine.generate(
            [GenRequest(chat, key=(0, "p", i)) for i in range(4)], SamplingParams()
        )
    assert [(c.text, c.finish_reason) for c in out] == [("", "error")] * 4
    assert [c.key for c in out] == [(0, "p", i) for i in range(4)]


def test_api_key_is_sent_as_bearer_from_the_named_env_var(
    server: StubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANCHOR_TEST_API_KEY", "sk-test-123")
    with make_engine(server, api_key_env="ANCHOR_TEST_API_KEY") as engine:
        engine.generate([GenRequest("x")], SamplingParams())
    monkeypatch.delenv("ANCHOR_TEST_API_KEY")
    with make_engine(server, api_key_env="ANCHOR_TEST_API_KEY") as engine:
        engine.generate([GenRequest("y")], SamplingParams())
    assert server.requests[0]["headers"]["authorization"] == "Bearer sk-test-123"
    assert "authorization" not in server.requests[1]["headers"]


def test_missing_base_url_raises_engine_error_naming_it() -> None:
    with pytest.raises(EngineError, match="base_url"):
        OpenAIEngine(ModelSpec(name="m", engine="openai"))


def test_choice_probs_reads_top_logprobs_per_slot(server: StubServer, tokenizer_dir: Path) -> None:
    # Each prompt i gets "3" with probability 0.1*(i+1) and "2" with 0.05; "0" is absent.
    def answer(body: dict[str, Any]) -> dict[str, Any]:
        choices = [
            {
                "index": i,
                "text": "3",
                "logprobs": {
                    "tokens": ["3"],
                    "top_logprobs": [
                        {"3": math.log(0.1 * (i + 1)), "2": math.log(0.05), "x": -0.1, "1": -50.0}
                    ],
                },
            }
            for i in range(len(body["prompt"]))
        ]
        return {"body": {"choices": choices[::-1]}}  # out of order: matched by index

    server.script.append(answer)
    queries = [ChoiceQuery([{"role": "user", "content": "rate it"}], ["a:", "b:", "c:"])]
    with make_engine(server, tokenizer=str(tokenizer_dir)) as engine:
        out = engine.choice_probs(queries, ["3", "2", "1", "0"])
    body = server.requests[0]["body"]
    assert len(server.requests) == 1  # all slots of a query in one request
    assert body["prompt"] == [f"<|user|>rate it\n<|assistant|>{s}" for s in ["a:", "b:", "c:"]]
    assert body["max_tokens"] == 1 and body["logprobs"] == 20 and body["temperature"] == 0.0
    assert len(out) == 1 and len(out[0]) == 3
    for i, probs in enumerate(out[0]):
        assert probs["3"] == pytest.approx(0.1 * (i + 1))
        assert probs["2"] == pytest.approx(0.05)
        assert probs["1"] == pytest.approx(math.exp(-50.0))
        assert probs["0"] == 0.0


def test_choice_probs_accepts_token_id_keys(server: StubServer, tokenizer_dir: Path) -> None:
    from transformers import AutoTokenizer

    three = AutoTokenizer.from_pretrained(tokenizer_dir).encode("3", add_special_tokens=False)[0]
    top = {f"token_id:{three}": math.log(0.7)}
    server.script.append(
        {"body": {"choices": [{"index": 0, "text": "", "logprobs": {"top_logprobs": [top]}}]}}
    )
    with make_engine(server, tokenizer=str(tokenizer_dir)) as engine:
        out = engine.choice_probs([ChoiceQuery("plain prefix ", ["s"])], ["3", "0"])
    assert out == [[{"3": pytest.approx(0.7), "0": 0.0}]]
    assert server.requests[0]["body"]["prompt"] == ["plain prefix s"]


def test_choice_probs_without_logprobs_gives_zeros(server: StubServer, tokenizer_dir: Path) -> None:
    server.script.append({"raw": "<html>bad gateway page</html>"})
    server.script.append({"body": {"choices": [{"index": 0, "text": "3"}]}})
    with make_engine(server, tokenizer=str(tokenizer_dir), batch_size=1) as engine:
        out = engine.choice_probs(
            [ChoiceQuery("p", ["a", "b"]), ChoiceQuery("q", ["a"])], ["3", "2"]
        )
    assert out == [[{"3": 0.0, "2": 0.0}] * 2, [{"3": 0.0, "2": 0.0}]]


def test_check_single_tokens_names_multi_token_strings(
    server: StubServer, tokenizer_dir: Path
) -> None:
    with make_engine(server, tokenizer=str(tokenizer_dir)) as engine:
        engine.check_single_tokens(["3", "2", "1", "0"])
        with pytest.raises(EngineError, match="'10' -> 2 tokens"):
            engine.check_single_tokens(["3", "10"])


def test_unknown_tokenizer_raises_engine_error(server: StubServer, tmp_path: Path) -> None:
    with make_engine(server, tokenizer=str(tmp_path / "missing")) as engine:
        with pytest.raises(EngineError, match="tokenizer"):
            engine.check_single_tokens(["3"])


def test_error_message_from_detail_field_is_reported(server: StubServer) -> None:
    server.script.append({"status": 404, "body": {"detail": "The model `x` does not exist."}})
    with make_engine(server) as engine:
        with pytest.raises(EngineError, match="HTTP 404: The model `x` does not exist"):
            engine.generate([GenRequest("x")], SamplingParams())
    assert len(server.requests) == 1
