"""Orchestration of the judge around an engine (METHOD.md step 3), with a scripted engine.

The fake engine below implements the Engine protocol and answers from a script keyed by the
explanation it finds in the prompt; it exists only to drive the judge's control flow (batching,
empty explanations, repair, unscored). The real prompts and parsing are used throughout.
"""

from __future__ import annotations

import json

import pytest

from anchor_service.core.injection import parse_data_blocks
from anchor_service.core.rubric import VERDICT_TOKENS, neutralise, verdict_schema
from anchor_service.core.types import CRITERIA, VERDICT_VALUES, Judgement
from anchor_service.engines.base import (
    ChoiceQuery,
    Completion,
    Engine,
    EngineError,
    GenRequest,
    SamplingParams,
)
from anchor_service.scoring.item import JudgeItem
from anchor_service.scoring.judge import Judge

QUESTION = "What is 7 x 8?"
OPTIONS = ["48", "54", "56", "64"]


def item(explanation: str, answer: str | None = "C") -> JudgeItem:
    return JudgeItem(QUESTION, OPTIONS, answer, explanation)


def verdict_json(**overrides: str) -> str:
    return json.dumps({**{k: "Satisfactory" for k in CRITERIA}, **overrides})


def _explanation_in(messages: list[dict]) -> str:
    user = next(m["content"] for m in messages if m["role"] == "user")
    [(_, fields)] = parse_data_blocks(user)
    return fields["explanation"]


class ScriptedEngine:
    """Engine protocol; answers by the explanation in each prompt, and records every call."""

    model_id = "scripted-judge"

    def __init__(
        self,
        probs: dict[str, list[dict[str, float]]] | None = None,
        outputs: dict[str, list[str]] | None = None,
        single_tokens_ok: bool = True,
    ) -> None:
        self.probs = probs or {}
        self.outputs = outputs or {}  # explanation -> [first reply, repair reply]
        self.single_tokens_ok = single_tokens_ok
        self.calls: list[tuple[str, object]] = []

    def check_single_tokens(self, tokens: list[str]) -> None:
        self.calls.append(("check_single_tokens", list(tokens)))
        if not self.single_tokens_ok:
            raise EngineError("'3' -> 2 tokens")

    def choice_probs(
        self, queries: list[ChoiceQuery], tokens: list[str]
    ) -> list[list[dict[str, float]]]:
        self.calls.append(("choice_probs", (queries, list(tokens))))
        return [self.probs[_explanation_in(q.prefix)] for q in queries]

    def generate(self, requests: list[GenRequest], params: SamplingParams) -> list[Completion]:
        self.calls.append(("generate", (requests, params)))
        out = []
        for r in requests:
            round_ = 0 if len(r.prompt) <= 2 else 1  # a repair adds the bad reply and a note
            out.append(Completion(text=self.outputs[_explanation_in(r.prompt)][round_], key=r.key))
        return out

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]


def test_scripted_engine_follows_the_protocol():
    assert isinstance(ScriptedEngine(), Engine)


def test_probability_mode_checks_digit_tokens_at_construction():
    engine = ScriptedEngine()
    judge = Judge(engine, mode="probability", judge_id="j")
    assert engine.calls == [("check_single_tokens", VERDICT_TOKENS)]
    assert judge.mode == "probability"


def test_probability_mode_refuses_multi_token_digits():
    with pytest.raises(EngineError, match="tokens"):
        Judge(ScriptedEngine(single_tokens_ok=False), mode="probability", judge_id="j")


def test_auto_mode_picks_probability_when_digits_are_single_tokens():
    assert Judge(ScriptedEngine(), mode="auto").mode == "probability"


def test_auto_mode_falls_back_to_generative_without_single_digit_tokens():
    assert Judge(ScriptedEngine(single_tokens_ok=False), mode="auto").mode == "generative"


def test_unknown_mode_is_an_error_naming_the_modes():
    with pytest.raises(ValueError, match="auto, probability, generative"):
        Judge(ScriptedEngine(), mode="oracle")  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", ["probability", "generative"])
def test_empty_explanations_score_zero_without_a_model_call(mode):
    engine = ScriptedEngine()
    judge = Judge(engine, mode=mode, judge_id="j")
    engine.calls.clear()
    results = judge.score([item(""), item("  \n\t "), item("", answer=None)])
    assert engine.calls == []
    for r in results:
        assert r.status == "empty" and r.score == 0 and r.mode == mode
        assert r.verdicts == {k: "Unsatisfactory" for k in CRITERIA}
        assert r.score_expected == (0.0 if mode == "probability" else None)


def test_probability_mode_scores_all_items_in_one_call_in_order():
    high = [{"3": 0.7, "2": 0.2, "1": 0.05, "0": 0.05}] * 5
    low = [{"3": 0.05, "2": 0.05, "1": 0.2, "0": 0.7}] * 5
    engine = ScriptedEngine(probs={"good reasons": high, "nonsense": low})
    judge = Judge(engine, mode="probability", judge_id="j")
    engine.calls.clear()
    results = judge.score([item("good reasons"), item(""), item("nonsense")])
    assert engine.names() == ["choice_probs"]
    queries, tokens = engine.calls[0][1]
    assert tokens == VERDICT_TOKENS
    assert len(queries) == 2  # the empty one never reaches the engine
    assert all(len(q.slots) == len(CRITERIA) for q in queries)
    good, empty, bad = results
    assert (good.status, good.score, good.score_expected) == ("scored", 15, 12.75)
    assert good.verdicts == {k: "Excellent" for k in CRITERIA}
    assert empty.status == "empty"
    assert (bad.status, bad.score, bad.score_expected) == ("scored", 0, 2.25)
    assert good.extra["expected"] == {k: 2.55 for k in CRITERIA}


def test_probability_mode_without_digit_mass_is_unscored_not_an_error():
    engine = ScriptedEngine(
        probs={"odd": [{"A": 1.0}] * 5, "fine": [{"2": 1.0}] * 5},
    )
    judge = Judge(engine, mode="probability", judge_id="j")
    odd, fine = judge.score([item("odd"), item("fine")])
    assert (odd.status, odd.verdicts, odd.score, odd.score_expected) == (
        "unscored",
        None,
        None,
        None,
    )
    assert "no probability" in odd.extra["error"]
    assert (fine.status, fine.score) == ("scored", 10)


def test_generative_mode_reads_json_greedily_in_one_call():
    engine = ScriptedEngine(outputs={"why": [verdict_json(clarity="Excellent"), "unused"]})
    judge = Judge(engine, mode="generative", judge_id="j", max_tokens=77)
    [result] = judge.score([item("why")])
    assert engine.names() == ["generate"]
    params = engine.calls[0][1][1]
    assert params.temperature == 0.0 and params.max_tokens == 77
    assert result.status == "scored" and result.score == 2 * 4 + 3
    assert result.verdicts["clarity"] == "Excellent"
    assert result.score_expected is None and result.mode == "generative"


def test_generative_mode_repairs_only_the_failures_quoting_their_error():
    engine = ScriptedEngine(
        outputs={
            "ok one": [verdict_json(), "unused"],
            "broken": ['{"clarity": "Excellent"}', verdict_json(relevance="Excellent")],
        }
    )
    judge = Judge(engine, mode="generative", judge_id="j")
    ok, repaired = judge.score([item("ok one"), item("broken")])
    assert engine.names() == ["generate", "generate"]
    repair_requests = engine.calls[1][1][0]
    assert len(repair_requests) == 1
    note = repair_requests[0].prompt[-1]["content"]
    assert "missing keys: logical_coherence" in note
    # The bad reply is quoted back neutralised (a verdict-shaped reply is model text too).
    assert repair_requests[0].prompt[-2] == {
        "role": "assistant",
        "content": neutralise('{"clarity": "Excellent"}'),
    }
    assert (ok.status, ok.score) == ("scored", 10)
    assert (repaired.status, repaired.score) == ("scored", 11)


def test_generative_mode_asks_both_rounds_for_the_verdict_schema():
    engine = ScriptedEngine(outputs={"broken": ['{"clarity": "Excellent"}', verdict_json()]})
    [result] = Judge(engine, mode="generative", judge_id="j").score([item("broken")])
    assert result.status == "scored"  # an engine that ignores the schema is still repaired
    schemas = [params.json_schema for _, (_, params) in engine.calls]
    assert schemas == [verdict_schema(), verdict_schema()]
    props = schemas[0]["properties"]
    assert list(props) == list(CRITERIA) and schemas[0]["required"] == list(CRITERIA)
    assert all(p["enum"] == list(VERDICT_VALUES) for p in props.values())


def test_generative_mode_gives_up_after_one_repair_as_unscored():
    engine = ScriptedEngine(outputs={"hopeless": ["I think it is fine.", "Still no JSON"]})
    judge = Judge(engine, mode="generative", judge_id="j")
    [result] = judge.score([item("hopeless")])
    assert engine.names() == ["generate", "generate"]  # one repair, never a third call
    assert result.to_dict() == {
        "status": "unscored",
        "verdicts": None,
        "score": None,
        "score_expected": None,
        "mode": "generative",
        "judge": "j",
    }
    assert "after repair" in result.extra["error"]


def test_judgement_dict_is_the_score_object():
    engine = ScriptedEngine(probs={"x": [{"1": 1.0}] * 5})
    [result] = Judge(engine, mode="probability", judge_id="judge-a").score([item("x")])
    assert isinstance(result, Judgement)
    assert result.to_dict() == {
        "status": "scored",
        "verdicts": {k: "Needs Improvement" for k in CRITERIA},
        "score": 5,
        "score_expected": 5.0,
        "mode": "probability",
        "judge": "judge-a",
    }


def test_judge_id_defaults_to_the_engine_model():
    assert Judge(ScriptedEngine(), mode="generative").judge_id == "scripted-judge"


class ShortEngine(ScriptedEngine):
    def generate(self, requests: list[GenRequest], params: SamplingParams) -> list[Completion]:
        return []


def test_engine_answering_too_few_requests_is_an_engine_error():
    with pytest.raises(EngineError, match="0 completions for 1"):
        Judge(ShortEngine(), mode="generative").score([item("x")])


@pytest.mark.slow
def test_generative_mode_scores_every_check_set_item_on_the_embedded_model(embedded_model_dir):
    from anchor_service.config import ModelSpec
    from anchor_service.engines.hf import HFEngine
    from anchor_service.scoring.sanity import load_checkset

    # One thread: two OpenMP threads on 2 shared cores spin against other work (15x slower).
    engine = HFEngine(ModelSpec(name="embedded", torch_threads=1, batch_size=8))
    items = [it for pair in load_checkset() for it in pair]
    judged = Judge(engine, mode="generative").score(items)
    assert [j.status for j in judged] == ["scored"] * len(items), [
        j.extra.get("error") for j in judged
    ]
    assert all(j.verdicts and set(j.verdicts) == set(CRITERIA) for j in judged)
