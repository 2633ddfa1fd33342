"""Run directories written from known numbers, for tests of the report alone (no model).

`write_run` writes the files report/summary.py reads (ARCHITECTURE.md file contract):
config.yaml, eval/answers-<model>.parquet and eval/scores-<model>.parquet, stats-<strategy>.json,
and the alignment judge's scores.parquet with the oracle's scores of the same responses in
oracle/scores.parquet. Scores come from a seeded generator, so tests recompute what they
expect from the files themselves.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from anchor_service.core.types import CRITERIA, VALUE_VERDICTS

MODELS = ("base", "sft", "anchor", "rank")


def _verdicts(score: int) -> dict[str, str]:
    """Five verdict words whose values sum to `score` (0..15)."""
    values = [min(3, max(0, score - 3 * i)) for i in range(len(CRITERIA))]
    return {c: VALUE_VERDICTS[v] for c, v in zip(CRITERIA, values, strict=True)}


def _score_rows(keys: list[tuple[str, str, int]], scores: list[int | None], judge: str, mode: str):
    rows = []
    for (pid, source, idx), s in zip(keys, scores, strict=True):
        verdicts = _verdicts(s) if s is not None else dict.fromkeys(CRITERIA)
        rows.append(
            {
                "prompt_id": pid,
                "source": source,
                "sample_idx": idx,
                "judge": judge,
                "mode": mode,
                **verdicts,
                "score": s,
                "score_expected": None if s is None else float(s) + 0.25 * (idx % 3),
                "status": "scored" if s is not None else "unscored",
            }
        )
    df = pd.DataFrame(rows)
    df["score"] = df["score"].astype("Int64")
    return df


def write_run(
    path: Path,
    config_text: str,
    seed: int,
    n_test: int = 30,
    n_train: int = 12,
    quality: dict[str, float] | None = None,
    eval_oracle_files: bool = False,
) -> None:
    """A finished-looking run: `quality[model]` shifts that model's explanation scores."""
    quality = {"base": 8.0, "sft": 6.0, "anchor": 7.5, "rank": 6.5, **(quality or {})}
    rng = np.random.default_rng([seed, 12345])
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.yaml").write_text(config_text)
    (path / "eval").mkdir(exist_ok=True)
    (path / "oracle").mkdir(exist_ok=True)
    test_ids = [f"demo/test/{i + 1}" for i in range(n_test)]
    for m in MODELS:
        correct = rng.random(n_test) < {"base": 0.5, "sft": 0.7}.get(m, 0.68)
        answers = pd.DataFrame(
            {
                "prompt_id": test_ids,
                "sample_idx": 0,
                "model": m,
                "text": "Answer: A",
                "answer": "A",
                "explanation": "because",
                "correct": correct,
                "parse_status": "ok",
            }
        )
        answers.to_parquet(path / "eval" / f"answers-{m}.parquet", index=False)
        scores = np.clip(np.rint(quality[m] + rng.normal(0, 3, n_test)), 0, 15).astype(int)
        keys = [(pid, "sample", 0) for pid in test_ids]
        judge_df = _score_rows(keys, [int(s) for s in scores], "oracle", "oracle")
        judge_df.to_parquet(path / "eval" / f"scores-{m}.parquet", index=False)
        if eval_oracle_files:
            oracle = np.clip(scores + rng.integers(-2, 3, n_test), 0, 15)
            _score_rows(keys, [int(s) for s in oracle], "oracle", "oracle").to_parquet(
                path / "oracle" / f"eval-scores-{m}.parquet", index=False
            )
    for strategy, lam in (("anchor", 0.6), ("rank", 0.1)):
        stats = {
            "strategy": strategy,
            "prompts": {"consistently_correct": 5, "variable": 4, "consistently_incorrect": 3},
            "pairs": {"consistently_correct": 4, "variable": 4, "consistently_incorrect": 2},
            "drops": {"tie": 1, "identical": 0, "unscored": 1, "debater_failed": 0},
            "lambda": lam + 0.01 * seed,
            "dpo_skipped": False,
        }
        (path / f"stats-{strategy}.json").write_text(json.dumps(stats))
    # The alignment judge's scores of 4 samples per training prompt (a few unscored), and
    # the oracle's scores of the same responses.
    keys = [(f"demo/train/{i + 1}", "sample", k) for i in range(n_train) for k in range(4)]
    oracle = rng.integers(0, 16, len(keys))
    judge = [
        None if rng.random() < 0.1 else int(np.clip(o + rng.integers(-4, 5), 0, 15)) for o in oracle
    ]
    _score_rows(keys, judge, "smollm2", "probability").to_parquet(
        path / "scores.parquet", index=False
    )
    _score_rows(keys, [int(o) for o in oracle], "oracle", "oracle").to_parquet(
        path / "oracle" / "scores.parquet", index=False
    )
