"""Step 3 (and evaluation scores): the judge rates every response on the five criteria."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from anchor_service.config import JudgeConfig
from anchor_service.core.types import CRITERIA
from anchor_service.scoring.item import JudgeItem

SCORE_COLUMNS = [
    "prompt_id",
    "source",
    "sample_idx",
    "judge",
    "mode",
    *CRITERIA,
    "score",
    "score_expected",
    "status",
]


class JudgeStage:
    """Ray Data callable: rows (prompt_id, source, sample_idx, question, options, answer,
    explanation, meta_json) -> scores rows."""

    COLUMNS = SCORE_COLUMNS

    def __init__(self, judge_cfg: dict[str, Any], torch_threads: int | None = None):
        if torch_threads:
            import torch

            torch.set_num_threads(torch_threads)
        from anchor_service.scoring.judges import make_judge

        self.judge = make_judge(JudgeConfig(**judge_cfg))

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        items = [
            JudgeItem(
                question=r.question,
                options=list(r.options),
                answer=r.answer if isinstance(r.answer, str) and r.answer else None,
                explanation=r.explanation if isinstance(r.explanation, str) else "",
                meta=json.loads(r.meta_json) if isinstance(r.meta_json, str) else None,
            )
            for r in batch.itertuples(index=False)
        ]
        judgements = self.judge.score(items)
        rows = []
        for r, j in zip(batch.itertuples(index=False), judgements, strict=True):
            verdicts = j.verdicts or {}
            rows.append(
                {
                    "prompt_id": r.prompt_id,
                    "source": r.source,
                    "sample_idx": int(r.sample_idx),
                    "judge": j.judge,
                    "mode": j.mode,
                    **{c: verdicts.get(c) for c in CRITERIA},
                    "score": j.score,
                    "score_expected": j.score_expected,
                    "status": j.status,
                }
            )
        out = pd.DataFrame(rows, columns=self.COLUMNS)
        out["score"] = out["score"].astype("Int64")
        return out
