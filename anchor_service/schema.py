"""One schema per run-directory file, and the row <-> object converters (ARCHITECTURE.md).

Every writer and reader of samples, debates, scores, pairs and eval files takes its columns
and its conversions from here, so a null answer, a NaN score or a missing verdict is read
the same way everywhere. Stage inputs are declared here too: the columns a stage reads.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, fields
from typing import Any

import pandas as pd

from anchor_service.core.categorize import categorize
from anchor_service.core.types import CRITERIA, Example, Judgement, Pair, Response, sample_ref

# --- the run-directory files -------------------------------------------------------------
SAMPLE_COLUMNS = [
    "prompt_id",
    "sample_idx",
    "model",
    "text",
    "answer",
    "explanation",
    "correct",
    "parse_status",
]
"""samples.parquet and eval/answers-<model>.parquet."""
DEBATE_COLUMNS = ["prompt_id", "attempt", "text", "answer", "explanation", "accepted", "reason"]
"""debates.parquet: every attempt of the debater, accepted or not."""
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
"""scores.parquet, eval/scores-<model>.parquet, oracle/*.parquet, sanity/scores-<role>.parquet."""
SCORE_KEYS = ["prompt_id", "source", "sample_idx"]
"""The key of a scores row: one judged response."""
PAIR_COLUMNS = [f.name for f in fields(Pair)]
"""pairs-<strategy>.parquet."""
TRAIN_LOG_COLUMNS = [
    "step",
    "epoch",
    "loss",
    "learning_rate",
    "grad_norm",
    "rewards/chosen",
    "rewards/rejected",
    "rewards/margins",
    "rewards/accuracies",
]
"""models/<model>/train_log.parquet: one row per optimizer step, under the names TRL logs
(and reports to a tracker); SFT logs no rewards (null)."""

# --- the stages' inputs --------------------------------------------------------------------
SAMPLE_INPUT = ["prompt_id", "sample_idx", "question", "options", "gold"]
"""What the sample stage reads (one row per prompt and sample index)."""
DEBATE_INPUT = ["prompt_id", "question", "options", "gold"]
"""What the debate stage reads (one row per consistently-incorrect prompt)."""
JUDGE_INPUT = [
    "prompt_id",
    "source",
    "sample_idx",
    "question",
    "options",
    "answer",
    "explanation",
    "meta_json",
]
"""What the judge stage reads (one row per response to judge)."""


def text_or(value: Any, default: str | None) -> str | None:
    """A string cell as read back from parquet: None/NaN become `default`."""
    return value if isinstance(value, str) else default


def int_or_none(value: Any) -> int | None:
    return None if pd.isna(value) else int(value)


def float_or_none(value: Any) -> float | None:
    return None if pd.isna(value) else float(value)


# --- rows in -------------------------------------------------------------------------------
def sample_input(examples: Iterable[Example], n: int) -> pd.DataFrame:
    """Sample-stage input: one row per (prompt, sample_idx)."""
    return pd.DataFrame(
        [
            {
                "prompt_id": ex.prompt_id,
                "sample_idx": i,
                "question": ex.question,
                "options": list(ex.options),
                "gold": ex.gold,
            }
            for ex in examples
            for i in range(n)
        ]
    )


def debate_input(examples: Iterable[Example]) -> pd.DataFrame:
    """Debate-stage input: one row per prompt given to the debater."""
    return pd.DataFrame(
        [
            {
                "prompt_id": ex.prompt_id,
                "question": ex.question,
                "options": list(ex.options),
                "gold": ex.gold,
            }
            for ex in examples
        ],
        columns=DEBATE_INPUT,
    )


def judge_input(df: pd.DataFrame, by_id: Mapping[str, Example], source: str) -> pd.DataFrame:
    """Judge-stage input for the responses in `df` (samples, debates or eval answers)."""
    idx_col = "sample_idx" if "sample_idx" in df.columns else "attempt"
    rows = []
    for r in df.itertuples(index=False):
        ex = by_id[r.prompt_id]
        rows.append(
            {
                "prompt_id": r.prompt_id,
                "source": source,
                "sample_idx": int(getattr(r, idx_col)),
                "question": ex.question,
                "options": list(ex.options),
                "answer": text_or(r.answer, None),
                "explanation": text_or(r.explanation, ""),
                "meta_json": json.dumps(ex.meta) if ex.meta is not None else None,
            }
        )
    return pd.DataFrame(rows)


# --- rows out ------------------------------------------------------------------------------
def judgement_row(key: Mapping[str, Any], j: Judgement) -> dict[str, Any]:
    """A scores row: the response's key columns and its judgement."""
    verdicts = j.verdicts or {}
    return {
        "prompt_id": key["prompt_id"],
        "source": key["source"],
        "sample_idx": int(key["sample_idx"]),
        "judge": j.judge,
        "mode": j.mode,
        **{c: verdicts.get(c) for c in CRITERIA},
        "score": j.score,
        "score_expected": j.score_expected,
        "status": j.status,
    }


def scores_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Scores rows as written: SCORE_COLUMNS, the score a nullable integer."""
    out = pd.DataFrame(rows, columns=SCORE_COLUMNS)
    out["score"] = out["score"].astype("Int64")
    return out


def judgements_of(scores: pd.DataFrame) -> list[Judgement]:
    """Scores rows back into Judgement objects (in row order)."""
    out = []
    for r in scores.itertuples(index=False):
        verdicts = {c: getattr(r, c) for c in CRITERIA}
        out.append(
            Judgement(
                status=r.status,
                verdicts=verdicts if all(isinstance(v, str) for v in verdicts.values()) else None,
                score=int_or_none(r.score),
                score_expected=float_or_none(r.score_expected),
                mode=r.mode,
                judge=r.judge,
            )
        )
    return out


def pairs_frame(pairs: Iterable[Pair]) -> pd.DataFrame:
    """pairs-<strategy>.parquet rows (PAIR_COLUMNS, also when there is no pair)."""
    df = pd.DataFrame([asdict(p) for p in pairs])
    return pd.DataFrame(columns=PAIR_COLUMNS) if df.empty else df


# --- the method's reading of the files -----------------------------------------------------
def prompt_categories(samples: pd.DataFrame) -> dict[str, str]:
    """prompt_id -> category from the parsed answers (unparseable counts as incorrect)."""
    return {
        pid: categorize([bool(c) for c in g.sort_values("sample_idx")["correct"]])
        for pid, g in samples.groupby("prompt_id", sort=False)
    }


def responses_by_prompt(
    samples: pd.DataFrame, scores: pd.DataFrame, debates: pd.DataFrame
) -> dict[str, tuple[list[Response], Response | None]]:
    """Join samples and accepted debates with their judgements, per prompt."""
    sc = {(r.prompt_id, r.source, int(r.sample_idx)): r for r in scores.itertuples(index=False)}
    out: dict[str, tuple[list[Response], Response | None]] = {}

    def make(r, source: str, idx: int, ref: str, correct: bool) -> Response:
        j = sc[(r.prompt_id, source, idx)]
        return Response(
            ref=ref,
            sample_idx=idx,
            text=r.text,
            answer=text_or(r.answer, None),
            explanation=text_or(r.explanation, ""),
            correct=correct,
            status=j.status,
            score=int_or_none(j.score),
            score_expected=float_or_none(j.score_expected),
        )

    for pid, g in samples.groupby("prompt_id", sort=False):
        resp = [
            make(r, "sample", int(r.sample_idx), sample_ref(int(r.sample_idx)), bool(r.correct))
            for r in g.sort_values("sample_idx").itertuples(index=False)
        ]
        out[pid] = (resp, None)
    if len(debates):
        for r in debates[debates["accepted"]].itertuples(index=False):
            samples_of, _ = out[r.prompt_id]
            out[r.prompt_id] = (samples_of, make(r, "debate", int(r.attempt), "debate", True))
    return out


def train_log_frame(log_history: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """A trainer's `state.log_history` as train_log rows: its per-step entries (those with a
    `loss`; the end-of-training summary entry has none), TRAIN_LOG_COLUMNS, floats."""
    rows = [
        {c: entry.get(c) for c in TRAIN_LOG_COLUMNS} for entry in log_history if "loss" in entry
    ]
    out = pd.DataFrame(rows, columns=TRAIN_LOG_COLUMNS)
    return out.astype({c: "int64" if c == "step" else "float64" for c in TRAIN_LOG_COLUMNS})
