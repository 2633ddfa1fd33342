"""Iterative rounds without a model: the stop rule, the validation split, the accepted round,
and the report of a run directory with rounds written from known numbers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from synthetic_run import write_run

from anchor_service.config import RunConfig, dump_config, load_config
from anchor_service.evaluation.rounds import stop_rule
from anchor_service.evaluation.stats import accuracy, delta_vs
from anchor_service.recipe.method import load_data
from anchor_service.recipe.rounds import Chain
from anchor_service.report.scored import load_eval, score_list
from anchor_service.report.summary import build_summary, write_summary

FAST = ["evaluation.bootstrap=200", "eval_judge.mode=oracle"]


def _rule(prev, cur, **kw):
    return stop_rule(prev, cur, strategy="anchor", r=1, seed=0, n_resamples=200, **kw)


def test_stop_rule_passes_a_clear_gain_and_names_each_failed_condition():
    n = 40
    prev = ([True] * 20 + [False] * 20, [5] * n)
    better = ([True] * 20 + [False] * 20, [9] * 30 + [5] * 10)
    d = _rule(prev, better)
    assert d["passed"] and d["reason"] is None
    assert d["delta_wl_vs_previous"]["value"] == pytest.approx(75.0)
    assert d["delta_wl_vs_previous"]["ci_low"] > 0

    same = _rule(prev, prev)  # every question tied: CI [0, 0] is not wholly above 0
    assert not same["passed"] and "CI not wholly above +0.0" in same["reason"]

    fewer_right = ([True] * 18 + [False] * 22, better[1])  # 5 points down
    d = _rule(prev, fewer_right)
    assert not d["passed"] and "accuracy fell 5.0 points" in d["reason"]
    assert "CI" not in d["reason"]
    assert _rule(prev, fewer_right, max_accuracy_drop=5.0)["passed"]
    assert not _rule(prev, better, min_delta_ci_low=99.0)["passed"]


def test_stop_rule_refuses_rounds_answering_other_questions():
    with pytest.raises(ValueError, match="same questions"):
        _rule(([True], [1]), ([True, False], [1, 2]))


def test_the_reported_round_is_the_last_before_the_first_failed_rule():
    chain = Chain("anchor", trained=[1, 2, 3])
    chain.decisions = {1: {"passed": True}, 2: {"passed": True}, 3: {"passed": False}}
    assert chain.accepted(stop=True) == 2
    assert chain.accepted(stop=False) == 3
    chain.decisions[2] = {"passed": False}
    assert chain.accepted(stop=True) == 1
    # round 1 is the method itself: reported even when it loses to sft
    assert Chain("rank", trained=[1], decisions={1: {"passed": False}}).accepted(True) == 1


def test_k1_has_no_validation_split_and_k2_holds_out_a_seeded_disjoint_one():
    one = load_data(RunConfig())
    assert one.validation == []
    cfg = load_config(None, ["rounds.k=2", "rounds.validation_size=15"])
    two = load_data(cfg)
    assert len(two.validation) == 15 and len(two.train) == len(one.train) - 15
    ids = {ex.prompt_id for ex in two.validation}
    assert ids.isdisjoint(ex.prompt_id for ex in two.train)
    assert ids | {ex.prompt_id for ex in two.train} == {ex.prompt_id for ex in one.train}
    assert ids.isdisjoint(ex.prompt_id for ex in two.test)
    assert [ex.prompt_id for ex in load_data(cfg).validation] == [
        ex.prompt_id for ex in two.validation
    ]
    other_seed = load_data(
        load_config(None, ["rounds.k=2", "rounds.validation_size=15", "run_seed=1"])
    )
    assert {ex.prompt_id for ex in other_seed.validation} != ids
    # the stop rule off: nothing held out, round 1 is exactly the k = 1 run
    off = load_data(load_config(None, ["rounds.k=3", "rounds.stop=false"]))
    assert off.validation == [] and off.train == one.train


def test_a_validation_split_as_large_as_the_training_split_is_an_error():
    cfg = load_config(None, ["rounds.k=2", "rounds.validation_size=100"])
    with pytest.raises(ValueError, match="rounds.validation_size = 100"):
        load_data(cfg)


def _round_two(run: Path, tmp_path: Path, strategy: str, quality: float) -> Path:
    """rounds/2/<strategy>/ with stats and a test evaluation from a run of known quality."""
    donor = tmp_path / f"donor-{strategy}"
    write_run(donor, (run / "config.yaml").read_text(), seed=0, quality={strategy: quality})
    home = run / "rounds" / "2" / strategy
    (home / "eval").mkdir(parents=True)
    for kind in ("answers", "scores"):
        shutil.copy(donor / "eval" / f"{kind}-{strategy}.parquet", home / "eval")
    stats = json.loads((run / f"stats-{strategy}.json").read_text())
    stats["lambda"] = 0.5
    (home / f"stats-{strategy}.json").write_text(json.dumps(stats))
    return home


def _record(anchor_passed: bool) -> dict:
    decision = {
        "round": 2,
        "n": 10,
        "delta_wl_vs_previous": {"vs": "anchor", "value": 20.0, "ci_low": 5.0, "ci_high": 35.0},
        "accuracy": 0.5,
        "accuracy_previous": 0.5,
        "accuracy_change_pts": 0.0,
        "passed": anchor_passed,
        "reason": None if anchor_passed else "x",
    }
    return {
        "k": 2,
        "init": "fresh",
        "stop": True,
        "strategies": {
            "anchor": {
                "trained_rounds": [1, 2],
                "reported_round": 2 if anchor_passed else 1,
                "stopped": "reached rounds.k = 2",
                "decisions": [decision | {"round": 1}, decision],
            },
            "rank": {
                "trained_rounds": [1],
                "reported_round": 1,
                "stopped": "round 1 failed the stop rule",
                "decisions": [decision | {"round": 1, "passed": False, "reason": "y"}],
            },
        },
    }


def test_report_takes_each_strategy_from_its_last_accepted_round(tmp_path: Path):
    run = tmp_path / "run"
    write_run(run, dump_config(load_config(None, [*FAST, "rounds.k=2"])), seed=0)
    round1 = build_summary(run)
    assert "rounds" not in round1  # no rounds.json: the single-round summary, unchanged
    home = _round_two(run, tmp_path, "anchor", quality=12.0)
    (run / "rounds" / "rounds.json").write_text(json.dumps(_record(anchor_passed=True)))

    summary = write_summary(run)
    two = load_eval(home, "anchor")
    assert summary["accuracy"]["anchor"] == accuracy([bool(c) for c in two["correct"]])
    assert summary["accuracy"]["rank"] == round1["accuracy"]["rank"]
    assert summary["delta_wl"]["anchor"]["value"] != round1["delta_wl"]["anchor"]["value"]
    anchor = summary["rounds"]["strategies"]["anchor"]
    assert anchor["reported_round"] == 2 and [e["round"] for e in anchor["per_round"]] == [1, 2]
    r1, r2 = anchor["per_round"]
    assert r1["delta_wl_vs_base"] == round1["delta_wl"]["anchor"]
    assert r2["delta_wl_vs_base"] == summary["delta_wl"]["anchor"]
    assert r2["lambda"] == 0.5 and r2["accepted"] and r2["validation"]["passed"]
    one = load_eval(run, "anchor")
    want = delta_vs(
        {"anchor@2": score_list(two), "anchor": score_list(one)},
        "anchor@2",
        0,
        reference="anchor",
        n_resamples=200,
    )
    assert r2["delta_wl_vs_previous"] == want
    assert r1["delta_wl_vs_previous"]["vs"] == "sft"
    assert summary["rounds"]["strategies"]["rank"]["stopped"] == "round 1 failed the stop rule"

    report = (run / "report.md").read_text()
    assert "## Rounds (k = 2" in report and "round 2 reported" in report
    assert "![rounds](figures/rounds.png)" in report and (run / "figures" / "rounds.png").is_file()
    assert "rounds" in (run / "report.html").read_text()


def test_a_round_the_stop_rule_rejected_is_shown_but_not_reported(tmp_path: Path):
    run = tmp_path / "run"
    write_run(run, dump_config(load_config(None, [*FAST, "rounds.k=2"])), seed=0)
    round1 = build_summary(run)
    _round_two(run, tmp_path, "anchor", quality=12.0)
    (run / "rounds" / "rounds.json").write_text(json.dumps(_record(anchor_passed=False)))
    summary = build_summary(run)
    assert summary["accuracy"] == round1["accuracy"]
    assert summary["delta_wl"] == round1["delta_wl"]
    r2 = summary["rounds"]["strategies"]["anchor"]["per_round"][1]
    assert not r2["accepted"] and "accuracy" in r2


def test_a_single_round_report_has_no_rounds_section_or_figure(tmp_path: Path):
    run = tmp_path / "run"
    write_run(run, dump_config(load_config(None, FAST)), seed=0)
    summary = write_summary(run)
    assert "rounds" not in summary
    assert "Rounds" not in (run / "report.md").read_text()
    assert not (run / "figures" / "rounds.png").exists()


def test_the_demo_strategies_variant_is_the_demo_with_all_four_strategies():
    root = Path(__file__).resolve().parents[1]
    from anchor_service.resources import demo_config_path

    variant = load_config(root / "docs" / "results" / "configs" / "demo_strategies.yaml")
    demo = load_config(demo_config_path())
    assert variant.pairs.strategies == ["anchor", "rank", "maxmin", "label_filter"]
    assert variant.model_copy(update={"pairs": demo.pairs}) == demo


def test_run_takes_the_packaged_demo_config_by_name():
    import argparse

    from anchor_service.cli.run import run_config

    args = argparse.Namespace(config="demo", overrides=["rounds.k=3"], out=None)
    cfg, out = run_config(args)
    assert cfg.rounds.k == 3 and cfg.data.demo.n_train == 80
    assert out == Path("runs") / "demo-seed0"
