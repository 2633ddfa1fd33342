"""A judge stage's fingerprint includes the judge prompt's version: a new prompt rescores."""

from __future__ import annotations

import pandas as pd

import anchor_service.recipe.method as run_module
from anchor_service.config import load_config
from anchor_service.core.rubric import JUDGE_PROMPT_VERSION
from anchor_service.recipe.method import MethodRun

KEYS = ["prompt_id", "source", "sample_idx"]


def test_judge_stage_fingerprint_changes_with_the_prompt_version(tmp_path, monkeypatch):
    cfg = load_config(None, [])
    run = MethodRun(cfg, tmp_path / "run")
    rows = pd.DataFrame(columns=[*KEYS, "question", "options", "answer", "explanation"])
    out = run.rundir.scores

    run._run(run._judge_stage("judge", cfg.judge, rows, out, ["up"]))
    current = run.fp["judge"]
    assert run.rundir.is_done("judge", current)
    run._run(run._judge_stage("judge", cfg.judge, rows, out, ["up"]))
    assert run.fp["judge"] == current  # same prompt: the finished stage is reused

    monkeypatch.setattr(run_module, "JUDGE_PROMPT_VERSION", JUDGE_PROMPT_VERSION + "-next")
    run._run(run._judge_stage("judge", cfg.judge, rows, out, ["up"]))
    assert run.fp["judge"] != current
    assert run.rundir.is_done("judge", run.fp["judge"])
    assert not run.rundir.is_done("judge", current)
