"""The check set each judge's sanity figure is measured on (pipeline/sanity.py)."""

from __future__ import annotations

from anchor_service.config import JudgeConfig, ModelSpec
from anchor_service.demo.checkset import oracle_check_pairs
from anchor_service.pipeline.sanity import checkset_pairs, sanity_rows
from anchor_service.schema import JUDGE_INPUT
from anchor_service.scoring.sanity import load_checkset


def test_an_oracle_engine_judge_in_auto_mode_gets_the_oracle_check_set():
    # The oracle only knows the demo task: the shipped LLM check set would leave it unscored.
    judge = JudgeConfig(mode="auto", model=ModelSpec(engine="oracle"))
    assert checkset_pairs(judge) == oracle_check_pairs()
    assert checkset_pairs(JudgeConfig(mode="oracle")) == oracle_check_pairs()


def test_an_llm_judge_gets_the_shipped_check_set():
    assert checkset_pairs(JudgeConfig(mode="probability")) == load_checkset()


def test_sanity_rows_are_judge_input_rows_sound_first():
    rows = sanity_rows(JudgeConfig(mode="oracle"))
    assert list(rows.columns) == JUDGE_INPUT
    assert list(rows["sample_idx"][:2]) == [0, 1]
    assert rows["prompt_id"].iloc[0] == "checkset/00"
