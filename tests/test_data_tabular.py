"""Generic JSONL/CSV files through a ColumnMap: options, answers, ids, malformed rows."""

from __future__ import annotations

import csv
import json

import pytest

from anchor_service.config import ColumnMap
from anchor_service.data.errors import DataError, DataNotFoundError, RowError
from anchor_service.data.tabular import (
    answer_index,
    dataset_name,
    example_from_row,
    read_table,
    strip_option_labels,
)


def _jsonl(tmp_path, rows, name="items.jsonl"):
    path = tmp_path / name
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def _csv(tmp_path, header, rows, name="items.csv"):
    path = tmp_path / name
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.mark.parametrize(
    ("value", "expected"), [("b", 1), ("(B)", 1), ("C)", 2), (" d ", 3), ("D.", 3), (2, 2)]
)
def test_answer_letter_in_any_form_or_index_gives_gold(value, expected):
    assert answer_index(value, 4) == expected


def test_answer_base_one_shifts_integer_answers_and_range_is_checked():
    assert answer_index(1, 4, answer_base=1) == 0
    assert answer_index("4", 4, answer_base=1) == 3
    with pytest.raises(ValueError, match="outside the 4 options"):
        answer_index(4, 4, answer_base=0)
    with pytest.raises(ValueError, match="outside"):
        answer_index("E", 4)
    with pytest.raises(ValueError, match="must be a letter"):
        answer_index("maybe", 4)
    with pytest.raises(ValueError, match="must be a letter"):
        answer_index(True, 4)


def test_jsonl_list_options_with_nested_fields_and_context(tmp_path):
    rows = [
        {"q": {"text": "Which?"}, "ctx": "Story.", "opts": ["x", "y", "z"], "ans": "(c)"},
        {"q": {"text": "Other?"}, "ctx": "", "opts": ["u", "v"], "ans": "A"},
    ]
    cols = ColumnMap(question="q.text", context="ctx", options="opts", answer="ans")
    result = read_table(_jsonl(tmp_path, rows), cols, "mine", "train", "jsonl")
    first, second = result.examples
    assert first.prompt_id == "mine/train/1" and second.prompt_id == "mine/train/2"
    assert first.question == "Story.\n\nWhich?" and second.question == "Other?"
    assert first.options == ("x", "y", "z") and first.gold == 2
    assert second.gold == 0


def test_csv_option_columns_drop_trailing_blanks_and_use_answer_base(tmp_path):
    path = _csv(
        tmp_path,
        ["id", "question", "o1", "o2", "o3", "o4", "answer"],
        [["q1", "Pick", "a", "b", "c", "d", "4"], ["q2", "Pick", "a", "b", "c", "", "1"]],
    )
    cols = ColumnMap(id="id", options=["o1", "o2", "o3", "o4"], answer_base=1)
    first, second = read_table(path, cols, "mine", "test", "csv").examples
    assert first.prompt_id == "mine/test/q1" and first.gold == 3
    assert second.options == ("a", "b", "c") and second.gold == 0


def test_csv_list_column_holds_json(tmp_path):
    path = _csv(tmp_path, ["question", "options", "answer"], [["Q", '["p", "q"]', "B"]])
    (ex,) = read_table(path, ColumnMap(), "mine", "dev", "csv").examples
    assert ex.options == ("p", "q") and ex.gold == 1


def test_csv_malformed_row_names_file_and_line_counting_the_header(tmp_path):
    path = _csv(
        tmp_path,
        ["question", "options", "answer"],
        [["Q", '["p", "q"]', "A"], ["Q2", '["p", "q"]', "C"], ["Q3", "not a list", "A"]],
    )
    with pytest.raises(RowError) as err:
        read_table(path, ColumnMap(), "mine", "dev", "csv")
    assert err.value.line == 3 and str(path) in str(err.value) and "outside" in err.value.reason
    result = read_table(path, ColumnMap(), "mine", "dev", "csv", on_bad_row="skip")
    assert [ex.prompt_id for ex in result.examples] == ["mine/dev/1"]
    assert result.skipped == 2
    assert "line 4" in result.skipped_reasons[1] and "JSON list" in result.skipped_reasons[1]


def test_csv_missing_column_names_the_config_key(tmp_path):
    path = _csv(tmp_path, ["prompt", "options", "answer"], [["Q", '["p", "q"]', "A"]])
    with pytest.raises(DataError, match=r"no column 'question'.*data\.columns\.question"):
        read_table(path, ColumnMap(), "mine", "dev", "csv")


def test_jsonl_missing_field_is_a_row_error_naming_the_fields(tmp_path):
    path = _jsonl(tmp_path, [{"question": "Q", "choices": ["a", "b"], "answer": "A"}])
    with pytest.raises(RowError, match=r"line 1: no field 'options' .*choices.*data\.columns"):
        read_table(path, ColumnMap(), "mine", "dev", "jsonl")


def test_duplicate_source_ids_name_both_lines(tmp_path):
    rows = [{"id": 7, "question": "Q", "options": ["a", "b"], "answer": "A"}] * 2
    with pytest.raises(DataError, match="duplicate prompt_id 'mine/dev/7' at line 1 and line 2"):
        read_table(_jsonl(tmp_path, rows), ColumnMap(id="id"), "mine", "dev", "jsonl")


def test_labels_are_stripped_only_when_every_option_has_its_own():
    assert strip_option_labels(["A) 3", "(B) 4", "C. 5", "d: 6"]) == ["3", "4", "5", "6"]
    assert strip_option_labels(["A. Lincoln", "Washington"]) == ["A. Lincoln", "Washington"]


def test_json_array_file_gets_a_hint_and_missing_file_is_not_found(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text('[{"question": "Q"}]', encoding="utf-8")
    with pytest.raises(DataError, match="JSON Lines"):
        read_table(path, ColumnMap(), "a", "dev", "jsonl")
    with pytest.raises(DataNotFoundError, match="does not exist"):
        read_table(tmp_path / "nope.jsonl", ColumnMap(), "a", "dev", "jsonl")


def test_dataset_name_comes_from_the_path_without_the_split():
    assert dataset_name("data/quiz_{split}.jsonl", "jsonl") == "quiz"
    assert dataset_name("data/quiz/{split}.csv", "csv") == "quiz"
    assert dataset_name("{split}.jsonl", "jsonl") == "jsonl"


def test_answer_matched_against_a_labels_column_whatever_the_labels():
    columns = ColumnMap(question="q", options="choices.text", answer="key", labels="choices.label")
    row = {"q": "Q?", "choices": {"text": ["a", "b", "c"], "label": ["1", "2", "3"]}, "key": "2"}
    assert example_from_row(row, columns, "arc", "test", 1).gold == 1
    with pytest.raises(ValueError, match=r"answer 'D' is not one of the labels \['1', '2', '3'\]"):
        example_from_row(row | {"key": "D"}, columns, "arc", "test", 1)
    bad = row | {"choices": {"text": ["a", "b", "c"], "label": ["1", "2"]}}
    with pytest.raises(ValueError, match="labels must be a list of 3 labels"):
        example_from_row(bad, columns, "arc", "test", 1)
