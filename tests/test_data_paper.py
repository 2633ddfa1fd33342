"""Readers of the paper's datasets: real shared files (counts, gold mapping) and malformed rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from anchor_service.data.errors import DataError, DataNotFoundError, RowError
from anchor_service.data.load import resolve_data_dir
from anchor_service.data.paper import (
    canonical_split,
    load_paper,
    logiqa_option,
    read_ai2_jsonl,
    read_aqua,
    read_logiqa,
)

# Item counts from data/SOURCES.md.
COUNTS = [
    ("arc-challenge", "train", 1119),
    ("arc-challenge", "dev", 299),
    ("arc-challenge", "test", 1172),
    ("arc-easy", "train", 2251),
    ("arc-easy", "dev", 570),
    ("arc-easy", "test", 2376),
    ("openbookqa", "train", 4957),
    ("openbookqa", "dev", 500),
    ("openbookqa", "test", 500),
    ("logiqa", "eval", 651),
    ("logiqa", "test", 651),
    ("aqua-rat", "dev", 254),
    ("aqua-rat", "test", 254),
]


@pytest.fixture(scope="module")
def data_dir() -> Path:
    try:
        return resolve_data_dir()
    except DataNotFoundError as exc:
        pytest.skip(f"shared data not available: {exc}")


@pytest.mark.parametrize(("dataset", "split", "count"), COUNTS)
def test_real_split_has_the_documented_item_count(data_dir, dataset, split, count):
    result = load_paper(dataset, data_dir, split)
    assert len(result.examples) == count
    assert result.skipped == 0
    ids = [ex.prompt_id for ex in result.examples]
    assert len(set(ids)) == count
    assert all(pid.startswith(f"{dataset}/{canonical_split(split)}/") for pid in ids)


def test_arc_gold_is_the_choice_labelled_by_answer_key_also_for_numeric_labels(data_dir):
    path = data_dir / "arc/ARC-Challenge/ARC-Challenge-Test.jsonl"
    raw = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    by_id = {ex.prompt_id: ex for ex in load_paper("arc-challenge", data_dir, "test").examples}
    numeric = sizes = 0
    for row in raw:
        ex = by_id[f"arc-challenge/test/{row['id']}"]
        choices = row["question"]["choices"]
        gold_text = next(c["text"] for c in choices if c["label"] == row["answerKey"])
        assert ex.options[ex.gold] == gold_text.strip()
        assert len(ex.options) == len(choices)
        numeric += choices[0]["label"] == "1"
        sizes += len(choices) != 4
    assert numeric > 0 and sizes > 0  # the quirks of SOURCES.md were exercised


def test_logiqa_question_is_context_blank_line_question(data_dir):
    lines = (data_dir / "logiqa/Eval.txt").read_text(encoding="utf-8").splitlines()
    first = load_paper("logiqa", data_dir, "validation").examples[0]
    assert first.prompt_id == "logiqa/dev/1"
    assert first.question == f"{lines[2].strip()}\n\n{lines[3].strip()}"
    assert first.gold == "abcd".index(lines[1].strip())
    assert first.options[1] == lines[5][2:].strip()


def test_aqua_options_lose_their_labels(data_dir):
    first = load_paper("aqua-rat", data_dir, "dev").examples[0]
    assert first.options == ("32400", "6000", "600", "60000", "10")
    assert first.gold == 0


def test_missing_train_split_of_logiqa_says_to_train_on_dev(data_dir):
    with pytest.raises(DataNotFoundError, match="train on dev"):
        load_paper("logiqa", data_dir, "train")


def test_split_aliases_map_to_canonical_names():
    assert [canonical_split(s) for s in ("eval", "Validation", "dev", "train", "test")] == [
        "dev",
        "dev",
        "dev",
        "train",
        "test",
    ]
    with pytest.raises(DataError, match="unknown split"):
        canonical_split("holdout")


def _ai2(qid: str, key: str = "B", labels: str = "ABCD") -> str:
    choices = [{"text": f"t{label}", "label": label} for label in labels]
    return json.dumps({"id": qid, "question": {"stem": "q?", "choices": choices}, "answerKey": key})


def test_ai2_bad_json_names_file_and_line(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text(_ai2("a") + "\n{not json\n", encoding="utf-8")
    with pytest.raises(RowError) as err:
        read_ai2_jsonl(path, "arc-easy", "dev")
    assert err.value.line == 2 and str(path) in str(err.value) and "JSON" in str(err.value)


def test_ai2_answer_key_outside_labels_is_an_error_and_skip_counts_it(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text(
        "\n".join([_ai2("a"), _ai2("b", key="E"), _ai2("c", key="3", labels="1234")]) + "\n",
        encoding="utf-8",
    )
    with pytest.raises(RowError, match="line 2: answerKey 'E'"):
        read_ai2_jsonl(path, "arc-easy", "dev")
    result = read_ai2_jsonl(path, "arc-easy", "dev", on_bad_row="skip")
    assert [ex.prompt_id for ex in result.examples] == ["arc-easy/dev/a", "arc-easy/dev/c"]
    assert result.examples[1].gold == 2
    assert result.skipped == 1 and "line 2" in result.skipped_reasons[0]


def test_duplicate_id_names_both_lines(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text("\n".join([_ai2("a"), _ai2("b"), _ai2("a")]) + "\n", encoding="utf-8")
    with pytest.raises(
        DataError, match="duplicate prompt_id 'arc-easy/dev/a' at line 1 and line 3"
    ):
        read_ai2_jsonl(path, "arc-easy", "dev", on_bad_row="skip")


def _logiqa_item(answer: str = "b", options: tuple[str, ...] | None = None) -> list[str]:
    opts = options or ("A.one", "B.two", "C.three", "D.four")
    return ["", answer, "Some context.", "Which is right?", *opts]


def test_logiqa_bad_item_names_its_first_line_and_skip_resyncs(tmp_path):
    lines = _logiqa_item() + _logiqa_item(answer="e") + _logiqa_item()[:-1] + _logiqa_item()
    path = tmp_path / "Eval.txt"
    path.write_text("\n".join(lines), encoding="utf-8")
    with pytest.raises(RowError) as err:
        read_logiqa(path, "logiqa", "dev")
    assert err.value.line == 9 and "a-d" in err.value.reason
    result = read_logiqa(path, "logiqa", "dev", on_bad_row="skip")
    # item 3 lacks an option line; item 4 is still read at its own place
    assert [ex.prompt_id for ex in result.examples] == ["logiqa/dev/1", "logiqa/dev/4"]
    assert result.skipped == 2
    assert "line 17" in result.skipped_reasons[1] and "5 lines" in result.skipped_reasons[1]


def test_logiqa_options_out_of_label_order_follow_their_labels(tmp_path):
    lines = _logiqa_item(answer="b", options=("A.one", "C.three", "B.two", "D.four"))
    path = tmp_path / "Test.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    (ex,) = read_logiqa(path, "logiqa", "test").examples
    assert ex.options == ("one", "two", "three", "four")
    assert ex.options[ex.gold] == "two"


def test_logiqa_label_glitches_are_repaired():
    assert logiqa_option("Country A.H will grow.", 0) == "Country H will grow."
    assert logiqa_option("A first", 0) == "first"
    assert logiqa_option("d.The rate is low.", 3) == "The rate is low."
    assert logiqa_option("C? Geng is not a doctor;", 2) == "Geng is not a doctor;"
    assert logiqa_option("A dog barks.", 1) == "A dog barks."


def test_aqua_wrong_label_and_bad_correct_are_row_errors(tmp_path):
    good = {"question": "q", "options": ["A)1", "B)2"], "correct": "B"}
    rows = [good, {**good, "options": ["A)1", "C)2"]}, {**good, "correct": "Z"}]
    path = tmp_path / "dev.json"
    path.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    with pytest.raises(RowError, match=r"line 2: option 2 'C\)2' should start with 'B\)'"):
        read_aqua(path, "aqua-rat", "dev")
    result = read_aqua(path, "aqua-rat", "dev", on_bad_row="skip")
    assert [ex.prompt_id for ex in result.examples] == ["aqua-rat/dev/1"]
    assert result.skipped == 2 and "'correct'" in result.skipped_reasons[1]
