"""Orchestration of the debater (METHOD.md step 2), with a scripted engine.

The fake engine answers from a script keyed by (prompt_id, attempt) read from each request's
key; it only drives the retry/accept control flow. Prompts and parsing are the real ones.
"""

from __future__ import annotations

import pytest

from anchor_service.core.parsing import parse_response
from anchor_service.core.types import Example
from anchor_service.engines.base import Completion, Engine, GenRequest, SamplingParams
from anchor_service.scoring.debate import (
    DebateAttempt,
    accepted_attempts,
    debate,
    debate_key,
    judge_attempt,
)

OPTIONS = ("40 km/h", "60 km/h", "80 km/h")


def example(pid: str, gold: int = 1) -> Example:
    return Example(pid, f"Question {pid}: how fast is the train?", OPTIONS, gold)


class ScriptedDebater:
    """Engine protocol; replies script[(prompt_id, attempt)], recording every call."""

    model_id = "scripted-debater"

    def __init__(self, script: dict[tuple[str, int], str]) -> None:
        self.script = script
        self.calls: list[tuple[list[GenRequest], SamplingParams]] = []

    def generate(self, requests: list[GenRequest], params: SamplingParams) -> list[Completion]:
        self.calls.append((requests, params))
        return [Completion(text=self.script[(r.key[1], r.key[3])], key=r.key) for r in requests]

    def choice_probs(self, queries, tokens):  # pragma: no cover - not used by the debater
        raise NotImplementedError

    def check_single_tokens(self, tokens):  # pragma: no cover - not used by the debater
        raise NotImplementedError


GOOD = "Answer: B\nExplanation: 120 km in 2 hours is 60 km/h; 40 and 80 do not fit."


def test_scripted_debater_follows_the_protocol():
    assert isinstance(ScriptedDebater({}), Engine)


def test_first_attempt_is_greedy_and_accepted_when_it_parses_to_gold():
    engine = ScriptedDebater({("p1", 0): GOOD})
    attempts = debate(engine, [example("p1")], run_seed=7, max_tokens=64)
    assert attempts == [
        DebateAttempt(
            prompt_id="p1",
            attempt=0,
            text=GOOD,
            answer="B",
            explanation="120 km in 2 hours is 60 km/h; 40 and 80 do not fit.",
            accepted=True,
            reason="accepted",
        )
    ]
    [(requests, params)] = engine.calls
    assert params.temperature == 0.0 and params.max_tokens == 64
    assert requests[0].key == (7, "p1", "debate", 0) == debate_key(7, "p1", 0)
    assert "The correct answer is B." in requests[0].prompt[-1]["content"]


def test_rejected_attempts_retry_at_temperature_with_keyed_randomness():
    engine = ScriptedDebater(
        {("p1", 0): "Answer: C\nExplanation: wrong.", ("p1", 1): "No idea.", ("p1", 2): GOOD}
    )
    attempts = debate(engine, [example("p1")], run_seed=3, max_retries=2, temperature=0.7)
    assert [(a.attempt, a.accepted, a.reason) for a in attempts] == [
        (0, False, "wrong_answer"),
        (1, False, "unparseable"),
        (2, True, "accepted"),
    ]
    assert [p.temperature for _, p in engine.calls] == [0.0, 0.7, 0.7]
    assert [r[0].key for r, _ in engine.calls] == [
        (3, "p1", "debate", 0),
        (3, "p1", "debate", 1),
        (3, "p1", "debate", 2),
    ]


@pytest.mark.parametrize(
    "text, reason",
    [
        ("Answer: B\nExplanation: As given, 60 km/h is right.", "leak: as given"),
        ("Answer: B\nExplanation: I was told it is B.", "leak: i was told"),
        ("Answer: B", "empty_explanation"),
        ("Answer: B\nExplanation:   ", "empty_explanation"),
        ("Answer: A\nExplanation: slow.", "wrong_answer"),
        ("", "unparseable"),
    ],
)
def test_attempt_is_rejected_with_its_reason(text, reason):
    engine = ScriptedDebater({("p1", 0): text})
    [attempt] = debate(engine, [example("p1")], run_seed=0, max_retries=0)
    assert (attempt.accepted, attempt.reason) == (False, reason)
    assert attempt.text == text


def test_prompt_is_skipped_after_max_retries():
    bad = "Answer: B\nExplanation: The provided answer is B."
    engine = ScriptedDebater({("p1", i): bad for i in range(3)})
    attempts = debate(engine, [example("p1")], run_seed=0, max_retries=2)
    assert len(attempts) == 3 and not any(a.accepted for a in attempts)
    assert {a.reason for a in attempts} == {"leak: the provided answer"}
    assert accepted_attempts(attempts) == {}


def test_each_round_is_one_batch_of_the_prompts_still_pending():
    engine = ScriptedDebater(
        {
            ("p1", 0): GOOD,
            ("p2", 0): "Answer: A\nExplanation: x.",
            ("p2", 1): GOOD,
            ("p3", 0): "nothing",
            ("p3", 1): "nothing",
            ("p3", 2): "nothing",
        }
    )
    examples = [example("p1"), example("p2"), example("p3")]
    attempts = debate(engine, examples, run_seed=1, max_retries=2)
    assert [[r.key[1] for r in reqs] for reqs, _ in engine.calls] == [
        ["p1", "p2", "p3"],
        ["p2", "p3"],
        ["p3"],
    ]
    # Ordered by example, then attempt.
    assert [(a.prompt_id, a.attempt) for a in attempts] == [
        ("p1", 0),
        ("p2", 0),
        ("p2", 1),
        ("p3", 0),
        ("p3", 1),
        ("p3", 2),
    ]
    assert sorted(accepted_attempts(attempts)) == ["p1", "p2"]


def test_gold_letter_decides_acceptance():
    engine = ScriptedDebater({("p1", 0): GOOD.replace("Answer: B", "Answer: C")})
    [attempt] = debate(engine, [example("p1", gold=2)], run_seed=0, max_retries=0)
    assert attempt.accepted and attempt.answer == "C"


def test_attempt_row_has_the_debates_parquet_columns():
    row = debate(ScriptedDebater({("p1", 0): GOOD}), [example("p1")], run_seed=0)[0].to_dict()
    assert list(row) == [
        "prompt_id",
        "attempt",
        "text",
        "answer",
        "explanation",
        "accepted",
        "reason",
    ]


def test_duplicate_prompt_ids_are_refused():
    with pytest.raises(ValueError, match="duplicate prompt_id"):
        debate(ScriptedDebater({}), [example("p1"), example("p1")], run_seed=0)


def test_judge_attempt_checks_in_order():
    text = "Answer: A\nExplanation: as given"
    assert judge_attempt(text, parse_response(text, OPTIONS), "B") == "wrong_answer"


def test_started_reply_is_sent_and_the_attempt_text_is_the_whole_reply():
    engine = ScriptedDebater({("p1", 0): " 120 km in 2 hours is 60 km/h; 40 and 80 do not fit."})
    attempts = debate(engine, [example("p1")], run_seed=7, prefill_answer=True)
    [(requests, _)] = engine.calls
    assert requests[0].prompt[-1] == {"role": "assistant", "content": "Answer: B\nExplanation:"}
    assert "The correct answer is B." in requests[0].prompt[-2]["content"]
    [attempt] = attempts
    assert attempt.accepted and attempt.answer == "B"
    assert attempt.text.startswith("Answer: B\nExplanation: 120 km")
    assert attempt.explanation == "120 km in 2 hours is 60 km/h; 40 and 80 do not fit."


def test_a_started_reply_that_copies_the_format_placeholder_is_retried():
    engine = ScriptedDebater(
        {
            ("p1", 0): " <why this option is right, and why the others are not>",
            ("p1", 1): " 60 km/h is 120 km over 2 hours.",
        }
    )
    attempts = debate(engine, [example("p1")], run_seed=7, prefill_answer=True)
    assert [a.reason for a in attempts] == ["empty_explanation", "accepted"]


def test_a_started_reply_still_fails_the_leak_check():
    engine = ScriptedDebater({("p1", a): " As given, B is the answer." for a in range(3)})
    attempts = debate(engine, [example("p1")], run_seed=7, prefill_answer=True)
    assert all(a.reason.startswith("leak") for a in attempts) and len(attempts) == 3
