"""Reading responses into (answer, explanation) exactly as METHOD.md "Parsing" says."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anchor_service.core.parsing import ParsedResponse, label_at, parse_response
from anchor_service.core.types import LETTERS

SPEEDS = ["40 km/h", "60 km/h", "80 km/h", "100 km/h"]
CITIES = ["Paris", "Paris, France", "Rome"]
U = "unparseable"

# (case id, text, options, expected answer, expected explanation, expected status)
CASES = [
    # The answer line, each separator the method lists.
    ("colon", "Answer: B\nExplanation: 120 / 2 = 60.", SPEEDS, "B", "120 / 2 = 60.", "ok"),
    ("paren", "Answer: (B)\nExplanation: halve it.", SPEEDS, "B", "halve it.", "ok"),
    ("dash_lower", "Answer - b\nExplanation: x", SPEEDS, "B", "x", "ok"),
    ("option_text_after", "Answer: B) 60 km/h\nExplanation: y", SPEEDS, "B", "y", "ok"),
    ("no_space", "Answer:C", SPEEDS, "C", "", "ok"),
    ("upper_case_word", "ANSWER: D\nEXPLANATION: z", SPEEDS, "D", "z", "ok"),
    ("lower_case_all", "answer: a\nexplanation: w", SPEEDS, "A", "w", "ok"),
    ("period_after", "Answer: A. Explanation: because.", SPEEDS, "A", "because.", "ok"),
    ("comma_then_letter", "Answer: B, C\nExplanation: e", SPEEDS, "B", "e", "ok"),
    ("leading_spaces", "   Answer: C  \n\nExplanation: s", SPEEDS, "C", "s", "ok"),
    ("space_then_digit", "Answer: B 60 km/h", SPEEDS, "B", "", "ok"),
    # Adversarial: the first Answer line decides; nothing after the label is searched.
    ("second_letter_word", "Answer: B or C\nExplanation: e", SPEEDS, None, "e", U),
    ("second_answer_line", "Answer: A\nAnswer: B\nExplanation: e", SPEEDS, "A", "e", "ok"),
    ("label_glued_to_word", "Answer: Because 60.", SPEEDS, None, "", U),
    ("empty_answer", "Answer:", SPEEDS, None, "", U),
    ("empty_answer_then_text", "Answer:\nB is right", SPEEDS, None, "B is right", U),
    ("out_of_range", "Answer: E\nExplanation: e", SPEEDS, None, "e", U),
    ("out_of_range_j", "Answer: J", CITIES, None, "", U),
    ("answering_is_no_answer_line", "Answering quickly, the answer is C.", SPEEDS, "C", "", "ok"),
    (
        "explanation_before_answer",
        "Explanation: because\nAnswer: C\nmore",
        SPEEDS,
        "C",
        "because\nmore",
        "ok",
    ),
    (
        "no_explanation_marker",
        "Answer: B\nHalf of 120 is 60.",
        SPEEDS,
        "B",
        "Half of 120 is 60.",
        "ok",
    ),
    (
        "trailing_junk",
        "Answer: B\nExplanation: ok\n\n###$$$ <|im_end|>",
        SPEEDS,
        "B",
        "ok\n\n###$$$ <|im_end|>",
        "ok",
    ),
    # Without an answer line: the first sentence.
    (
        "answer_is",
        "The answer is B. Because 120 / 2 = 60.",
        SPEEDS,
        "B",
        "Because 120 / 2 = 60.",
        "ok",
    ),
    ("answer_is_paren", "I think the answer is (c), clearly.", SPEEDS, "C", "", "ok"),
    (
        "answer_is_a_bit",
        "The answer is a bit unclear.",
        SPEEDS,
        None,
        "The answer is a bit unclear.",
        U,
    ),
    (
        "answer_in_second_sentence",
        "Hmm. The answer is B.",
        SPEEDS,
        None,
        "Hmm. The answer is B.",
        U,
    ),
    ("whole_option_text", "It goes 60 KM/H overall.", SPEEDS, "B", "", "ok"),
    (
        "option_spaces_normalised",
        "It goes 60   km/h.\nsince 120/2",
        SPEEDS,
        "B",
        "since 120/2",
        "ok",
    ),
    ("option_inside_number", "It goes 160 km/h.", SPEEDS, None, "It goes 160 km/h.", U),
    (
        "two_options_ambiguous",
        "Either 40 km/h or 80 km/h.",
        SPEEDS,
        None,
        "Either 40 km/h or 80 km/h.",
        U,
    ),
    ("prefix_option_longest", "It is Paris, France.", CITIES, "B", "", "ok"),
    ("prefix_option_short", "It is Paris. Rome is wrong.", CITIES, "A", "Rome is wrong.", "ok"),
    ("prefix_and_other_ambiguous", "Paris or Rome.", CITIES, None, "Paris or Rome.", U),
    (
        "option_in_later_sentence",
        "I am unsure. It is Rome.",
        CITIES,
        None,
        "I am unsure. It is Rome.",
        U,
    ),
    ("decimal_not_sentence_end", "Speed 3.5 is not it; the answer is D.", SPEEDS, "D", "", "ok"),
    # Garbage.
    ("empty", "", SPEEDS, None, "", U),
    ("whitespace", " \n\t ", SPEEDS, None, "", U),
    (
        "unicode_junk",
        "\u202e\u0000\ufffd\U0001f600 \u2028\u00df",
        SPEEDS,
        None,
        "\u202e\u0000\ufffd\U0001f600 \u2028\u00df",
        U,
    ),
    ("unicode_line_separator", "\u2028Answer: A\u2028ok", SPEEDS, "A", "ok", "ok"),
    ("bare_letter", "B", SPEEDS, None, "B", U),
    ("no_options", "Answer: A", [], None, "", U),
]


@pytest.mark.parametrize(
    "text, options, answer, explanation, status",
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_parse_response_matches_the_table(text, options, answer, explanation, status):
    parsed = parse_response(text, options)
    assert parsed == ParsedResponse(answer, explanation, status)


def test_parsed_answer_index_is_the_option_position():
    assert parse_response("Answer: C", SPEEDS).answer_index == 2
    assert parse_response("", SPEEDS).answer_index is None


@pytest.mark.parametrize(
    "text, pos, expected",
    [("B)", 0, "B"), ("B x", 0, None), ("B -x", 0, "B"), ("xB.", 1, None), ("b\n", 0, "B")],
)
def test_label_needs_to_stand_alone(text, pos, expected):
    assert label_at(text, pos, 4) == expected


def test_parse_response_tolerates_non_string_output():
    assert parse_response(None, SPEEDS).parse_status == U  # type: ignore[arg-type]


_ALPHABET = st.sampled_from(
    list("AaBbCcJjEeXx:().,-= \n\r\t") + ["Answer", "answer is", "Explanation:", "\u2028", "\u00e9"]
)


@settings(max_examples=400, deadline=None)
@given(
    text=st.one_of(st.text(max_size=200), st.lists(_ALPHABET, max_size=40).map("".join)),
    options=st.lists(st.text(max_size=12), min_size=0, max_size=12),
)
def test_parse_response_never_raises_and_answer_is_in_range(text, options):
    parsed = parse_response(text, options)
    assert parsed.parse_status in ("ok", U)
    assert (parsed.answer is None) == (parsed.parse_status == U)
    if parsed.answer is not None:
        assert parsed.answer in LETTERS[: len(options)]
    assert isinstance(parsed.explanation, str)
