"""What a judge scores: one response to one multiple-choice question."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class JudgeItem:
    """A question, its options, the response's answer letter (None if unparseable) and its
    explanation; `meta` carries the demo task's facts for the oracle (None elsewhere)."""

    question: str
    options: list[str]
    answer: str | None
    explanation: str
    meta: dict[str, Any] | None = None


def items_of(rows: pd.DataFrame) -> list[JudgeItem]:
    """Judge items from judge-stage input rows (schema.JUDGE_INPUT), in row order.

    An empty or missing answer is no answer; a missing explanation is the empty one.
    """
    return [
        JudgeItem(
            question=r.question,
            options=list(r.options),
            answer=r.answer if isinstance(r.answer, str) and r.answer else None,
            explanation=r.explanation if isinstance(r.explanation, str) else "",
            meta=json.loads(r.meta_json) if isinstance(r.meta_json, str) else None,
        )
        for r in rows.itertuples(index=False)
    ]
