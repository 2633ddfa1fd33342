"""The policy's prompts and the debater leak check (METHOD.md "Two prompts", step 2)."""

from __future__ import annotations

import pytest

from anchor_service.core.parsing import parse_response
from anchor_service.core.prompts import (
    PromptError,
    answer_prompt,
    answer_target,
    debate_leaks,
    debater_prompt,
    explain_prompt,
    format_options,
)

QUESTION = "A train travels 120 km in 2 hours. What is its speed?"
OPTIONS = ["40 km/h", "60 km/h", "80 km/h"]


def _text(messages: list[dict]) -> str:
    return "\n".join(m["content"] for m in messages)


def test_format_options_labels_by_position_one_per_line():
    assert format_options(["x", "y z", "w"]) == "A) x\nB) y z\nC) w"


def test_format_options_keeps_each_option_on_one_line():
    assert format_options(["two\nlines", "b"]) == "A) two lines\nB) b"


def test_format_options_rejects_more_than_ten_options():
    with pytest.raises(PromptError, match="1 to 10"):
        format_options([str(i) for i in range(11)])


def test_answer_prompt_asks_for_the_letter_only():
    messages = answer_prompt(QUESTION, OPTIONS)
    assert [m["role"] for m in messages] == ["user"]
    text = _text(messages)
    assert QUESTION in text and "A) 40 km/h\nB) 60 km/h\nC) 80 km/h" in text
    assert "reply with the letter of the correct option only" in text.lower()
    assert "Explanation" not in text


@pytest.mark.parametrize("gold, expected", [(0, "Answer: A"), (3, "Answer: D"), (9, "Answer: J")])
def test_answer_target_is_exactly_the_answer_line(gold, expected):
    assert answer_target(gold) == expected


def test_answer_target_rejects_index_past_j():
    with pytest.raises(PromptError):
        answer_target(10)


def test_explain_prompt_states_the_exact_reply_format():
    text = _text(explain_prompt(QUESTION, OPTIONS))
    assert QUESTION in text and "B) 60 km/h" in text
    assert text.endswith(
        "Answer: <letter>\nExplanation: <why this option is right, and why the others are not>"
    )


def test_explain_target_format_parses_back():
    # The format the prompt asks for is exactly what the parser reads.
    parsed = parse_response("Answer: B\nExplanation: 120 / 2 = 60.", OPTIONS)
    assert (parsed.answer, parsed.explanation, parsed.parse_status) == ("B", "120 / 2 = 60.", "ok")


def test_debater_prompt_is_explain_prompt_plus_gold_letter():
    explain = _text(explain_prompt(QUESTION, OPTIONS))
    debater = _text(debater_prompt(QUESTION, OPTIONS, 1))
    assert "The correct answer is B." in debater
    for line in explain.splitlines():
        assert line in debater.splitlines()


def test_debater_prompt_wording_contains_no_leak_phrase():
    # If the prompt used a leak phrase, the model would copy it into its answer.
    assert debate_leaks(_text(debater_prompt(QUESTION, OPTIONS, 2))) is None


def test_debater_prompt_rejects_gold_outside_options():
    with pytest.raises(PromptError, match="outside"):
        debater_prompt(QUESTION, OPTIONS, 3)


@pytest.mark.parametrize(
    "text, phrase",
    [
        ("Answer: B\nExplanation: As given, the speed is 60 km/h.", "as given"),
        ("The provided answer B is right because 120/2 = 60.", "the provided answer"),
        ("I was told the answer is B, and indeed 120/2 = 60.", "i was told"),
        ("Since the answer was given as B, 60 km/h fits.", "was given"),
        ("The given answer is correct: 60 km/h.", "the given answer"),
        ("I WAS TOLD it is B.", "i was told"),
        ("As you said, it is B.", "as you said"),
        ("Using the hint, B.", "the hint"),
    ],
)
def test_debate_leaks_names_the_matched_phrase(text, phrase):
    assert debate_leaks(text) == phrase


@pytest.mark.parametrize(
    "text",
    [
        "Answer: B\nExplanation: 120 km in 2 hours is 120 / 2 = 60 km/h.",
        "She has given up on the 40 km/h option because it is too slow.",
        "The engine provides power; the answer is B.",
        "",
    ],
)
def test_debate_leaks_accepts_honest_explanations(text):
    assert debate_leaks(text) is None


def test_debate_leaks_reports_the_earliest_phrase_in_the_text():
    assert debate_leaks("I was told this. The provided answer is B.") == "i was told"
