"""The oracle's scores of what an LLM judge scored: the data behind `judge_agreement`.

On the demo task the oracle (demo/oracle.py) knows the truth about an explanation, so
every LLM judge of a run can be compared with it on the very responses it scored: the
alignment judge on the samples and accepted debates (`oracle/scores.parquet`), the
evaluation judge on each model's test answers (`oracle/eval-scores-<model>.parquet`). The
files have the columns of scores.parquet; the report joins them on (prompt_id, source,
sample_idx). The oracle is code, a few milliseconds per response, so it runs in the driver
(as the pairs step does) and is simply recomputed on every run: no Ray actor, no part files.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from anchor_service.demo.oracle import OracleJudge
from anchor_service.rundir import write_parquet_atomic
from anchor_service.schema import SCORE_COLUMNS, SCORE_KEYS, judgement_row, scores_frame
from anchor_service.scoring.item import items_of

log = logging.getLogger(__name__)


def write_oracle_scores(rows: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Score judge-stage input rows with the oracle and write them (scores.parquet columns)."""
    if rows.empty:
        scores = pd.DataFrame(columns=SCORE_COLUMNS)
    else:
        judgements = OracleJudge().score(items_of(rows))
        keys = rows[SCORE_KEYS].to_dict("records")
        scores = scores_frame([judgement_row(k, j) for k, j in zip(keys, judgements, strict=True)])
    write_parquet_atomic(scores, path)
    log.info("oracle scores of %d responses -> %s", len(scores), path)
    return scores
