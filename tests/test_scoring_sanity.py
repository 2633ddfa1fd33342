"""The judge check set and the sanity count (METHOD.md step 7), with a scripted engine.

The fake engine gives each explanation the digit probabilities a test wants; the Judge, the
prompts and the ranking are the real ones.
"""

from __future__ import annotations

import json

import pytest

from anchor_service.core.injection import parse_data_blocks
from anchor_service.core.types import CRITERIA, LETTERS
from anchor_service.engines.base import ChoiceQuery, Completion, GenRequest, SamplingParams
from anchor_service.scoring.item import JudgeItem
from anchor_service.scoring.judge import Judge
from anchor_service.scoring.sanity import CheckSetError, judge_sanity, load_checkset


def _explanation_in(messages: list[dict]) -> str:
    user = next(m["content"] for m in messages if m["role"] == "user")
    [(_, fields)] = parse_data_blocks(user)
    return fields["explanation"]


class RatingEngine:
    """Engine protocol: `rate(explanation)` gives the per-slot digit probabilities."""

    model_id = "rating-engine"

    def __init__(self, rate, generated: str = "") -> None:
        self.rate = rate
        self.generated = generated

    def check_single_tokens(self, tokens: list[str]) -> None:
        return None

    def choice_probs(self, queries: list[ChoiceQuery], tokens: list[str]):
        return [self.rate(_explanation_in(q.prefix)) for q in queries]

    def generate(self, requests: list[GenRequest], params: SamplingParams) -> list[Completion]:
        return [Completion(text=self.generated, key=r.key) for r in requests]


def peaked(digit: str, mass: float = 0.7) -> list[dict[str, float]]:
    rest = (1 - mass) / 3
    return [{t: (mass if t == digit else rest) for t in "3210"}] * len(CRITERIA)


SOUND = {pair[0].explanation for pair in load_checkset()}


def test_checkset_has_ten_varied_questions_with_both_explanations():
    pairs = load_checkset()
    assert len(pairs) == 10
    topics = {sound.meta["topic"] for sound, _ in pairs}
    assert {"science", "arithmetic", "everyday logic"} <= topics
    assert len({sound.question for sound, _ in pairs}) == 10
    for sound, nonsense in pairs:
        assert sound.question == nonsense.question and sound.options == nonsense.options
        assert sound.answer == nonsense.answer and sound.answer in LETTERS[: len(sound.options)]
        assert sound.explanation.strip() and nonsense.explanation.strip()
        assert sound.explanation != nonsense.explanation
        assert (sound.meta["kind"], nonsense.meta["kind"]) == ("sound", "nonsensical")


@pytest.mark.parametrize(
    "text, message",
    [
        ("not json", "'items' list"),
        (json.dumps({"items": [{"question": "q"}]}), "item 1 .*missing field"),
        (
            json.dumps(
                {
                    "items": [
                        {
                            "question": "q",
                            "options": ["a", "b"],
                            "answer": "C",
                            "sound": "s",
                            "nonsensical": "n",
                        }
                    ]
                }
            ),
            "answer 'C' is not an option letter",
        ),
    ],
)
def test_malformed_checkset_names_the_item_and_field(text, message):
    with pytest.raises(CheckSetError, match=message):
        load_checkset(text)


def test_judge_that_prefers_sound_explanations_passes_all_ten():
    engine = RatingEngine(lambda e: peaked("3") if e in SOUND else peaked("0"))
    result = judge_sanity(Judge(engine, mode="probability", judge_id="j"))
    assert result["passed"] == 10 and result["total"] == 10
    assert result["margins"] == [15] * 10
    # Per criterion: expected 2.4 (sound) - 0.6 (nonsense) = 1.8; five criteria.
    assert result["expected_margins"] == [pytest.approx(9.0)] * 10


def test_a_tie_fails():
    engine = RatingEngine(lambda e: peaked("2"))
    result = judge_sanity(Judge(engine, mode="probability", judge_id="j"))
    assert result["passed"] == 0 and result["margins"] == [0] * 10


def test_score_expected_breaks_an_integer_tie():
    # Same verdicts, but the sound one is more confident: it ranks higher by the ordering.
    engine = RatingEngine(lambda e: peaked("2", 0.9 if e in SOUND else 0.5))
    result = judge_sanity(Judge(engine, mode="probability", judge_id="j"))
    assert result["margins"] == [0] * 10
    assert result["passed"] == 10


def test_judge_preferring_nonsense_fails_with_negative_margins():
    engine = RatingEngine(lambda e: peaked("1") if e in SOUND else peaked("3"))
    result = judge_sanity(Judge(engine, mode="probability", judge_id="j"))
    assert result["passed"] == 0 and result["margins"] == [-10] * 10


def test_unscored_responses_fail_with_no_margin():
    engine = RatingEngine(lambda e: [], generated="no json here")
    result = judge_sanity(Judge(engine, mode="generative", judge_id="j"))
    assert result == {
        "passed": 0,
        "total": 10,
        "margins": [None] * 10,
        "expected_margins": [None] * 10,
    }


def test_custom_pairs_replace_the_checkset():
    pairs = [
        (
            JudgeItem("q", ["a", "b"], "A", "good"),
            JudgeItem("q", ["a", "b"], "A", ""),  # empty scores 0 without the model
        ),
        (JudgeItem("q2", ["a", "b"], "B", "good"), JudgeItem("q2", ["a", "b"], "B", "good")),
    ]
    engine = RatingEngine(lambda e: peaked("1"))
    result = judge_sanity(Judge(engine, mode="probability", judge_id="j"), pairs)
    assert result["total"] == 2 and result["passed"] == 1
    assert result["margins"] == [5, 0]


@pytest.mark.slow
def test_embedded_model_judges_the_whole_checkset_in_probability_mode(embedded_model_dir):
    # The 135M model is no reliable judge (about chance here); this checks that its digit
    # probabilities are read for every item, so the count is a real measurement.
    from anchor_service.config import ModelSpec
    from anchor_service.engines.factory import make_engine

    spec = ModelSpec(name=str(embedded_model_dir), device="cpu", dtype="float32", batch_size=4)
    judge = Judge(make_engine(spec), mode="probability", judge_id="smollm2-135m-instruct")
    result = judge_sanity(judge)
    assert result["total"] == 10 and 0 <= result["passed"] <= 10
    assert all(isinstance(m, int) for m in result["margins"])
    assert all(isinstance(m, float) for m in result["expected_margins"])
    # Not all identical: the model's probabilities do depend on the explanation it reads.
    assert len(set(result["expected_margins"])) > 1
