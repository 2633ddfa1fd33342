"""The JSON constraint of the HF engine, without a model: schema shape, automaton, token masks."""

from __future__ import annotations

import itertools
import json

import pytest
import torch

from anchor_service.core.rubric import parse_verdict_json, verdict_schema
from anchor_service.core.types import CRITERIA, VERDICT_VALUES
from anchor_service.engines.base import EngineError
from anchor_service.engines.json_constraint import (
    DONE,
    EnumObjectSchema,
    JsonSchemaProcessor,
    TextAutomaton,
    UnsupportedSchemaError,
    build_constraint,
)

SMALL = {
    "type": "object",
    "properties": {"a": {"enum": ["x", "yz"]}, "b": {"type": "string", "enum": ["x", "w"]}},
    "required": ["b", "a"],
}
# A vocabulary with merges across the boundaries between fixed text and enum values, as
# real BPE vocabularies have ('{"', '":', ' "', '",', '"}'), plus every single character.
EOS = 0
TEXTS: list[str | None] = [None, '{"', '":', ' "', '",', '"}', "yz", 'x"', "x", "zz", "<tag>"]
TEXTS += sorted(set("".join(t for t in TEXTS if t)) | set('{}":, abwxyz'))
END = [EOS]


def _decode(ids: list[int]) -> str:
    return "".join(TEXTS[i] or "" for i in ids)


def test_verdict_schema_is_read_as_every_criterion_with_the_four_words():
    shape = EnumObjectSchema.from_schema(verdict_schema())
    assert shape.keys == CRITERIA
    assert all(c == tuple(VERDICT_VALUES) for c in shape.choices)


def test_automaton_accepts_exactly_the_canonical_serialisations():
    shape = EnumObjectSchema.from_schema(verdict_schema())
    automaton = TextAutomaton(shape.pieces())
    for words in itertools.product(VERDICT_VALUES, repeat=len(CRITERIA)):
        text = shape.canonical(dict(zip(CRITERIA, words, strict=True)))
        assert automaton.walk(text) == automaton.accept
        assert parse_verdict_json(text) == dict(zip(CRITERIA, words, strict=True))
    good = shape.canonical(dict.fromkeys(CRITERIA, "Excellent"))
    compact = json.dumps(json.loads(good), separators=(",", ":"))
    reordered = json.dumps(dict(reversed(json.loads(good).items())))
    unknown = good.replace("Excellent", "Great", 1)
    for text in (compact, reordered, unknown, " " + good, good + " "):
        assert automaton.walk(text) != automaton.accept
    assert automaton.walk(good[:-1]) not in (None, automaton.accept)  # a prefix stays alive


@pytest.mark.parametrize(
    ("schema", "named"),
    [
        ([], "expected a dict"),
        ({"type": "array", "properties": {"a": {"enum": ["x"]}}, "required": ["a"]}, "type"),
        ({"properties": {}, "required": []}, "non-empty"),
        ({"properties": {"a": {"enum": ["x"]}, "b": {"enum": ["y"]}}, "required": ["a"]}, "'b'"),
        ({"properties": {"a": {"enum": [1, 2]}}, "required": ["a"]}, "string"),
        ({"properties": {"a": {"type": "integer"}}, "required": ["a"]}, "type must be"),
        ({"properties": {"a": {"type": "string"}}, "required": ["a"]}, "enum"),
        ({"properties": {"a": {"enum": ["x"], "pattern": "x"}}, "required": ["a"]}, "pattern"),
        ({"anyOf": [], "properties": {"a": {"enum": ["x"]}}, "required": ["a"]}, "anyOf"),
        ({"properties": {"a": {"properties": {}}}, "required": ["a"]}, "properties"),
    ],
)
def test_unsupported_schema_names_the_problem_and_the_supported_shape(schema, named):
    with pytest.raises(UnsupportedSchemaError, match="enum-valued string properties") as info:
        EnumObjectSchema.from_schema(schema)
    assert named in str(info.value)
    assert isinstance(info.value, EngineError)  # callers catching engine errors see it too


def test_allowed_tokens_follow_the_text_across_slot_boundaries():
    constraint = build_constraint(SMALL, TEXTS, END)
    start = constraint.allowed(constraint.start)
    # '{"' spans the brace and the key's quote; '{' alone is a prefix too; nothing else fits.
    assert {TEXTS[i] for i in start} == {"{", '{"'}
    state = constraint.automaton.walk('{"a": ')
    # At the slot: the quote alone or a merged ' "' is not allowed here (the space is written).
    assert {TEXTS[i] for i in constraint.allowed(state)} == {'"'}
    state = constraint.automaton.walk('{"a": "')
    # 'x"' closes the value inside one token; 'yz' and 'x', 'y' start values; 'zz' does not.
    assert {TEXTS[i] for i in constraint.allowed(state)} == {'x"', "x", "yz", "y"}
    accept = constraint.automaton.walk('{"a": "yz", "b": "w"}')
    assert accept == constraint.automaton.accept
    assert constraint.allowed(accept) == {EOS: DONE}


def _constrained_greedy(processor: JsonSchemaProcessor, logits: list[torch.Tensor]) -> list[int]:
    """Greedy decoding of one row with the given per-step logits (no model)."""
    ids: list[int] = []
    for step_logits in logits:
        input_ids = torch.tensor([ids], dtype=torch.long).reshape(1, len(ids))
        masked = processor(input_ids, step_logits.unsqueeze(0).clone())
        ids.append(int(masked.argmax(-1)))
        if ids[-1] == EOS:
            break
    return ids


def test_any_logits_give_a_canonical_instance_then_the_end_token():
    constraint = build_constraint(SMALL, TEXTS, END)
    gen = torch.Generator().manual_seed(0)
    seen = set()
    for _ in range(200):
        logits = [torch.randn(len(TEXTS), generator=gen) for _ in range(40)]
        ids = _constrained_greedy(JsonSchemaProcessor(constraint, 1, prompt_width=0), logits)
        assert ids[-1] == EOS
        text = _decode(ids[:-1])
        obj = json.loads(text)
        assert text == json.dumps(obj) and list(obj) == ["a", "b"]
        assert obj["a"] in ("x", "yz") and obj["b"] in ("x", "w")
        seen.add(text)
    assert len(seen) == 4  # every instance is reachable


def _ids(*texts: str) -> list[int]:
    return [TEXTS.index(t) for t in texts]


def test_a_row_mask_depends_only_on_its_own_tokens():
    constraint = build_constraint(SMALL, TEXTS, END)
    rows = [  # generated tokens so far, the same count in every row (as in `generate`)
        _ids('{"', "a", '":', " ", '"'),
        _ids("{", '"', "a", '"', ":"),
        _ids('{"', "b", '":', " ", '"'),  # off the constraint (key order): left unmasked
    ]
    width = 3  # left-padded prompt columns before the generated ones
    batch = torch.tensor([[EOS] * width + r for r in rows])
    scores = torch.rand((len(rows), len(TEXTS)), generator=torch.Generator().manual_seed(2))
    together = JsonSchemaProcessor(constraint, len(rows), width)(batch, scores.clone())
    for i in range(len(rows)):
        alone = JsonSchemaProcessor(constraint, 1, width)(batch[i : i + 1], scores[i : i + 1])
        assert torch.equal(alone, together[i : i + 1])
    allowed = torch.isfinite(together)
    assert {TEXTS[i] for i in allowed[0].nonzero().flatten().tolist()} == {'x"', "x", "yz", "y"}
    assert {TEXTS[i] for i in allowed[1].nonzero().flatten().tolist()} == {" ", ' "'}
    assert allowed[2].all()


def test_tokenizer_without_a_path_to_the_text_is_an_engine_error():
    texts = [None, "{", '"', "a", ":", " ", "x", ","]  # no '}' anywhere
    constraint = build_constraint(
        {"properties": {"a": {"enum": ["x"]}}, "required": ["a"]}, texts, END
    )
    state = constraint.automaton.walk('{"a": "x"')
    with pytest.raises(EngineError, match="no token of this tokenizer"):
        constraint.allowed(state)
