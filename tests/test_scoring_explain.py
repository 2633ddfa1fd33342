"""Orchestration of explain / explain_batch around an engine, with a scripted engine.

The fake engine answers from a script keyed by each request's key, so the tests can check
that keys travel with requests and that results come back per question, in order.
"""

from __future__ import annotations

import pytest

from anchor_service.core.prompts import explain_prompt
from anchor_service.core.types import Example
from anchor_service.engines.base import Completion, EngineError, GenRequest, SamplingParams
from anchor_service.scoring.explain import ExplainRequest, explain, explain_batch

OPTIONS = ["40 km/h", "60 km/h", "80 km/h"]


class KeyedEngine:
    """Engine protocol; the reply to a request is script(key)."""

    model_id = "keyed"

    def __init__(self, script) -> None:
        self.script = script
        self.calls: list[tuple[list[GenRequest], SamplingParams]] = []

    def generate(self, requests: list[GenRequest], params: SamplingParams) -> list[Completion]:
        self.calls.append((requests, params))
        return [Completion(text=self.script(r.key), key=r.key) for r in requests]

    def choice_probs(self, queries, tokens):  # pragma: no cover - not used here
        raise NotImplementedError

    def check_single_tokens(self, tokens):  # pragma: no cover - not used here
        raise NotImplementedError


def test_explain_sends_the_explain_prompt_and_parses_each_sample():
    engine = KeyedEngine(lambda key: f"Answer: {'AB'[key[-1] % 2]}\nExplanation: e{key[-1]}")
    out = explain(engine, "How fast?", OPTIONS, n=3, params=SamplingParams(temperature=0.8))
    [(requests, params)] = engine.calls
    assert params.temperature == 0.8
    assert [r.prompt for r in requests] == [explain_prompt("How fast?", OPTIONS)] * 3
    assert [(p.answer, p.explanation) for _, p in out] == [("A", "e0"), ("B", "e1"), ("A", "e2")]
    assert [c.key for c, _ in out] == [("explain", 0), ("explain", 1), ("explain", 2)]


def test_explain_uses_given_keys():
    engine = KeyedEngine(lambda key: "Answer: C")
    out = explain(engine, "q", OPTIONS, n=2, keys=[(9, "p", 0), (9, "p", 1)])
    assert [c.key for c, _ in out] == [(9, "p", 0), (9, "p", 1)]


def test_explain_rejects_a_key_count_other_than_n():
    with pytest.raises(ValueError, match="2 keys given for n=3"):
        explain(KeyedEngine(str), "q", OPTIONS, n=3, keys=[(0,), (1,)])


def test_explain_batch_is_one_call_split_back_per_question():
    examples = [
        Example("d/t/1", "q1", tuple(OPTIONS), 0),
        Example("d/t/2", "q2", tuple(OPTIONS), 1),
    ]
    requests = [ExplainRequest.for_example(e, run_seed=5, n=2) for e in examples]
    engine = KeyedEngine(lambda key: f"Answer: {'B' if key[1] == 'd/t/2' else 'A'}\nExplanation: x")
    out = explain_batch(engine, requests, SamplingParams())
    assert len(engine.calls) == 1 and len(engine.calls[0][0]) == 4
    assert [[c.key for c, _ in per] for per in out] == [
        [(5, "d/t/1", 0), (5, "d/t/1", 1)],
        [(5, "d/t/2", 0), (5, "d/t/2", 1)],
    ]
    assert [[p.answer for _, p in per] for per in out] == [["A", "A"], ["B", "B"]]


def test_explain_batch_keeps_unparseable_samples_with_their_text():
    engine = KeyedEngine(lambda key: "I cannot decide.")
    [[(completion, parsed)]] = explain_batch(
        engine, [ExplainRequest("q", OPTIONS, [(0, "p", 0)])], SamplingParams()
    )
    assert completion.text == "I cannot decide." and parsed.parse_status == "unparseable"


def test_explain_batch_without_samples_makes_no_call():
    engine = KeyedEngine(str)
    assert explain_batch(engine, [ExplainRequest("q", OPTIONS, [])], SamplingParams()) == [[]]
    assert engine.calls == []


def test_engine_answering_too_few_requests_is_an_engine_error():
    class Short(KeyedEngine):
        def generate(self, requests, params):
            return []

    with pytest.raises(EngineError, match="0 completions for 1"):
        explain(Short(str), "q", OPTIONS)
