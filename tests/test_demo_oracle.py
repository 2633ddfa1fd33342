"""The demo oracle: a correct, complete explanation outscores each defect it checks."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anchor_service.core.types import CRITERIA, VERDICT_VALUES
from anchor_service.demo.checkset import oracle_check_pairs
from anchor_service.demo.oracle import OracleJudge, OracleMetaError
from anchor_service.demo.task import DEFECTS, demo_response, generate_demo
from anchor_service.scoring.item import JudgeItem

# "What is 27 + 15?"  A) 41  B) 42  C) 52  D) 12, written by hand in the demo meta schema.
SUM_META = {
    "family": "arithmetic",
    "operation": "+",
    "operands": [27, 15],
    "result": 42,
    "result_text": "42",
    "gold": "B",
    "unit": None,
    "distractors": [
        {"option": "A", "text": "41", "value": 41, "why": "off by one", "kind": "off_by_one"},
        {"option": "C", "text": "52", "value": 52, "why": "off by ten", "kind": "off_by_ten"},
        {
            "option": "D",
            "text": "12",
            "value": 12,
            "why": "wrong operation: 27 - 15 = 12",
            "kind": "wrong_operation",
        },
    ],
}
# "Which length is the longest?"  A) 1.2 m  B) 130 cm  C) 900 mm  D) 1.1 m
LENGTH_META = {
    "family": "units",
    "operation": "max",
    "operands": [1200, 1300, 900, 1100],
    "result": 1300,
    "result_text": "130 cm",
    "gold": "B",
    "unit": "mm",
    "distractors": [
        {"option": "A", "text": "1.2 m", "value": 1200, "why": "shorter", "kind": "shorter"},
        {"option": "C", "text": "900 mm", "value": 900, "why": "shorter", "kind": "shorter"},
        {"option": "D", "text": "1.1 m", "value": 1100, "why": "shorter", "kind": "shorter"},
    ],
}

SOUND = (
    "27 + 15 = 42, so the answer is B. 41 is off by one, 52 is off by ten, "
    "and 12 = 27 - 15 uses the wrong operation."
)
DEFECTIVE = {
    "wrong_result": ("C", "27 + 15 = 52, so the answer is C. 41 and 12 are too small."),
    "false_equation": (
        "B",
        "27 + 15 = 42, so the answer is B. 41 is off by one, 52 is off by ten, "
        "and 12 = 27 - 14 uses the wrong operation.",
    ),
    "ignores_numbers": (
        "B",
        "The answer is B since adding gives it. The others are off by one, off by ten, "
        "or use the wrong operation.",
    ),
    "no_word_on_others": ("B", "27 + 15 = 42, so the answer is B."),
    "contradiction": ("B", SOUND + " So the correct answer is C."),
    "repetition": (
        "B",
        SOUND + " 27 + 15 = 42, so the answer is B. 27 + 15 = 42, so the answer is B.",
    ),
}
# the criterion each defect must lower below Excellent
HIT = {
    "wrong_result": "factual_accuracy",
    "false_equation": "factual_accuracy",
    "ignores_numbers": "relevance",
    "no_word_on_others": "depth_of_argumentation",
    "contradiction": "logical_coherence",
    "repetition": "clarity",
}

judge = OracleJudge()


def _score(explanation: str, answer: str | None = "B", meta: dict | None = SUM_META):
    item = JudgeItem("What is 27 + 15?", ["41", "42", "52", "12"], answer, explanation, meta)
    return judge.score([item])[0]


def test_sound_explanation_is_excellent_on_every_criterion():
    j = _score(SOUND)
    assert j.status == "scored" and j.mode == "oracle" and j.judge == "oracle"
    assert set(j.verdicts.values()) == {"Excellent"} and j.score == 15
    assert j.score_expected == 15.0


@pytest.mark.parametrize("defect", sorted(DEFECTIVE))
def test_sound_explanation_outscores_each_defect_on_the_criterion_it_checks(defect):
    answer, text = DEFECTIVE[defect]
    j = _score(text, answer)
    assert j.score < _score(SOUND).score
    assert VERDICT_VALUES[j.verdicts[HIT[defect]]] < 3
    assert j.score == sum(VERDICT_VALUES[v] for v in j.verdicts.values())


def test_false_equation_is_reported_by_its_text():
    j = _score(DEFECTIVE["false_equation"][1])
    assert j.extra["false_claims"] == ["12 = 27 - 14"]


def test_sum_in_words_is_not_read_as_an_equation_between_its_numbers():
    j = _score("The sum of 27 and 15 is 42. A is wrong, C is wrong and D is wrong.")
    assert j.extra["false_claims"] == [] and j.verdicts["factual_accuracy"] == "Excellent"
    # naming the others as wrong gives no reason why
    assert j.verdicts["depth_of_argumentation"] == "Unsatisfactory"


def test_reasons_given_by_label_count_for_depth():
    j = _score(
        "27 + 15 = 42. Option A is one less, C) is ten more than 42, and D subtracts instead."
    )
    assert j.verdicts["depth_of_argumentation"] == "Excellent"


def test_answer_line_disagreeing_with_the_derivation_is_a_contradiction():
    j = _score(SOUND.replace("so the answer is B", "which is option B"), answer="A")
    assert j.verdicts["logical_coherence"] != "Excellent"
    assert j.verdicts["factual_accuracy"] != "Excellent"


def test_unit_conversions_and_comparisons_are_checked():
    item = JudgeItem(
        "Which length is the longest?", ["1.2 m", "130 cm", "900 mm", "1.1 m"], "B", "", LENGTH_META
    )

    def score(text: str):
        item.explanation = text
        return judge.score([item])[0]

    sound = score(
        "130 cm is the longest, so the answer is B. 1.2 m = 120 cm, 900 mm = 90 cm and "
        "1.1 m = 110 cm are all shorter than 130 cm."
    )
    assert sound.score == 15
    wrong = score(
        "130 cm is the longest, so the answer is B. 1.2 m = 12 cm, 900 mm = 90 cm and "
        "1.1 m = 110 cm are all shorter than 130 cm."
    )
    assert wrong.extra["false_claims"] == ["1.2 m = 12 cm"]
    assert wrong.score < sound.score
    negated = score("900 mm is not shorter than 130 cm, so B.")
    assert negated.extra["false_claims"] == ["900 mm is not shorter than 130 cm"]


def test_empty_explanation_is_empty_with_score_zero():
    j = _score("  \n ")
    assert j.status == "empty" and j.score == 0 and j.score_expected == 0.0
    assert j.verdicts == {c: "Unsatisfactory" for c in CRITERIA}


def test_item_without_demo_meta_is_unscored():
    for meta in (None, {"source": "arc"}):
        j = _score(SOUND, meta=meta)
        assert j.status == "unscored" and j.verdicts is None
        assert j.score is None and j.score_expected is None


def test_unparseable_answer_is_scored_on_the_explanation_alone():
    assert _score(SOUND, answer=None).score == 15


@pytest.mark.parametrize("defect", DEFECTS)
def test_every_generated_defect_lowers_the_score_in_every_family(defect):
    examples = generate_demo(60, 21, "test")
    assert {ex.meta["family"] for ex in examples} == {"arithmetic", "compare", "units"}
    for ex in examples:
        options = list(ex.options)
        sound = judge.score([JudgeItem(ex.question, options, *demo_response(ex), ex.meta)])[0]
        flawed = judge.score(
            [JudgeItem(ex.question, options, *demo_response(ex, [defect]), ex.meta)]
        )[0]
        assert sound.score == 15, (ex.prompt_id, sound.extra)
        assert flawed.score < sound.score, (ex.prompt_id, defect, flawed.extra)


def test_check_pairs_are_ten_seeded_pairs_the_oracle_ranks_right():
    pairs = oracle_check_pairs(n=10, seed=4)
    assert len(pairs) == 10 and pairs == oracle_check_pairs(n=10, seed=4)
    for sound, nonsense in pairs:
        assert sound.answer == nonsense.answer and sound.meta == nonsense.meta
        s, n = judge.score([sound, nonsense])
        assert s.score > n.score


@settings(max_examples=200, deadline=None)
@given(
    st.text(
        alphabet=st.sampled_from(list("0123456789 .,;+-*/x=<>()ABCDabisthanmcorect\n"))
        | st.characters(),
        max_size=200,
    )
)
def test_any_text_scores_within_range_without_raising(text):
    for meta in (SUM_META, LENGTH_META):
        j = _score(text, meta=meta)
        assert j.status in ("scored", "empty")
        assert 0 <= j.score <= 15 and j.score == sum(VERDICT_VALUES[v] for v in j.verdicts.values())


def test_malformed_demo_meta_is_an_error_naming_the_schema():
    with pytest.raises(OracleMetaError, match="generate_demo"):
        _score(SOUND, meta={"family": "arithmetic", "operands": [1, 2]})
