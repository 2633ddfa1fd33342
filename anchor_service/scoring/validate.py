"""Check user-supplied items before any model call (CLI, HTTP): messages name the field."""

from __future__ import annotations

from typing import Any

from anchor_service.core.types import LETTERS, MAX_OPTIONS
from anchor_service.scoring.item import JudgeItem


class ItemError(ValueError):
    """An input item is malformed; the message names the field and the fix."""


def letter_for(answer: Any, n_options: int, field: str = "answer") -> str | None:
    """Normalise an answer given as a letter (any case) to upper case; None/'' stay None."""
    if answer is None or (isinstance(answer, str) and not answer.strip()):
        return None
    if not isinstance(answer, str):
        raise ItemError(f"'{field}' must be an option letter such as 'B', got {answer!r}")
    letter = answer.strip().strip("()").upper()
    valid = LETTERS[:n_options]
    if len(letter) != 1 or letter not in valid:
        raise ItemError(
            f"'{field}' must be one of the option letters {', '.join(valid)}, got {answer!r}"
        )
    return letter


def make_item(
    question: Any,
    options: Any,
    answer: Any,
    explanation: Any,
    meta: dict | None = None,
) -> JudgeItem:
    """A JudgeItem from raw values, or ItemError saying which field is wrong and how."""
    if not isinstance(question, str) or not question.strip():
        raise ItemError("'question' must be a non-empty string")
    if not isinstance(options, list) or not all(isinstance(o, str) for o in options):
        raise ItemError("'options' must be a list of option texts (strings)")
    if not 2 <= len(options) <= MAX_OPTIONS:
        raise ItemError(f"'options' must have 2 to {MAX_OPTIONS} entries, got {len(options)}")
    if any(not o.strip() for o in options):
        raise ItemError("'options' must not contain empty texts")
    if explanation is None:
        explanation = ""
    if not isinstance(explanation, str):
        raise ItemError("'explanation' must be a string (empty is allowed: it scores 0)")
    return JudgeItem(
        question=question,
        options=list(options),
        answer=letter_for(answer, len(options)),
        explanation=explanation,
        meta=meta,
    )
