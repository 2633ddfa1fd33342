"""The oracle re-scoring what an LLM judge scored (demo/agreement.py), on demo questions."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pandas as pd

from anchor_service.config import JudgeConfig, ModelSpec
from anchor_service.core.types import CRITERIA
from anchor_service.demo.agreement import write_oracle_scores
from anchor_service.demo.oracle import is_oracle, oracle_applies
from anchor_service.demo.task import demo_response, generate_demo
from anchor_service.schema import SCORE_COLUMNS, judge_input


def _answers(examples, defects=()) -> pd.DataFrame:
    rows = []
    for ex in examples:
        answer, explanation = demo_response(ex, defects)
        rows.append(
            {
                "prompt_id": ex.prompt_id,
                "sample_idx": 0,
                "answer": answer,
                "explanation": explanation,
            }
        )
    return pd.DataFrame(rows)


def test_oracle_applies_only_to_examples_with_demo_facts():
    demo = generate_demo(3, 1, "test")
    assert oracle_applies(demo)
    assert not oracle_applies([replace(ex, meta=None) for ex in demo])
    assert not oracle_applies([replace(ex, meta={"source": "arc"}) for ex in demo])


def test_the_oracle_is_recognised_by_mode_or_engine():
    assert is_oracle(JudgeConfig(mode="oracle"))
    assert is_oracle(JudgeConfig(model=ModelSpec(engine="oracle")))
    assert not is_oracle(JudgeConfig(mode="probability"))


def test_oracle_scores_have_the_scores_columns_and_rank_sound_above_defective(tmp_path: Path):
    examples = generate_demo(6, 2, "test")
    by_id = {ex.prompt_id: ex for ex in examples}
    sound = judge_input(_answers(examples), by_id, "sample")
    broken = judge_input(_answers(examples, ("false_equation", "repetition")), by_id, "sample")
    broken["sample_idx"] = 1
    path = tmp_path / "oracle" / "scores.parquet"
    scores = write_oracle_scores(pd.concat([sound, broken], ignore_index=True), path)
    on_disk = pd.read_parquet(path)
    assert list(on_disk.columns) == SCORE_COLUMNS
    assert (on_disk["status"] == "scored").all() and (on_disk["mode"] == "oracle").all()
    assert on_disk[list(CRITERIA)].notna().all().all()
    by_idx = scores.set_index(["prompt_id", "sample_idx"])["score"]
    for ex in examples:
        assert by_idx[(ex.prompt_id, 0)] > by_idx[(ex.prompt_id, 1)], ex.prompt_id


def test_no_rows_give_an_empty_scores_file(tmp_path: Path):
    path = tmp_path / "oracle" / "eval-scores-base.parquet"
    write_oracle_scores(pd.DataFrame(), path)
    assert list(pd.read_parquet(path).columns) == SCORE_COLUMNS


def test_the_oracle_rule_reads_a_config_dict_as_the_config():
    assert is_oracle({"mode": "auto", "model": {"engine": "oracle"}})
    assert is_oracle({"mode": "oracle", "model": {"engine": "hf"}})
    assert not is_oracle({"mode": "auto", "model": {"engine": "hf"}})
    assert not is_oracle(None)
