"""Generic JSONL and CSV files read through a `ColumnMap` (also used for Hugging Face rows).

Rules, per row:
- question = the `question` field; with `context` set and non-empty: context, blank line,
  question. A field name may be a dotted path into nested JSON (`question.stem`).
- options = one list field (a JSON list; in CSV a cell holding a JSON list), or a list of
  fields, one per option, where trailing empty cells are dropped (so 3- and 5-option rows can
  share a file). When every option starts with its own position's label (`A)`, `(B)`, `C.`,
  `D:`), the labels are stripped.
- answer = a letter in any case, also `(B)`, `B)`, `B.`; or an integer index (a number or a
  string of digits), 0-based or 1-based by `answer_base`.
- prompt_id = `<dataset>/<split>/<id>`, the id from the `id` field, else the 1-based row
  number (rows are numbered by position, malformed ones included, so ids are stable).
- Errors name the file and the 1-based line (CSV: the header is line 1).
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

from anchor_service.config import ColumnMap
from anchor_service.core.types import LETTERS, Example
from anchor_service.data.errors import (
    DataError,
    DataNotFoundError,
    ExampleRows,
    LoadResult,
    OnBadRow,
)

_MISSING = object()
_LETTER_ANSWER = re.compile(r"\(?\s*([A-Za-z])\s*\)?\s*[.:]?")
_OPTION_LABEL = r"\s*(?:\(\s*{l}\s*\)|{l}\s*[).:])\s*"


def field_value(row: Mapping[str, Any], name: str) -> Any:
    """The value of `name` in a row (a dotted name reaches into nested objects), or a sentinel."""
    if name in row:
        return row[name]
    node: Any = row
    for part in name.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _required(row: Mapping[str, Any], name: str, key: str) -> Any:
    value = field_value(row, name)
    if value is _MISSING:
        fields = ", ".join(str(k) for k in row) or "none"
        raise ValueError(f"no field '{name}' (fields here: {fields}); set data.columns.{key}")
    return value


def _is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def strip_option_labels(options: list[str]) -> list[str]:
    """Options without their labels when every option carries its own position's label."""
    matches = [
        re.match(_OPTION_LABEL.format(l=LETTERS[i]), text, re.IGNORECASE)
        for i, text in enumerate(options[: len(LETTERS)])
    ]
    if len(options) > len(LETTERS) or not all(matches):
        return options
    return [text[m.end() :].strip() for text, m in zip(options, matches, strict=True) if m]


def _options(row: Mapping[str, Any], columns: ColumnMap) -> list[str]:
    if isinstance(columns.options, str):
        value = _required(row, columns.options, "options")
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                raise ValueError(
                    f"options field '{columns.options}' holds text, not a list; give a JSON list "
                    "or name one column per option in data.columns.options"
                ) from None
        if not isinstance(value, list | tuple):
            raise ValueError(f"options field '{columns.options}' must be a list, got {value!r}")
        values = list(value)
    else:
        values = [_required(row, name, "options") for name in columns.options]
        while values and _is_blank(values[-1]):
            values.pop()
    texts = []
    for i, value in enumerate(values):
        if _is_blank(value) or isinstance(value, dict | list):
            raise ValueError(f"option {i + 1} is empty or not text ({value!r})")
        texts.append(str(value).strip())
    return strip_option_labels(texts)


def answer_index(value: Any, n_options: int, answer_base: int = 0) -> int:
    """The 0-based gold index of an answer given as a letter or an integer index."""
    valid = f"a letter {LETTERS[0]}-{LETTERS[n_options - 1]} or an index"
    if isinstance(value, bool) or value is None:
        raise ValueError(f"answer {value!r} must be {valid}")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            value = int(text)
        else:
            m = _LETTER_ANSWER.fullmatch(text)
            if m is None:
                raise ValueError(f"answer {value!r} must be {valid}")
            index = LETTERS.find(m.group(1).upper())
            if not 0 <= index < n_options:
                raise ValueError(f"answer {value!r} is outside the {n_options} options")
            return index
    if not isinstance(value, int):
        raise ValueError(f"answer {value!r} must be {valid}")
    index = value - answer_base
    if not 0 <= index < n_options:
        raise ValueError(
            f"answer index {value} (answer_base {answer_base}) is outside the {n_options} options"
        )
    return index


def _labelled_answer(answer: Any, labels: Any, n_options: int) -> int:
    """The position of the label `answer` names among the options' labels."""
    if not isinstance(labels, (list, tuple)) or len(labels) != n_options:
        raise ValueError(f"labels must be a list of {n_options} labels, one per option")
    names = [str(label).strip() for label in labels]
    key = str(answer).strip()
    if key not in names:
        raise ValueError(f"answer {key!r} is not one of the labels {names}")
    return names.index(key)


def example_from_row(
    row: Mapping[str, Any], columns: ColumnMap, dataset: str, split: str, index: int
) -> Example:
    """One row as an Example; ValueError says which field is malformed and how to fix it."""
    if not isinstance(row, Mapping):
        raise ValueError(f"expected an object with fields, got {type(row).__name__}")
    question = _required(row, columns.question, "question")
    if _is_blank(question) or not isinstance(question, str):
        raise ValueError(f"question field '{columns.question}' is empty or not text")
    question = question.strip()
    if columns.context:
        context = _required(row, columns.context, "context")
        if not _is_blank(context):
            question = f"{str(context).strip()}\n\n{question}"
    options = _options(row, columns)
    if not 2 <= len(options) <= len(LETTERS):
        raise ValueError(f"{len(options)} options; 2 to {len(LETTERS)} are supported")
    answer = _required(row, columns.answer, "answer")
    if columns.labels:
        gold = _labelled_answer(answer, _required(row, columns.labels, "labels"), len(options))
    else:
        gold = answer_index(answer, len(options), columns.answer_base)
    if columns.id:
        source_id = _required(row, columns.id, "id")
        if _is_blank(source_id):
            raise ValueError(f"id field '{columns.id}' is empty")
        source_id = str(source_id).strip()
    else:
        source_id = str(index)
    return Example(f"{dataset}/{split}/{source_id}", question, tuple(options), gold)


def dataset_name(path: str, fallback: str) -> str:
    """A short dataset name for prompt_ids from a file or directory path (`{split}` removed)."""
    p = Path(path.rstrip("/\\"))
    for candidate in (p.stem if p.suffix else p.name, p.parent.name):
        name = re.sub(r"[^A-Za-z0-9_.-]+", "-", candidate.replace("{split}", "")).strip("-_.")
        if name:
            return name
    return fallback


def _jsonl_records(path: Path, rows: ExampleRows) -> Iterator[tuple[int, int, Any]]:
    index = 0
    with path.open(encoding="utf-8-sig") as f:
        for lineno, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            if index == 0 and raw.lstrip().startswith("["):
                raise DataError(
                    f"{path}: this is a JSON array; the jsonl source needs JSON Lines "
                    "(one object per line)"
                )
            index += 1
            try:
                yield lineno, index, json.loads(raw)
            except json.JSONDecodeError as exc:
                rows.bad(lineno, f"not valid JSON ({exc.msg} at column {exc.colno})")


def _csv_records(path: Path, columns: ColumnMap) -> Iterator[tuple[int, int, Any]]:
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        # A missing column is a config mistake, not a bad row: stop before reading rows.
        option_columns = [columns.options] if isinstance(columns.options, str) else columns.options
        wanted = [("question", columns.question), ("answer", columns.answer)]
        wanted += [("options", name) for name in option_columns]
        wanted += [(key, name) for key, name in (("id", columns.id), ("context", columns.context))]
        for key, name in wanted:
            if name is None:
                continue
            if name not in header:
                raise DataError(
                    f"{path}: no column '{name}' (columns: {', '.join(header) or 'none'}); "
                    f"set data.columns.{key}"
                )
        start = reader.line_num + 1
        for index, record in enumerate(reader, 1):
            yield start, index, record
            start = reader.line_num + 1


def read_table(
    path: Path,
    columns: ColumnMap,
    dataset: str,
    split: str,
    fmt: Literal["jsonl", "csv"],
    on_bad_row: OnBadRow = "error",
) -> LoadResult:
    """Examples from a JSONL or CSV file through a column mapping."""
    if not path.is_file():
        raise DataNotFoundError(f"{fmt} file {path} does not exist (data.path, split '{split}')")
    rows = ExampleRows(str(path), on_bad_row)
    records = _csv_records(path, columns) if fmt == "csv" else _jsonl_records(path, rows)
    for lineno, index, record in records:
        rows.take(lineno, example_from_row, record, columns, dataset, split, index)
    return rows.result(f"{fmt} {path} ({len(rows.examples)} examples)")
