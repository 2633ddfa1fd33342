"""docs/DATASETS.md says what the loaders do: its file table is the paper readers' layout, and
each hub `data:` block reads rows shaped like that dataset's hub features (no network: the
rows are written locally with save_to_disk and `data.path` points there)."""

from __future__ import annotations

import re
from pathlib import Path

import datasets
import pytest
import yaml

from anchor_service.config import validate
from anchor_service.data.load import load_examples
from anchor_service.data.paper import PAPER_DATASETS

DOC = Path(__file__).resolve().parents[1] / "docs" / "DATASETS.md"


def doc_text() -> str:
    return DOC.read_text(encoding="utf-8")


def test_file_table_is_the_readers_layout():
    rows = {}
    for line in doc_text().splitlines():
        m = re.match(r"\| `([a-z-]+)` \| `([^`]+)` \| `([^`]+)` \| `([^`]+)` \|$", line)
        if m:
            rows[m.group(1)] = dict(zip(("train", "dev", "test"), m.groups()[1:], strict=True))
    assert rows == {name: files for name, (_, files) in PAPER_DATASETS.items()}


def hub_blocks() -> dict[str, dict]:
    blocks = re.findall(r"```yaml\n# hub: ([a-z-]+)\n(.*?)```", doc_text(), re.S)
    return {name: yaml.safe_load(body) for name, body in blocks}


def test_every_hub_block_is_a_valid_config():
    blocks = hub_blocks()
    assert set(blocks) == {"arc-challenge", "openbookqa", "aqua-rat"}
    for name, block in blocks.items():
        cfg = validate(block, source=f"DATASETS.md {name}")
        assert cfg.data.source == "hf" and ":" in cfg.data.path


def choices(texts: list[str], labels: str | list[str]) -> dict:
    return {"text": texts, "label": list(labels)}


# Rows with the features of each hub dataset, including the awkward cases: ARC's numeric
# labels and 3-choice questions; AQuA's `A)` prefixes.
HUB_ROWS = {
    "arc-challenge": [
        {
            "id": "Q1",
            "question": "q1?",
            "choices": choices(["a", "b", "c", "d"], "ABCD"),
            "answerKey": "C",
        },
        {
            "id": "Q2",
            "question": "q2?",
            "choices": choices(["a", "b", "c", "d"], "1234"),
            "answerKey": "3",
        },
        {
            "id": "Q3",
            "question": "q3?",
            "choices": choices(["a", "b", "c"], "ABC"),
            "answerKey": "A",
        },
    ],
    "openbookqa": [
        {
            "id": "7-1",
            "question_stem": "s1",
            "choices": choices(["w", "x", "y", "z"], "ABCD"),
            "answerKey": "D",
        },
        {
            "id": "7-2",
            "question_stem": "s2",
            "choices": choices(["w", "x", "y", "z"], "ABCD"),
            "answerKey": "B",
        },
    ],
    "aqua-rat": [
        {
            "question": "p1",
            "options": ["A)1", "B)2", "C)3", "D)4", "E)5"],
            "rationale": "r",
            "correct": "E",
        },
        {
            "question": "p2",
            "options": ["A)10", "B)20", "C)30", "D)40", "E)50"],
            "rationale": "r",
            "correct": "B",
        },
    ],
}
EXPECTED = {
    "arc-challenge": ([2, 2, 0], ("a", "b", "c", "d"), ["Q1", "Q2", "Q3"]),
    "openbookqa": ([3, 1], ("w", "x", "y", "z"), ["7-1", "7-2"]),
    "aqua-rat": ([4, 1], ("1", "2", "3", "4", "5"), ["1", "2"]),
}


@pytest.mark.parametrize("name", sorted(HUB_ROWS))
def test_hub_block_reads_rows_shaped_like_the_hub(tmp_path: Path, name: str):
    rows = HUB_ROWS[name]
    table = datasets.Dataset.from_list(rows)
    local = tmp_path / name
    datasets.DatasetDict({"train": table, "validation": table, "test": table}).save_to_disk(
        str(local)
    )
    block = hub_blocks()[name]
    block["data"]["path"] = str(local)
    cfg = validate(block)
    golds, first_options, ids = EXPECTED[name]
    test = load_examples(cfg.data, cfg.data.test_split, run_seed=0).examples
    assert [ex.gold for ex in test] == golds
    assert test[0].options == first_options
    assert [ex.prompt_id.rsplit("/", 1)[1] for ex in test] == ids
    assert len(load_examples(cfg.data, cfg.data.train_split, run_seed=0).examples) == len(rows)
