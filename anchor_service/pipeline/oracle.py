"""The oracle's scores of what an LLM judge scored: the data behind `judge_agreement`.

On the demo task the oracle (scoring/oracle.py) knows the truth about an explanation, so
every LLM judge of a run can be compared with it on the very responses it scored: the
alignment judge on the samples and accepted debates (`oracle/scores.parquet`), the
evaluation judge on each model's test answers (`oracle/eval-scores-<model>.parquet`). The
files have the columns of scores.parquet; the report joins them on (prompt_id, source,
sample_idx). The oracle is code, a few milliseconds per response, so it runs here in the
driver (as the pairs stage does) and is simply recomputed on every run: no Ray actor, no
part files.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import pandas as pd

from anchor_service.config import JudgeConfig
from anchor_service.core.types import Example
from anchor_service.pipeline.judge import SCORE_COLUMNS, JudgeStage
from anchor_service.rundir import write_parquet_atomic

log = logging.getLogger(__name__)

ORACLE_JUDGE = JudgeConfig(mode="oracle")


def is_oracle(judge: JudgeConfig) -> bool:
    """True when this judge is the demo oracle (then there is nothing to compare)."""
    return judge.mode == "oracle" or judge.model.engine == "oracle"


def oracle_applies(examples: Iterable[Example]) -> bool:
    """True when the examples carry the demo task's facts, so the oracle can score them."""
    from anchor_service.data.demo import FAMILIES

    return any(isinstance(ex.meta, dict) and ex.meta.get("family") in FAMILIES for ex in examples)


def write_oracle_scores(rows: pd.DataFrame, path) -> pd.DataFrame:
    """Score judge-stage input rows with the oracle and write them (scores.parquet columns)."""
    if rows.empty:
        scores = pd.DataFrame(columns=SCORE_COLUMNS)
    else:
        scores = JudgeStage(ORACLE_JUDGE.model_dump())(rows)
    write_parquet_atomic(scores, path)
    log.info("oracle scores of %d responses -> %s", len(scores), path)
    return scores
