"""summary.json `judge_agreement` (report/agreement.py) from run files with known scores."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from synthetic_run import MODELS, write_run

from anchor_service.config import dump_config, load_config
from anchor_service.evaluation.agreement import judge_agreement
from anchor_service.report.summary import build_summary, write_summary

FAST = ["evaluation.bootstrap=200"]


def _config(*overrides: str) -> str:
    return dump_config(load_config(None, [*FAST, *overrides]))


def _keys(df: pd.DataFrame) -> list:
    return [
        None if st == "unscored" else (int(s), float(e))
        for s, e, st in zip(df["score"], df["score_expected"], df["status"], strict=True)
    ]


def _expected(run: Path, pairs: list[tuple[Path, Path]]) -> dict:
    """judge_agreement recomputed from the files: judge file against oracle file."""
    judge, oracle, groups = [], [], []
    for judge_file, oracle_file in pairs:
        j = pd.read_parquet(judge_file).sort_values(["prompt_id", "source", "sample_idx"])
        o = pd.read_parquet(oracle_file).sort_values(["prompt_id", "source", "sample_idx"])
        assert j["prompt_id"].tolist() == o["prompt_id"].tolist()
        judge += _keys(j)
        oracle += _keys(o)
        groups += j["prompt_id"].tolist()
    return judge_agreement(oracle, judge, groups, seed=0, n_resamples=200)


def test_alignment_judge_agreement_equals_the_core_figure_on_the_files(tmp_path: Path):
    run = tmp_path / "run"
    write_run(run, _config("eval_judge.mode=oracle"), seed=0)
    summary = build_summary(run)
    name = summary["judge"]["alignment"]
    assert list(summary["judge_agreement"]) == [name]
    got = summary["judge_agreement"][name]
    want = _expected(run, [(run / "scores.parquet", run / "oracle" / "scores.parquet")])
    assert got["roles"] == ["alignment"]
    assert got["excluded"] > 0  # the judge left some responses unscored
    assert {k: v for k, v in got.items() if k != "roles"} == want


def test_a_judge_in_both_roles_is_measured_on_every_response_it_scored(tmp_path: Path):
    run = tmp_path / "run"
    write_run(run, _config(), seed=1, eval_oracle_files=True)  # no eval_judge: same LLM judge
    summary = build_summary(run)
    got = summary["judge_agreement"][summary["judge"]["alignment"]]
    files = [(run / "scores.parquet", run / "oracle" / "scores.parquet")] + [
        (run / "eval" / f"scores-{m}.parquet", run / "oracle" / f"eval-scores-{m}.parquet")
        for m in MODELS
    ]
    want = _expected(run, files)
    assert got["roles"] == ["alignment", "evaluation"]
    assert got["n"] == want["n"] and got["questions"] == want["questions"]
    assert got["spearman"] == want["spearman"]


def test_no_agreement_when_the_judges_are_the_oracle(tmp_path: Path):
    run = tmp_path / "run"
    write_run(run, _config("judge.mode=oracle", "eval_judge.mode=oracle"), seed=0)
    assert "judge_agreement" not in build_summary(run)


def test_report_md_names_each_judge_with_its_agreement(tmp_path: Path):
    run = tmp_path / "run"
    write_run(run, _config("eval_judge.mode=oracle"), seed=0)
    summary = write_summary(run)
    name = summary["judge"]["alignment"]
    rho = summary["judge_agreement"][name]["spearman"]
    text = (run / "report.md").read_text()
    line = next(x for x in text.splitlines() if "against the oracle" in x)
    assert name in line and f"Spearman {rho['value']:+.2f} [{rho['ci_low']:+.2f}," in line


def test_with_the_oracle_in_the_loop_the_llm_evaluation_judge_is_measured(tmp_path: Path):
    run = tmp_path / "run"
    config = _config("judge.mode=oracle", "eval_judge.mode=probability")
    write_run(run, config, seed=2, eval_oracle_files=True)
    summary = build_summary(run)
    name = summary["judge"]["evaluation"]
    assert list(summary["judge_agreement"]) == [name]
    got = summary["judge_agreement"][name]
    files = [
        (run / "eval" / f"scores-{m}.parquet", run / "oracle" / f"eval-scores-{m}.parquet")
        for m in MODELS
    ]
    assert got["roles"] == ["evaluation"]
    assert {k: v for k, v in got.items() if k != "roles"} == _expected(run, files)
