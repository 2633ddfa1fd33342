"""Prompt rendering shared by the local engines: chat template, started replies."""

from __future__ import annotations

from anchor_service.core.prompts import debater_prompt
from anchor_service.engines.tokens import render_prompt
from anchor_service.scoring.debate import started_reply


def test_a_started_reply_is_left_open_for_the_model_to_continue(tiny_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    prompt = debater_prompt("What is 2 + 3?", ["5", "6", "4", "1"], 0)
    plain = render_prompt(tokenizer, prompt, "tiny")
    started = render_prompt(tokenizer, prompt + [started_reply("A")], "tiny")
    assert started.endswith("Answer: A\nExplanation:")
    # the same conversation, with the assistant turn opened by the template and then begun
    assert started.startswith(plain)
    assert started[len(plain) :] == "Answer: A\nExplanation:"


def test_the_engine_returns_only_the_continuation_of_a_started_reply(tiny_model_dir):
    from anchor_service.config import ModelSpec
    from anchor_service.engines.base import GenRequest, SamplingParams
    from anchor_service.engines.hf import HFEngine

    engine = HFEngine(ModelSpec(name=str(tiny_model_dir), dtype="float32"))
    prompt = debater_prompt("What is 2 + 3?", ["5", "6", "4", "1"], 0) + [started_reply("A")]
    [out] = engine.generate(
        [GenRequest(prompt=prompt, key=(0, "p", 0))], SamplingParams(max_tokens=8)
    )
    assert not out.text.startswith("Answer: A")
    assert out.num_tokens <= 8
