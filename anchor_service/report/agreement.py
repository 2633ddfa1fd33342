"""summary.json `judge_agreement`: each LLM judge of a run against the demo oracle.

Read from the run files alone: a judge's scores (scores.parquet for the alignment judge,
eval/scores-<model>.parquet for the evaluation judge) joined with the oracle's scores of the
same responses (oracle/, written by demo/agreement.py). A judge that plays both roles is
measured once, on all the responses it scored. Each response is ranked by the pair
builder's ordering (`core.pairs.rank_value`; METHOD.md step 5), so agreement measures
what the judge is used for; an `unscored` response on either side is left out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from anchor_service.core.pairs import rank_value
from anchor_service.core.types import EMPTY, SCORED
from anchor_service.demo.oracle import is_oracle
from anchor_service.evaluation.agreement import judge_agreement
from anchor_service.rundir import RunDir
from anchor_service.schema import SCORE_KEYS


def ordering_key(score: Any, expected: Any, status: Any) -> tuple[int, int, float] | None:
    """The pair builder's ordering of one response (`core.pairs.rank_value`), or None when
    it is unscored."""
    if status not in (SCORED, EMPTY) or pd.isna(score):
        return None
    return rank_value(int(score), None if pd.isna(expected) else float(expected))


def _joined(judge_file: Path, oracle_file: Path, label: str) -> pd.DataFrame | None:
    if not (judge_file.is_file() and oracle_file.is_file()):
        return None
    cols = [*SCORE_KEYS, "score", "score_expected", "status"]
    judge = pd.read_parquet(judge_file, columns=cols)
    oracle = pd.read_parquet(oracle_file, columns=cols)
    df = judge.merge(oracle, on=SCORE_KEYS, suffixes=("", "_oracle"), how="inner")
    df["set"] = label
    return df.sort_values(SCORE_KEYS).reset_index(drop=True)


def agreement_summary(
    run: str | Path,
    cfg: dict,
    judge_names: dict[str, str | None],
    models: list[str],
    seed: int,
    n_resamples: int,
) -> dict[str, dict[str, Any]]:
    """{judge name: judge_agreement entry + `roles`} for every non-oracle judge the oracle
    re-scored; empty when the run has no oracle files (not the demo task, or no LLM judge)."""
    rundir = RunDir(run)
    alignment = cfg.get("judge")
    evaluation = cfg.get("eval_judge") or alignment
    sets: dict[str, list[tuple[str, pd.DataFrame]]] = {}
    if not is_oracle(alignment):
        df = _joined(rundir.scores, rundir.oracle_scores(), "train")
        if df is not None:
            sets.setdefault(judge_names["alignment"], []).append(("alignment", df))
    if not is_oracle(evaluation):
        for model in models:
            df = _joined(rundir.eval_scores(model), rundir.oracle_scores(model), f"eval:{model}")
            if df is not None:
                sets.setdefault(judge_names["evaluation"], []).append(("evaluation", df))
    out: dict[str, dict[str, Any]] = {}
    for name, parts in sets.items():
        df = pd.concat([d for _, d in parts], ignore_index=True)
        judge_keys = [
            ordering_key(s, e, st)
            for s, e, st in zip(df["score"], df["score_expected"], df["status"], strict=True)
        ]
        oracle_keys = [
            ordering_key(s, e, st)
            for s, e, st in zip(
                df["score_oracle"], df["score_expected_oracle"], df["status_oracle"], strict=True
            )
        ]
        entry = judge_agreement(
            oracle_keys, judge_keys, list(df["prompt_id"]), seed=seed, n_resamples=n_resamples
        )
        out[str(name)] = {"roles": list(dict.fromkeys(role for role, _ in parts)), **entry}
    return out
