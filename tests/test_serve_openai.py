"""The OpenAI-compatible routes with the official `openai` client, against a live Serve app on
127.0.0.1 serving a run directory (`serve.policy_run_dir`): `sft` (the tiny trained model) and
two LoRA adapters on it as `anchor` and `rank`, `base` as a second engine, and the judge.

The same app takes the hostile traffic of issue 17 item 6: 64 concurrent clients over the
policy's capacity, and clients that send their body slowly or never finish it.

The run's evaluation answers are written by the pipeline's own evaluation step
(`MethodRun.evaluate`, Ray Data), so the equality test compares the service with it.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import time
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pandas as pd
import pytest

openai = pytest.importorskip("openai")

pytestmark = pytest.mark.ray

TOKEN = "openai-test-token-3f9a"
RETRY_AFTER_S = 3
BODY_TIMEOUT_S = 3
EVAL_MAX_TOKENS = 40
# The policy takes 2 requests at once and queues 2 more: 64 clients are far over capacity.
POLICY_CAPACITY = [
    "serve.policy_deployment.max_ongoing_requests=2",
    "serve.policy_deployment.max_queued_requests=2",
]


def _run_config(model: Path):
    from anchor_service.config import load_config

    return load_config(
        None,
        [
            f"policy.name={model}",
            "policy.dtype=float32",
            "policy.max_model_len=512",
            f"judge.model.name={model}",
            "judge.model.dtype=float32",
            "data.source=demo",
            "data.demo.n_train=4",
            "data.demo.n_test=8",
            "data.demo.seed=7",
            f"evaluation.max_tokens={EVAL_MAX_TOKENS}",
            "pairs.strategies=[anchor,rank]",
            "pipeline.sample.num_cpus=1",
            "pipeline.judge.num_cpus=1",
        ],
    )


def _lora(sft: Path, out: Path, seed: int) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False)
    get_peft_model(AutoModelForCausalLM.from_pretrained(sft), lora).save_pretrained(out)


@pytest.fixture(scope="module")
def run_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run directory: models/sft, two DPO-shaped adapters, and the pipeline's evaluation
    answers of both (the evaluation step itself, on a local Ray cluster)."""
    from anchor_service.cluster import ensure_ray
    from anchor_service.config import dump_config
    from anchor_service.recipe.method import MethodRun

    run = tmp_path_factory.mktemp("openai-run") / "run"
    sft = run / "models" / "sft"
    shutil.copytree(tiny_model_dir, sft)
    _lora(sft, run / "models" / "anchor", seed=1)
    _lora(sft, run / "models" / "rank", seed=2)
    cfg = _run_config(tiny_model_dir)
    (run / "config.yaml").write_text(dump_config(cfg))
    ensure_ray(cfg.cluster)
    method = MethodRun(cfg, run)
    # The models were written above, not trained: their stages' fingerprints are stand-ins.
    method.fp["sft"] = "sft-written-by-the-test"
    method.evaluate({s: method.strategy_model(s) for s in ("anchor", "rank")})
    return run


@pytest.fixture(scope="module")
def live(serve_tiny_model, run_dir: Path):
    with serve_tiny_model(
        f"serve.policy_run_dir={run_dir}",
        "serve.serve_base=true",
        "policy.max_model_len=512",
        "serve.limits.max_n=4",
        f"serve.limits.max_tokens={EVAL_MAX_TOKENS + 8}",
        f"serve.limits.retry_after_s={RETRY_AFTER_S}",
        f"serve.limits.body_timeout_s={BODY_TIMEOUT_S}",
        *POLICY_CAPACITY,
        token=TOKEN,
    ) as service:
        yield service


@pytest.fixture(scope="module")
def client(live):
    with openai.OpenAI(base_url=f"{live.url}/v1", api_key=TOKEN, max_retries=0) as c:
        yield c


def _question(run_dir: Path, prompt_id: str) -> tuple[str, list[str]]:
    from anchor_service.config import load_config
    from anchor_service.recipe.method import load_data

    cfg = load_config(str(run_dir / "config.yaml"))
    (example,) = [ex for ex in load_data(cfg).test if ex.prompt_id == prompt_id]
    return example.question, list(example.options)


# --- the official client ------------------------------------------------------------------------


def test_models_are_listed_in_openai_shape_with_the_judge_told_apart(client, live) -> None:
    models = client.models.list()
    ids = [m.id for m in models.data]
    assert ids == ["sft", "anchor", "rank", "base", "judge"]
    cards = {m.id: m.model_dump() for m in models.data}
    assert {c["object"] for c in cards.values()} == {"model"}
    assert (
        cards["judge"]["role"] == "judge" and cards["judge"]["owned_by"] == "anchor-service-judge"
    )
    assert {cards[i]["role"] for i in ids[:-1]} == {"policy"}
    assert cards["anchor"]["parent"] == "sft" and cards["anchor"]["root"].endswith("models/anchor")
    # The old fields stay for /v1/explain and /v1/score clients.
    raw = httpx.get(f"{live.url}/v1/models", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert raw["object"] == "list" and raw["policy"]["id"].endswith("models/anchor")


def test_chat_completion_with_the_client(client) -> None:
    reply = client.chat.completions.create(
        model="anchor",
        messages=[{"role": "user", "content": "What is 2 + 3?"}],
        max_tokens=8,
        temperature=0,
        n=2,
    )
    assert reply.object == "chat.completion" and reply.model == "anchor"
    assert len(reply.choices) == 2
    # Greedy: both choices are the same text.
    assert reply.choices[0].message.content == reply.choices[1].message.content
    assert reply.choices[0].finish_reason in ("stop", "length")
    assert reply.usage.prompt_tokens > 0 and reply.usage.completion_tokens > 0


def test_text_completion_with_logprobs(client) -> None:
    reply = client.completions.create(
        model="sft", prompt=["Answer: ", "The sum is"], max_tokens=4, temperature=0, logprobs=3
    )
    assert [c.index for c in reply.choices] == [0, 1]
    for choice in reply.choices:
        lp = choice.logprobs
        assert "".join(lp.tokens) == choice.text
        assert len(lp.token_logprobs) == len(lp.tokens) == len(lp.top_logprobs)
        for token, logprob, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs, strict=True):
            assert logprob <= 0 and len(top) == 3
            # Greedy: the chosen token is the most likely one.
            assert max(top.values()) == pytest.approx(logprob, abs=1e-5)
            assert token in top


def test_streaming_gives_the_same_text_as_a_plain_request(client) -> None:
    kwargs = {
        "model": "rank",
        "messages": [{"role": "user", "content": "Name a colour."}],
        "max_tokens": 10,
        "temperature": 0,
    }
    plain = client.chat.completions.create(**kwargs).choices[0].message.content
    chunks = list(
        client.chat.completions.create(
            **kwargs, stream=True, stream_options={"include_usage": True}
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in ("stop", "length")
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    streamed = client.completions.create(model="sft", prompt="Answer:", max_tokens=5, stream=True)
    assert all(c.object == "text_completion" for c in streamed)


def test_unknown_model_is_404_and_a_bad_body_400_in_openai_shape(client, live) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(
            model="no-such-model", messages=[{"role": "user", "content": "hi"}]
        )
    assert missing.value.status_code == 404
    error = missing.value.body
    assert error["code"] == "model_not_found" and "anchor" in error["message"]
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(
            model="sft", messages=[{"role": "user", "content": "hi"}], n=9
        )
    assert bad.value.body["param"] == "n" and "max_n" in bad.value.body["message"]
    headers = {"Authorization": f"Bearer {TOKEN}"}
    r = httpx.post(f"{live.url}/v1/completions", content=b"{nope", headers=headers)
    assert r.status_code == 400 and set(r.json()["error"]) == {"message", "type", "param", "code"}
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{live.url}/v1", api_key="wrong", max_retries=0).models.list()


def test_seed_makes_sampling_reproducible_and_no_seed_fresh(client) -> None:
    kwargs = {
        "model": "anchor",
        "messages": [{"role": "user", "content": "Tell me about numbers."}],
        "max_tokens": 16,
        "temperature": 1.5,
        "n": 2,
    }

    def texts(**extra) -> list[str]:
        reply = client.chat.completions.create(**kwargs, **extra)
        return [c.message.content for c in reply.choices]

    seeded = texts(seed=11)
    assert texts(seed=11) == seeded
    assert seeded[0] != seeded[1]  # choice i has its own key
    unseeded = {tuple(texts()) for _ in range(3)}
    assert len(unseeded) > 1


def test_base_is_a_second_engine_on_the_base_model(client) -> None:
    prompt = {"prompt": "Answer: ", "max_tokens": 6, "temperature": 0}
    base = client.completions.create(model="base", **prompt).choices[0].text
    # This run's sft model is a copy of the base model.
    assert base == client.completions.create(model="sft", **prompt).choices[0].text


# --- the served answers are the pipeline's --------------------------------------------------------


def test_served_greedy_answers_equal_the_pipeline_evaluation_answers(client, run_dir) -> None:
    from anchor_service.core.prompts import explain_prompt

    answers = {
        s: pd.read_parquet(run_dir / "eval" / f"answers-{s}.parquet").set_index("prompt_id")["text"]
        for s in ("anchor", "rank")
    }
    differ = [
        pid for pid in answers["anchor"].index if answers["anchor"][pid] != answers["rank"][pid]
    ]
    assert differ, "anchor and rank answered every evaluation prompt alike"
    for pid in differ[:3]:
        question, options = _question(run_dir, pid)
        for strategy in ("anchor", "rank"):
            reply = client.chat.completions.create(
                model=strategy,
                messages=explain_prompt(question, options),
                temperature=0,
                max_tokens=EVAL_MAX_TOKENS,
            )
            assert reply.choices[0].message.content == answers[strategy][pid], (pid, strategy)


def test_the_projects_openai_engine_judges_through_the_service(
    live, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from anchor_service.config import ModelSpec
    from anchor_service.core.rubric import VERDICT_TOKENS
    from anchor_service.engines.base import ChoiceQuery
    from anchor_service.engines.hf import HFEngine
    from anchor_service.engines.openai import OpenAIEngine

    monkeypatch.setenv("ANCHOR_TEST_KEY", TOKEN)
    remote = OpenAIEngine(
        ModelSpec(
            name="judge",
            engine="openai",
            base_url=f"{live.url}/v1",
            api_key_env="ANCHOR_TEST_KEY",
            tokenizer=str(tiny_model_dir),
            batch_size=1,
        )
    )
    local = HFEngine(ModelSpec(name=str(tiny_model_dir), dtype="float32"))
    queries = [
        ChoiceQuery(
            prefix=[{"role": "user", "content": "Rate the explanation 0-3. Score:"}],
            slots=["Clarity: ", "Accuracy: "],
        )
    ]
    got = remote.choice_probs(queries, VERDICT_TOKENS)
    want = local.choice_probs(queries, VERDICT_TOKENS)
    seen = 0
    for got_slot, want_slot in zip(got[0], want[0], strict=True):
        for token in VERDICT_TOKENS:
            if got_slot[token] > 0:  # outside the top 20 a remote token counts 0
                seen += 1
                assert got_slot[token] == pytest.approx(want_slot[token], rel=1e-3, abs=1e-6)
    assert seen > 0


# --- hostile traffic ------------------------------------------------------------------------------


async def _clients(url: str, n: int) -> list[httpx.Response]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    body = {"model": "sft", "prompt": "Answer: ", "max_tokens": 8, "temperature": 0}

    async def one() -> httpx.Response:
        # One connection per client: 64 clients, not 64 requests over a few connections.
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=300) as c:
            return await c.post("/v1/completions", json=body)

    return list(await asyncio.gather(*(one() for _ in range(n))))


def test_64_clients_over_capacity_get_503_with_retry_after_and_the_rest_answers(live) -> None:
    responses = asyncio.run(_clients(live.url, 64))
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 503}, statuses
    rejected = [r for r in responses if r.status_code == 503]
    admitted = [r for r in responses if r.status_code == 200]
    assert rejected and admitted, statuses
    for r in rejected:
        assert r.headers["retry-after"] == str(RETRY_AFTER_S)
        assert r.json()["error"]["type"] == "server_error"
    texts = {r.json()["choices"][0]["text"] for r in admitted}
    assert len(texts) == 1  # every admitted request answered, the same greedy text
    headers = {"Authorization": f"Bearer {TOKEN}"}
    assert httpx.get(f"{live.url}/healthz").status_code == 200
    after = httpx.post(
        f"{live.url}/v1/completions",
        json={"model": "sft", "prompt": "Answer: ", "max_tokens": 8, "temperature": 0},
        headers=headers,
        timeout=120,
    )
    assert after.status_code == 200 and after.json()["choices"][0]["text"] in texts


def _slow_client(url: str, body_start: bytes, declared: int) -> socket.socket:
    where = urlparse(url)
    sock = socket.create_connection((where.hostname, where.port), timeout=60)
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {where.hostname}\r\n"
        f"Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {declared}\r\n\r\n"
    ).encode()
    sock.sendall(head + body_start)
    return sock


def _read_all(sock: socket.socket) -> bytes:
    data = b""
    while True:
        try:
            part = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not part:
            break
        data += part
    return data


def test_a_slow_or_unfinished_body_is_cut_off_at_the_ingress(live) -> None:
    # More stalled clients than the policy takes and queues (2 + 2): had they reached it, the
    # request below would be refused 503.
    stalled = [_slow_client(live.url, b'{"model": "sft", ', 400) for _ in range(5)]
    trickle = _slow_client(live.url, b"{", 400)
    started = time.monotonic()
    try:
        r = httpx.post(
            f"{live.url}/v1/completions",
            json={"model": "sft", "prompt": "Answer: ", "max_tokens": 4, "temperature": 0},
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=120,
        )
        assert r.status_code == 200, r.text
        for _ in range(2 * BODY_TIMEOUT_S):  # a byte every half second: slow, never done
            try:
                trickle.sendall(b" ")
            except OSError:
                break
            time.sleep(0.5)
        for sock in [*stalled, trickle]:
            answer = _read_all(sock)
            assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
            assert b"body_timeout_s" in answer
        waited = time.monotonic() - started
        assert BODY_TIMEOUT_S - 0.5 <= waited < BODY_TIMEOUT_S + 30
    finally:
        for sock in [*stalled, trickle]:
            sock.close()
    with httpx.Client(base_url=live.url, headers={"Authorization": f"Bearer {TOKEN}"}) as c:
        assert c.get("/healthz").status_code == 200
        assert c.get("/v1/models").status_code == 200


# --- pieces that need no cluster ----------------------------------------------------------------


def test_serve_run_reads_the_runs_config_and_serves_its_models(tmp_path: Path) -> None:
    import argparse

    from anchor_service.cli import serve as serve_cli
    from anchor_service.cli.common import UsageError

    run = tmp_path / "run"
    (run / "models").mkdir(parents=True)
    (run / "config.yaml").write_text("policy:\n  name: /models/x\n  dtype: float32\n")
    parser = argparse.ArgumentParser(prog="anchor-align")
    serve_cli.add_parser(parser.add_subparsers(dest="command"))
    cfg = serve_cli.serve_config(parser.parse_args(["serve", "--run", str(run), "--port", "8123"]))
    assert cfg.serve.policy_run_dir == str(run.resolve())
    assert cfg.policy.name == "/models/x" and cfg.serve.port == 8123
    with pytest.raises(UsageError, match="no models/"):
        serve_cli.serve_config(parser.parse_args(["serve", "--run", str(tmp_path / "none")]))


def test_policy_models_of_a_run_name_sft_and_each_strategy(tiny_model_dir: Path, tmp_path: Path):
    from anchor_service.config import ModelSpec
    from anchor_service.engines.base import EngineError, GenRequest, SamplingParams
    from anchor_service.engines.factory import make_engine
    from anchor_service.serve.policies import policy_models

    run = tmp_path / "run"
    sft = run / "models" / "sft"
    shutil.copytree(tiny_model_dir, sft)
    _lora(sft, run / "models" / "anchor", seed=1)
    spec = ModelSpec(name="smollm2-135m-instruct", dtype="float32")
    served = policy_models(spec, str(run), "anchor")
    assert list(served.engines) == ["sft", "anchor"] and served.default == "anchor"
    request = [GenRequest(prompt="Answer: ", key=(0,))]
    params = SamplingParams(max_tokens=8)
    merged = make_engine(
        ModelSpec(name=str(sft), dtype="float32", adapter=str(run / "models" / "anchor"))
    )
    plain = make_engine(ModelSpec(name=str(sft), dtype="float32"))
    adapted_text = served.engines["anchor"].generate(request, params)[0].text
    assert adapted_text == merged.generate(request, params)[0].text
    assert adapted_text != plain.generate(request, params)[0].text
    # The view without the adapter is the SFT model itself, also after the adapter ran.
    assert (
        served.engines["sft"].generate(request, params)[0].text
        == plain.generate(request, params)[0].text
    )
    with pytest.raises(EngineError, match="strategy 'rank'.*sft, anchor"):
        policy_models(spec, str(run), "rank")
