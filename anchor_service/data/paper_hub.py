"""The paper datasets' hub copies: read when their files are absent (`data.hub_fallback`).

Each copy is read through the `hf` source's download (data/hub.py) and its rows are turned
into the same objects the file readers see, so the examples, gold answers and prompt_ids
(`arc-challenge/test/Mercury_...`, `aqua-rat/dev/7`) are those of the files:

| dataset | hub copy (default `data.path`) | row fields |
|---|---|---|
| arc-challenge, arc-easy | `allenai/ai2_arc:ARC-Challenge`, `:ARC-Easy` | id, question, choices{text,label}, answerKey |
| openbookqa | `allenai/openbookqa:main` | id, question_stem, choices{text,label}, answerKey |
| logiqa | `lucasmccabe/logiqa` | context, query, options, correct_option (0-3) |
| aqua-rat | `deepmind/aqua_rat:raw` | question, options ["A)..."], rationale, correct |

Hub split names: `train`, `validation` (our `dev`), `test`. The hub copies of LogiQA and
AQuA-RAT have the `train` split the local files lack. prompt_ids without a source id (LogiQA,
AQuA-RAT) number the items in the copy's order, which matches the files' when the copy keeps
the release order. `data.path` names another copy (`id:config`) with the same fields.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from anchor_service.core.types import LETTERS, Example
from anchor_service.data.errors import DataNotFoundError, ExampleRows, LoadResult, OnBadRow
from anchor_service.data.paper import ai2_example, aqua_example, canonical_split

HUB_COPIES: dict[str, str] = {
    "arc-challenge": "allenai/ai2_arc:ARC-Challenge",
    "arc-easy": "allenai/ai2_arc:ARC-Easy",
    "openbookqa": "allenai/openbookqa:main",
    "logiqa": "lucasmccabe/logiqa",
    "aqua-rat": "deepmind/aqua_rat:raw",
}

# Our canonical split -> the hub copies' split name.
HUB_SPLITS = {"train": "train", "dev": "validation", "test": "test"}


def _ai2_row(record: dict, stem_field: str) -> dict:
    """A hub ARC/OpenBookQA row in the files' layout ({id, question{stem, choices}, answerKey})."""
    choices = record.get("choices")
    if not isinstance(choices, dict):
        raise ValueError("'choices' must be a {text: [...], label: [...]} object")
    texts, labels = choices.get("text"), choices.get("label")
    if not isinstance(texts, list) or not isinstance(labels, list) or len(texts) != len(labels):
        raise ValueError("'choices.text' and 'choices.label' must be lists of equal length")
    return {
        "id": record.get("id"),
        "question": {
            "stem": record.get(stem_field),
            "choices": [{"text": t, "label": lab} for t, lab in zip(texts, labels, strict=True)],
        },
        "answerKey": record.get("answerKey"),
    }


def arc_hub_example(record: dict, dataset: str, split: str, index: int) -> Example:
    return ai2_example(_ai2_row(record, "question"), dataset, split)


def openbookqa_hub_example(record: dict, dataset: str, split: str, index: int) -> Example:
    return ai2_example(_ai2_row(record, "question_stem"), dataset, split)


def aqua_hub_example(record: dict, dataset: str, split: str, index: int) -> Example:
    return aqua_example(record, dataset, split, index)


_LEADING_LABEL = re.compile(r"\s*[A-Da-d]\s*[.)]\s*")


def logiqa_hub_example(record: dict, dataset: str, split: str, index: int) -> Example:
    """A hub LogiQA row: question = context, blank line, query; a leading `A.` label is dropped."""
    context, query = record.get("context"), record.get("query", record.get("question"))
    options = record.get("options")
    if not isinstance(context, str) or not isinstance(query, str) or not query.strip():
        raise ValueError("'context' and 'query' must be non-empty strings")
    if (
        not isinstance(options, list)
        or len(options) != 4
        or not all(isinstance(o, str) for o in options)
    ):
        raise ValueError("'options' must be a list of four strings")
    texts = tuple(_LEADING_LABEL.sub("", o, count=1).strip() for o in options)
    if not all(texts):
        raise ValueError("an option is empty")
    answer = record.get("correct_option", record.get("label"))
    if isinstance(answer, str) and answer.strip().upper() in LETTERS[:4]:
        answer = LETTERS.index(answer.strip().upper())
    if not isinstance(answer, int) or isinstance(answer, bool) or not 0 <= answer < 4:
        raise ValueError(f"'correct_option' must be 0-3, got {answer!r}")
    question = f"{context.strip()}\n\n{query.strip()}"
    return Example(f"{dataset}/{split}/{index}", question, texts, answer)


RowReader = Callable[[dict, str, str, int], Example]

ROW_READERS: dict[str, RowReader] = {
    "arc-challenge": arc_hub_example,
    "arc-easy": arc_hub_example,
    "openbookqa": openbookqa_hub_example,
    "logiqa": logiqa_hub_example,
    "aqua-rat": aqua_hub_example,
}


def load_paper_hub(
    dataset: str, split: str, on_bad_row: OnBadRow = "error", copy: str | None = None
) -> LoadResult:
    """One split of a paper dataset from its hub copy (`copy`, default HUB_COPIES)."""
    from anchor_service.data.hub import open_split

    name = canonical_split(split)
    copy = copy or HUB_COPIES[dataset]
    table, where = open_split(copy, HUB_SPLITS[name])
    rows = ExampleRows(where, on_bad_row, unit="row")
    reader = ROW_READERS[dataset]
    for index, record in enumerate(table, 1):
        rows.take(index, reader, record, dataset, name, index)
    if not rows.examples and not rows.reasons:
        raise DataNotFoundError(f"{where} is empty")
    return rows.result(f"{dataset} {name}: {where} ({len(rows.examples)} examples)")
