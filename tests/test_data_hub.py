"""Hugging Face datasets from local directories (save_to_disk), no network."""

from __future__ import annotations

import datasets
import pytest

from anchor_service.config import ColumnMap
from anchor_service.data.errors import DataNotFoundError, RowError
from anchor_service.data.hub import load_hub, split_candidates

ARC_LIKE = ColumnMap(id="id", question="question", options="choices.text", answer="answerKey")


def _arc_rows(prefix: str, n: int) -> dict:
    return {
        "id": [f"{prefix}{i}" for i in range(n)],
        "question": [f"Question {i}?" for i in range(n)],
        "choices": [{"text": ["w", "x", "y", "z"], "label": list("ABCD")} for _ in range(n)],
        "answerKey": ["ABCD"[i % 4] for i in range(n)],
    }


def test_dataset_dict_split_dev_finds_validation(tmp_path):
    path = tmp_path / "my_arc"
    datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict(_arc_rows("t", 5)),
            "validation": datasets.Dataset.from_dict(_arc_rows("v", 3)),
        }
    ).save_to_disk(str(path))
    result = load_hub(str(path), ARC_LIKE, "dev")
    assert [ex.prompt_id for ex in result.examples] == [
        "my_arc/dev/v0",
        "my_arc/dev/v1",
        "my_arc/dev/v2",
    ]
    assert [ex.gold for ex in result.examples] == [0, 1, 2]
    assert result.examples[0].options == ("w", "x", "y", "z")
    assert len(load_hub(str(path), ARC_LIKE, "train").examples) == 5


def test_single_dataset_per_split_directory_and_row_numbers_as_ids(tmp_path):
    for split, n in (("train", 4), ("test", 2)):
        rows = {"q": [f"q{i}" for i in range(n)], "opts": [["a", "b"]] * n, "gold": [1] * n}
        datasets.Dataset.from_dict(rows).save_to_disk(str(tmp_path / f"quiz_{split}"))
    cols = ColumnMap(question="q", options="opts", answer="gold")
    result = load_hub(str(tmp_path / "quiz_{split}"), cols, "test")
    assert [ex.prompt_id for ex in result.examples] == ["quiz/test/1", "quiz/test/2"]
    assert all(ex.gold == 1 for ex in result.examples)


def test_malformed_row_names_dataset_split_and_row_and_skip_counts(tmp_path):
    rows = {
        "question": ["ok", "", "ok too"],
        "options": [["a", "b"]] * 3,
        "answer": ["A", "B", "Z"],
    }
    path = tmp_path / "bad"
    datasets.DatasetDict({"test": datasets.Dataset.from_dict(rows)}).save_to_disk(str(path))
    with pytest.raises(RowError) as err:
        load_hub(str(path), ColumnMap(), "test")
    assert err.value.line == 2 and "split 'test'" in str(err.value) and "row 2" in str(err.value)
    result = load_hub(str(path), ColumnMap(), "test", on_bad_row="skip")
    assert [ex.prompt_id for ex in result.examples] == ["bad/test/1"]
    assert result.skipped == 2


def test_missing_split_lists_the_available_ones(tmp_path):
    path = tmp_path / "only_train"
    datasets.DatasetDict({"train": datasets.Dataset.from_dict(_arc_rows("t", 2))}).save_to_disk(
        str(path)
    )
    with pytest.raises(DataNotFoundError, match=r"no split 'test' \(available: train\)"):
        load_hub(str(path), ARC_LIKE, "test")


def test_split_candidates_try_the_usual_aliases():
    assert split_candidates("dev")[:2] == ["dev", "eval"]
    assert "validation" in split_candidates("dev")
    assert split_candidates("holdout") == ["holdout"]
