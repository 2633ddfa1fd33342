"""What a judge scores: one response to one multiple-choice question."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class JudgeItem:
    """A question, its options, the response's answer letter (None if unparseable) and its
    explanation; `meta` carries the demo task's facts for the oracle (None elsewhere)."""

    question: str
    options: list[str]
    answer: str | None
    explanation: str
    meta: dict[str, Any] | None = None
