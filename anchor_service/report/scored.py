"""A model's evaluation answers joined with their scores: what summary.json is computed from."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from anchor_service.core.types import CRITERIA
from anchor_service.rundir import RunDir


def load_eval(run: Path, model: str) -> pd.DataFrame:
    """One row per test question: correct, score (None = unscored), verdict values."""
    rundir = RunDir(run, create=False)
    return load_scored(rundir.eval_answers(model), rundir.eval_scores(model))


def load_scored(answers_path: Path, scores_path: Path) -> pd.DataFrame:
    """A model's answers (samples columns) joined with their scores, one row per question."""
    answers = pd.read_parquet(answers_path)
    scores = pd.read_parquet(scores_path)
    df = answers[["prompt_id", "correct", "parse_status"]].merge(
        scores[["prompt_id", "status", "score", *CRITERIA]], on="prompt_id", how="left"
    )
    return df.sort_values("prompt_id").reset_index(drop=True)


def score_list(df: pd.DataFrame) -> list[int | None]:
    """The integer score of each row (None: unscored), for the Delta W-L statistics."""
    return [
        int(s) if st in ("scored", "empty") and not pd.isna(s) else None
        for s, st in zip(df["score"], df["status"], strict=True)
    ]
