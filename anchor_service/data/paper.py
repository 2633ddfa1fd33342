"""Readers for the paper's datasets in their original file formats (see data/SOURCES.md).

- ARC (Challenge, Easy) and OpenBookQA: JSON Lines `{id, question: {stem, choices: [{text,
  label}]}, answerKey}`. Labels may be `A`-`E` or `1`-`4`, with 3 to 5 choices; gold is the
  position of the choice whose label equals `answerKey`. prompt_id uses the source `id`.
- LogiQA (v1, English): 8 lines per item (blank, answer letter a-d, context, question, four
  options `A.` to `D.`). The question is context, blank line, question. Options listed out
  of label order (A, C, B, D) are put back in label order, which the answer letter follows.
  prompt_id uses the 1-based item number; errors name the item's first (blank) line.
- AQuA-RAT: JSON Lines `{question, options: ["A)...", ...], rationale, correct}`.
  prompt_id uses the 1-based item number.

Split names: `train`; `dev` (also `eval`, `validation`, `valid`, `val`; LogiQA's file is
`Eval.txt`); `test`. prompt_ids use the canonical name (`logiqa/dev/7`). This copy of LogiQA
and AQuA-RAT has no train split, so they train on `dev` (METHOD.md "Data").
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from pathlib import Path

from anchor_service.core.types import LETTERS, Example
from anchor_service.data.errors import (
    DataError,
    DataNotFoundError,
    ExampleRows,
    LoadResult,
    OnBadRow,
)

log = logging.getLogger(__name__)

SPLIT_ALIASES: dict[str, str] = {
    "train": "train",
    "training": "train",
    "dev": "dev",
    "eval": "dev",
    "evaluation": "dev",
    "validation": "dev",
    "valid": "dev",
    "val": "dev",
    "test": "test",
    "testing": "test",
}


def canonical_split(split: str) -> str:
    """`train`, `dev` or `test` for any of their usual names (`eval`, `validation`, ...)."""
    name = SPLIT_ALIASES.get(split.strip().lower())
    if name is None:
        raise DataError(f"unknown split '{split}'; use train, dev (or eval/validation) or test")
    return name


def split_label(split: str) -> str:
    """The split name used in prompt_ids: the canonical name when it is a known alias."""
    return SPLIT_ALIASES.get(split.strip().lower(), split.strip())


def _jsonl_rows(path: Path, rows: ExampleRows):
    """(1-based line, parsed object) for every non-blank line; bad JSON goes to `rows.bad`."""
    with path.open(encoding="utf-8") as f:
        for lineno, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                yield lineno, json.loads(raw)
            except json.JSONDecodeError as exc:
                rows.bad(lineno, f"not valid JSON ({exc.msg} at column {exc.colno})")


def _text(value: object, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{what} is missing or empty")
    return value.strip()


def ai2_example(row: object, dataset: str, split: str) -> Example:
    """One ARC/OpenBookQA JSON object as an Example; ValueError says what is malformed."""
    if not isinstance(row, dict):
        raise ValueError("expected a JSON object")
    source_id = _text(row.get("id"), "'id'")
    question = row.get("question")
    if not isinstance(question, dict):
        raise ValueError("'question' must be an object with 'stem' and 'choices'")
    stem = _text(question.get("stem"), "'question.stem'")
    choices = question.get("choices")
    if not isinstance(choices, list) or not all(isinstance(c, dict) for c in choices):
        raise ValueError("'question.choices' must be a list of {text, label} objects")
    labels = [str(c.get("label", "")).strip() for c in choices]
    if len(set(labels)) != len(labels) or "" in labels:
        raise ValueError(f"choice labels must be present and distinct, got {labels}")
    options = tuple(
        _text(c.get("text"), f"text of choice {lab}")
        for c, lab in zip(choices, labels, strict=True)
    )
    key = str(row.get("answerKey", "")).strip()
    if key not in labels:
        raise ValueError(f"answerKey {key!r} is not one of the choice labels {labels}")
    return Example(f"{dataset}/{split}/{source_id}", stem, options, labels.index(key))


def read_ai2_jsonl(
    path: Path, dataset: str, split: str, on_bad_row: OnBadRow = "error"
) -> LoadResult:
    """Read an ARC or OpenBookQA `.jsonl` file."""
    rows = ExampleRows(str(path), on_bad_row)
    for lineno, row in _jsonl_rows(path, rows):
        rows.take(lineno, ai2_example, row, dataset, split)
    return rows.result(f"{dataset} {split}: {path} ({len(rows.examples)} examples)")


_AQUA_LABEL = re.compile(r"\s*([A-Za-z])\s*\)\s*")


def aqua_example(row: object, dataset: str, split: str, index: int) -> Example:
    """One AQuA-RAT JSON object as an Example (`A)` labels stripped); ValueError if malformed."""
    if not isinstance(row, dict):
        raise ValueError("expected a JSON object")
    question = _text(row.get("question"), "'question'")
    raw_options = row.get("options")
    if not isinstance(raw_options, list) or not raw_options:
        raise ValueError("'options' must be a non-empty list of 'A)...' strings")
    if len(raw_options) > len(LETTERS):
        raise ValueError(f"{len(raw_options)} options; at most {len(LETTERS)} are supported")
    options = []
    for i, raw in enumerate(raw_options):
        expected = LETTERS[i]
        m = _AQUA_LABEL.match(raw) if isinstance(raw, str) else None
        if m is None or m.group(1).upper() != expected:
            raise ValueError(f"option {i + 1} {raw!r} should start with '{expected})'")
        options.append(_text(raw[m.end() :], f"option {expected}"))
    correct = str(row.get("correct", "")).strip().upper()
    if len(correct) != 1 or correct not in LETTERS[: len(options)]:
        valid = ", ".join(LETTERS[: len(options)])
        raise ValueError(f"'correct' must be one of {valid}, got {row.get('correct')!r}")
    return Example(f"{dataset}/{split}/{index}", question, tuple(options), LETTERS.index(correct))


def read_aqua(path: Path, dataset: str, split: str, on_bad_row: OnBadRow = "error") -> LoadResult:
    """Read an AQuA-RAT `.json` (JSON Lines) file."""
    rows = ExampleRows(str(path), on_bad_row)
    index = 0
    with path.open(encoding="utf-8") as f:
        for lineno, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            index += 1  # items are numbered by position, bad ones included, so ids stay stable
            try:
                row = json.loads(raw)
            except json.JSONDecodeError as exc:
                rows.bad(lineno, f"not valid JSON ({exc.msg} at column {exc.colno})")
                continue
            rows.take(lineno, aqua_example, row, dataset, split, index)
    return rows.result(f"{dataset} {split}: {path} ({len(rows.examples)} examples)")


_LOGIQA_ANSWER = re.compile(r"\s*[A-Za-z]\s*")
_LOGIQA_LEAD = re.compile(r"\s*([A-Da-d])\s*[.?\uff0e)]")


def logiqa_option(text: str, position: int) -> str:
    """A LogiQA option without its label.

    The English release has translation glitches: labels written `A ` or `A?` instead of
    `A.`, or moved into the sentence ("Country A.H will ..."). The label expected at this
    position is stripped from the start; failing that, a single `X.` inside the text is removed.
    """
    letter = LETTERS[position]
    # `d.` occurs in lower case; a bare `A ` only in upper case (else "a dog" would lose "a").
    lead = re.match(rf"\s*{letter}\s*[.?\uff0e)]\s*", text, re.IGNORECASE) or re.match(
        rf"\s*{letter}\s+(?=\S)", text
    )
    if lead:
        return text[lead.end() :].strip()
    inner = list(re.finditer(rf"(?<![A-Za-z]){letter}\.(?=\S)", text))
    if len(inner) == 1:
        m = inner[0]
        log.debug("LogiQA option %s: moved label removed from %r", letter, text)
        return (text[: m.start()] + text[m.end() :]).strip()
    return text.strip()


def read_logiqa(path: Path, dataset: str, split: str, on_bad_row: OnBadRow = "error") -> LoadResult:
    """Read a LogiQA v1 `.txt` file (8 lines per item; see the module docstring)."""
    rows = ExampleRows(str(path), on_bad_row)
    lines = path.read_text(encoding="utf-8").splitlines()
    # An item starts at a blank line followed by a one-letter answer line; finding starts this
    # way (not by counting 8 lines) keeps one damaged item from shifting all that follow.
    starts = [
        p
        for p in range(len(lines))
        if _LOGIQA_ANSWER.fullmatch(lines[p]) and (p == 0 or not lines[p - 1].strip())
    ]
    if not starts:
        if any(line.strip() for line in lines):
            rows.bad(1, "no LogiQA item found (expected a blank line, then an answer letter a-d)")
        return rows.result(f"{dataset} {split}: {path} (0 examples)")
    first_line = max(starts[0] - 1, 0)
    if any(line.strip() for line in lines[:first_line]):
        rows.bad(1, "text before the first item (expected a blank line, then an answer letter)")
    for index, p in enumerate(starts, 1):
        item_line = max(p - 1, 0) + 1  # 1-based line of the item's blank first line
        end = starts[index] - 1 if index < len(starts) else len(lines)
        body = lines[p + 1 : end]
        while body and not body[-1].strip():
            body.pop()
        rows.take(item_line, _logiqa_example, lines[p], body, dataset, split, index)
    return rows.result(f"{dataset} {split}: {path} ({len(rows.examples)} examples)")


def _logiqa_example(answer: str, body: list[str], dataset: str, split: str, index: int) -> Example:
    letter = answer.strip().lower()
    if letter not in "abcd":
        raise ValueError(f"answer line {answer.strip()!r} must be a letter a-d")
    if len(body) != 6:
        raise ValueError(
            f"item has {len(body)} lines after the answer; expected 6 "
            "(context, question, four options)"
        )
    context = _text(body[0], "context")
    question = _text(body[1], "question")
    texts = body[2:]
    # Some items list their options as A, C, B, D; the answer letter follows the labels.
    leads = [_LOGIQA_LEAD.match(t) for t in texts]
    if all(leads):
        order = [m.group(1).upper() for m in leads if m]
        if sorted(order) == list("ABCD") and order != list("ABCD"):
            texts = [texts[order.index(letter)] for letter in "ABCD"]
    options = tuple(_text(logiqa_option(t, i), f"option {LETTERS[i]}") for i, t in enumerate(texts))
    return Example(
        f"{dataset}/{split}/{index}", f"{context}\n\n{question}", options, "abcd".index(letter)
    )


Reader = Callable[[Path, str, str, OnBadRow], LoadResult]

# dataset name -> (reader, {canonical split: file relative to the data directory})
PAPER_DATASETS: dict[str, tuple[Reader, dict[str, str]]] = {
    "arc-challenge": (
        read_ai2_jsonl,
        {
            s: f"arc/ARC-Challenge/ARC-Challenge-{f}.jsonl"
            for s, f in (("train", "Train"), ("dev", "Dev"), ("test", "Test"))
        },
    ),
    "arc-easy": (
        read_ai2_jsonl,
        {
            s: f"arc/ARC-Easy/ARC-Easy-{f}.jsonl"
            for s, f in (("train", "Train"), ("dev", "Dev"), ("test", "Test"))
        },
    ),
    "openbookqa": (
        read_ai2_jsonl,
        {s: f"openbookqa/Main/{s}.jsonl" for s in ("train", "dev", "test")},
    ),
    "logiqa": (
        read_logiqa,
        {"train": "logiqa/Train.txt", "dev": "logiqa/Eval.txt", "test": "logiqa/Test.txt"},
    ),
    "aqua-rat": (
        read_aqua,
        {s: f"aqua_rat/{s}.json" for s in ("train", "dev", "test")},
    ),
}


def paper_file(dataset: str, data_dir: Path, split: str) -> Path:
    """The file of a paper dataset's split under `data_dir`, or DataNotFoundError saying why."""
    if dataset not in PAPER_DATASETS:
        raise DataError(f"unknown paper dataset '{dataset}'; known: {', '.join(PAPER_DATASETS)}")
    name = canonical_split(split)
    path = data_dir / PAPER_DATASETS[dataset][1][name]
    if not path.is_file():
        hint = ""
        if name == "train" and dataset in ("logiqa", "aqua-rat"):
            hint = (
                f"; this copy of {dataset} has dev and test only: train on dev "
                "(set data.train_split: dev, METHOD.md 'Data')"
            )
        raise DataNotFoundError(f"{dataset} {name} split: {path} does not exist{hint}")
    return path


def load_paper(
    dataset: str, data_dir: Path, split: str, on_bad_row: OnBadRow = "error"
) -> LoadResult:
    """Examples of one split of a paper dataset (`arc-challenge`, ..., `aqua-rat`)."""
    path = paper_file(dataset, data_dir, split)
    reader = PAPER_DATASETS[dataset][0]
    return reader(path, dataset, canonical_split(split), on_bad_row)
