"""Step 3 (and evaluation scores): the judge rates every response on the five criteria."""

from __future__ import annotations

from typing import Any

import pandas as pd

from anchor_service.config import JudgeConfig
from anchor_service.schema import (
    JUDGE_INPUT,
    SCORE_COLUMNS,
    SCORE_KEYS,
    judgement_row,
    scores_frame,
)
from anchor_service.scoring.item import items_of


class JudgeStage:
    """Ray Data callable: rows (prompt_id, source, sample_idx, question, options, answer,
    explanation, meta_json) -> scores rows."""

    COLUMNS = SCORE_COLUMNS
    INPUT_COLUMNS = JUDGE_INPUT

    def __init__(self, judge_cfg: dict[str, Any], torch_threads: int | None = None):
        from anchor_service.compute import start_threads, with_threads
        from anchor_service.scoring.scorer import make_judge

        start_threads(torch_threads, "judge actor")
        cfg = JudgeConfig(**judge_cfg)
        self.judge = make_judge(
            cfg.model_copy(update={"model": with_threads(cfg.model, torch_threads)})
        )

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        judgements = self.judge.score(items_of(batch))
        keys = batch[SCORE_KEYS].to_dict("records")
        return scores_frame([judgement_row(k, j) for k, j in zip(keys, judgements, strict=True)])
