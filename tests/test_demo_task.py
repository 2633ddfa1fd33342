"""The demo task generator: seeded, disjoint splits, balanced gold, true facts in meta."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from anchor_service.core.types import LETTERS, Example
from anchor_service.data.errors import DataError
from anchor_service.demo.task import DEFECTS, FAMILIES, UNIT_MM, demo_response, generate_demo


def _signature(ex: Example) -> tuple:
    return ex.question, tuple(sorted(ex.options))


def test_same_seed_same_questions_other_seed_other_questions():
    assert generate_demo(40, 7, "train") == generate_demo(40, 7, "train")
    assert generate_demo(40, 7, "train") != generate_demo(40, 8, "train")


def test_shorter_list_is_a_prefix_of_a_longer_one():
    assert generate_demo(30, 3, "test") == generate_demo(90, 3, "test")[:30]


def test_train_dev_and_test_are_disjoint():
    splits = {
        s: {_signature(ex) for ex in generate_demo(300, 11, s)} for s in ("train", "dev", "test")
    }
    assert all(len(v) == 300 for v in splits.values())  # distinct within a split, too
    assert not splits["train"] & splits["test"]
    assert not splits["train"] & splits["dev"]
    assert not splits["dev"] & splits["test"]


def test_gold_position_is_balanced_over_a_to_d():
    counts = Counter(ex.gold for ex in generate_demo(100, 5, "train"))
    assert counts == {0: 25, 1: 25, 2: 25, 3: 25}
    counts = Counter(ex.gold for ex in generate_demo(102, 5, "test"))
    assert max(counts.values()) - min(counts.values()) <= 1


def test_every_family_appears_and_ids_follow_the_split():
    examples = generate_demo(100, 2, "eval")
    assert {ex.meta["family"] for ex in examples} == set(FAMILIES)
    assert [ex.prompt_id for ex in examples] == [f"demo/dev/{i}" for i in range(1, 101)]


def test_questions_and_options_are_short_with_four_distinct_options():
    for ex in generate_demo(200, 9, "train"):
        assert len(ex.options) == 4 and len(set(ex.options)) == 4
        assert len(ex.question) <= 30 and all(len(o) <= 8 for o in ex.options)


def _length_mm(text: str) -> float:
    amount, unit = text.split()
    return float(amount) * UNIT_MM[unit]


def test_meta_facts_are_true_and_json_serialisable():
    for ex in generate_demo(300, 13, "test"):
        meta = ex.meta
        assert json.loads(json.dumps(meta)) == meta
        assert meta["gold"] == LETTERS[ex.gold] and ex.options[ex.gold] == meta["result_text"]
        distractors = meta["distractors"]
        assert sorted(d["option"] for d in distractors) == [
            LETTERS[i] for i in range(4) if i != ex.gold
        ]
        for d in distractors:
            assert ex.options[LETTERS.index(d["option"])] == d["text"]
        if meta["family"] == "arithmetic":
            a, b = meta["operands"]
            assert ex.question == f"What is {a} {meta['operation']} {b}?"
            assert meta["result"] == (a + b if meta["operation"] == "+" else a - b)
            other = a - b if meta["operation"] == "+" else a + b
            for d in distractors:
                gap = abs(d["value"] - meta["result"])
                expected = {"off_by_one": 1, "off_by_ten": 10}.get(d["kind"])
                if expected is None:
                    assert d["kind"] == "wrong_operation" and d["value"] == abs(other)
                else:
                    assert gap == expected
        else:
            values = meta["operands"]
            if meta["family"] == "units":
                assert values == pytest.approx([_length_mm(o) for o in ex.options])
                assert len({o.split()[1] for o in ex.options}) >= 2
            else:
                assert values == [int(o) for o in ex.options]
            extreme = max(values) if meta["operation"] == "max" else min(values)
            assert meta["result"] == extreme == values[ex.gold]


def test_demo_response_is_sound_by_default_and_defects_change_it():
    ex = generate_demo(1, 0, "train")[0]
    answer, sound = demo_response(ex)
    assert answer == ex.gold_letter and ex.meta["result_text"].split()[0] in sound
    for defect in DEFECTS:
        assert demo_response(ex, [defect])[1] != sound
    assert demo_response(ex, ["wrong_result"])[0] != ex.gold_letter


def test_demo_response_rejects_unknown_defects_and_non_demo_examples():
    ex = generate_demo(1, 0, "train")[0]
    with pytest.raises(ValueError, match="unknown defects"):
        demo_response(ex, ["typo"])
    with pytest.raises(ValueError, match="not a demo example"):
        demo_response(Example("x/1", "q", ("a", "b"), 0), [])


def test_unknown_split_is_a_data_error():
    with pytest.raises(DataError, match="unknown split"):
        generate_demo(3, 0, "holdout")
