"""The judge's development data (bench/data) and the injection measurement's arithmetic."""

from __future__ import annotations

import json

import pytest

from anchor_service.core.injection import parse_data_blocks, redact
from anchor_service.core.rubric import judge_query
from anchor_service.scoring.item import JudgeItem
from anchor_service.scoring.sanity import load_checkset
from bench.injection import Case, base_cases, injected, split_figures
from bench.judge_data import (
    CATEGORIES,
    CONTROL,
    FLAWS,
    DataError,
    Phrasing,
    load_dev_pairs,
    load_phrasings,
)


def test_dev_set_has_40_pairs_of_every_flaw_none_from_the_check_set():
    pairs = load_dev_pairs()
    assert len(pairs) >= 40
    assert {p.flaw for p in pairs} == FLAWS
    checkset = {s.question for s, _ in load_checkset()}
    assert not checkset & {p.sound.question for p in pairs}
    assert all(p.sound.explanation != p.flawed.explanation for p in pairs)


def test_phrasings_cover_every_category_with_a_quarter_held_out():
    phrasings = [p for p in load_phrasings() if p.category != CONTROL]
    assert len(phrasings) >= 40
    assert {p.category for p in phrasings} == CATEGORIES
    held = [p for p in phrasings if p.held_out]
    assert len(held) * 4 >= len(phrasings)
    assert {p.category for p in held} == CATEGORIES  # held-out phrasings in every category


def test_every_injected_explanation_stays_inside_its_one_data_block():
    cases = base_cases(2)
    for phrasing in load_phrasings():
        for case in cases:
            item = injected(case, phrasing)
            text = "\n".join(m["content"] for m in judge_query(item)[0])
            [(_, fields)] = parse_data_blocks(text)
            assert fields["explanation"] == redact(item.explanation.strip())


@pytest.mark.parametrize(
    "line, message",
    [
        ("not json", "not JSON"),
        ('{"id": "x", "category": "gossip", "text": "t"}', "category 'gossip'"),
        ('{"id": "x", "category": "role_play", "text": ""}', "'text' must be"),
        ('{"id": "x", "category": "role_play", "text": "t", "held_out": "yes"}', "held_out"),
        ('{"id": "x", "category": "role_play", "text": "t", "position": "middle"}', "position"),
    ],
)
def test_a_bad_phrasing_line_names_file_and_line(tmp_path, line, message):
    path = tmp_path / "p.jsonl"
    good = json.dumps({"id": "ok", "category": "role_play", "text": "hi"})
    path.write_text(good + "\n" + line + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=rf"p.jsonl:2: .*{message}"):
        load_phrasings(path)


def test_a_bad_dev_pair_names_file_and_line(tmp_path):
    row = {
        "id": "a",
        "flaw": "nonsense",
        "question": "Q?",
        "options": ["x", "y"],
        "answer": "C",
        "sound": "s",
        "flawed": "f",
    }
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps(row) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"d.jsonl:1: answer 'C' is not an option letter"):
        load_dev_pairs(path)
    path.write_text(
        json.dumps({**row, "answer": "A"}) + "\n" + json.dumps(row | {"answer": "B"}) + "\n"
    )
    with pytest.raises(DataError, match=r"d.jsonl:2: id 'a' already used at .*d.jsonl:1"):
        load_dev_pairs(path)


def test_split_figures_shift_max_and_gap():
    item = JudgeItem("Q", ["a", "b"], "A", "e")
    cases = [Case("q1", "sound", item), Case("q1", "nonsense", item)]
    base = [10.0, 4.0]
    phrasings = [Phrasing(f"p{i}", "role_play", False, "append", "t") for i in range(2)]
    scores = [[10.5, 6.0], [9.0, 4.0]]  # shifts +0.5 +2.0 / -1.0 0.0
    fig = split_figures(cases, base, phrasings, scores)
    assert fig["mean_shift"] == pytest.approx(0.375)
    assert fig["max_upward_shift"] == 2.0
    assert fig["gap_without"] == 6.0
    assert fig["gap_with"] == pytest.approx((10.5 + 9.0) / 2 - (6.0 + 4.0) / 2)
    assert fig["per_group"]["base=nonsense"] == {"mean": 1.0, "max": 2.0}
    assert fig["per_phrasing"]["p1"] == {"mean": -0.5, "max": 0.0}
