"""`anchor-align experiment` and `anchor-align report` on experiment directories.

Fast tests work on run directories written from known numbers (tests/synthetic_run.py): the
experiment finds them finished, skips them without starting Ray, and aggregates them. The
slow test runs a real two-seed experiment on the tiny trained test model.
"""

from __future__ import annotations

import json
import logging
import shutil
import statistics
from pathlib import Path

import pandas as pd
import pytest
import yaml
from synthetic_run import write_run

from anchor_service.cli.main import main
from anchor_service.config import ConfigError, dump_config
from anchor_service.experiment_dir import (
    Experiment,
    Variant,
    find_runs,
    parse_seeds,
    parse_variant,
)
from anchor_service.recipe.experiment import is_finished

FAST = ["evaluation.bootstrap=200", "eval_judge.mode=oracle"]


def test_variant_splits_overrides_at_commas_before_a_key_and_keeps_lists_whole():
    v = parse_variant("weak:judge.mode=probability, pairs.strategies=[anchor,rank],run_seed=3")
    assert v == Variant(
        "weak", ("judge.mode=probability", "pairs.strategies=[anchor,rank]", "run_seed=3")
    )
    assert parse_variant("plain:") == Variant("plain", ())


@pytest.mark.parametrize("text", ["noname", "1x:a=b", "seed-1:a=b", "figures:a=b", "x:novalue"])
def test_variant_with_a_bad_name_or_override_is_an_error_naming_it(text: str):
    with pytest.raises(ConfigError, match="variant"):
        parse_variant(text)


def test_seeds_take_lists_and_ranges_and_refuse_repeats():
    assert parse_seeds("0,1,2") == [0, 1, 2]
    assert parse_seeds("3-5, 9") == [3, 4, 5, 9]
    for bad in ("0,0", "2-1", "a", "1,,2"):
        with pytest.raises(ConfigError, match="seeds"):
            parse_seeds(bad)


def test_every_seed_config_differs_only_in_run_seed_and_pins_the_data_subset():
    exp = Experiment(config=None, seeds=[0, 5], overrides=["run_seed=7", "data.limit_test=10"])
    runs = exp.plan("/tmp/exp")
    assert [r.path for r in runs] == [Path("/tmp/exp/seed-0"), Path("/tmp/exp/seed-5")]
    dumps = [r.cfg.model_dump() for r in runs]
    assert [d.pop("run_seed") for d in dumps] == [0, 5]
    assert dumps[0] == dumps[1]
    assert dumps[0]["data"]["selection_seed"] == 7  # the config's run_seed chose the subset


def test_variant_overrides_apply_after_the_experiment_overrides():
    exp = Experiment(
        config=None,
        seeds=[1],
        overrides=["judge.mode=probability"],
        variants=[Variant("oracle", ("judge.mode=oracle",)), Variant("llm", ())],
    )
    runs = {r.variant: r for r in exp.plan("/x")}
    assert runs["oracle"].cfg.judge.mode == "oracle" and runs["llm"].cfg.judge.mode == "probability"
    assert runs["oracle"].path == Path("/x/oracle/seed-1")


def test_a_bad_key_in_a_variant_fails_before_any_run_starts(tmp_path: Path, capsys):
    code = main(
        ["experiment", "--seeds", "0", "--variant", "x:judge.mood=oracle", "--out", str(tmp_path)]
    )
    assert code == 2
    assert "judge.mood" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def _finished_experiment(root: Path, exp: Experiment, quality: dict | None = None) -> None:
    """Write every planned run as finished: its config.yaml as planned, files, summary.json."""
    from anchor_service.report.summary import write_summary

    for run in exp.plan(root):
        q = (quality or {}).get(run.variant)
        write_run(run.path, dump_config(run.cfg), seed=run.seed, quality=q)
        write_summary(run.path)


def _accuracy(run: Path, model: str) -> float:
    return float(pd.read_parquet(run / "eval" / f"answers-{model}.parquet")["correct"].mean())


def _delta_wl(run: Path, a: str, b: str) -> float:
    """win% - loss% of a against b, question by question, straight from the score files."""
    sa = pd.read_parquet(run / "eval" / f"scores-{a}.parquet").sort_values("prompt_id")
    sb = pd.read_parquet(run / "eval" / f"scores-{b}.parquet").sort_values("prompt_id")
    wins = int((sa["score"].to_numpy() > sb["score"].to_numpy()).sum())
    losses = int((sa["score"].to_numpy() < sb["score"].to_numpy()).sum())
    return 100.0 * (wins - losses) / len(sa)


def test_finished_seeds_are_skipped_and_aggregated_over_seeds(tmp_path: Path, caplog):
    caplog.set_level(logging.INFO)
    exp = Experiment(config=None, seeds=[0, 1, 2], overrides=FAST)
    _finished_experiment(tmp_path, exp)
    args = ["experiment", "--seeds", "0-2", "--out", str(tmp_path)]
    assert main(args + [x for o in FAST for x in ("--set", o)]) == 0
    assert caplog.text.count("finished already, skipped") == 3

    experiment = json.loads((tmp_path / "experiment.json").read_text())
    assert experiment["run_seeds"] == [0, 1, 2]
    assert experiment["experiment"]["runs"] == {str(s): f"seed-{s}" for s in (0, 1, 2)}
    for model in ("base", "sft", "anchor"):
        per_seed = [_accuracy(tmp_path / f"seed-{s}", model) for s in (0, 1, 2)]
        got = experiment["accuracy"][model]["value"]
        assert got["values"] == pytest.approx(per_seed)
        assert got["mean"] == pytest.approx(statistics.fmean(per_seed))
        assert got["std"] == pytest.approx(statistics.stdev(per_seed))
    row = experiment["pairwise"]["anchor vs sft"]["value"]
    assert row["values"] == pytest.approx(
        [_delta_wl(tmp_path / f"seed-{s}", "anchor", "sft") for s in (0, 1, 2)]
    )
    report = (tmp_path / "report.md").read_text()
    assert "seeds 0, 1, 2" in report and "| anchor vs sft |" in report
    assert (tmp_path / "figures" / "delta_wl.png").is_file()
    assert (tmp_path / "report.html").read_text().count("data:image/png;base64,") == 2


def test_report_rebuilds_the_same_experiment_json(tmp_path: Path):
    exp = Experiment(config=None, seeds=[0, 1], overrides=FAST)
    _finished_experiment(tmp_path, exp)
    (tmp_path / "experiment.yaml").write_text(yaml.safe_dump(exp.to_dict()))
    assert main(["report", str(tmp_path)]) == 0
    before = (tmp_path / "experiment.json").read_text()
    for name in ("experiment.json", "report.md", "report.html"):
        (tmp_path / name).unlink()
    shutil.rmtree(tmp_path / "figures")
    for s in (0, 1):
        (tmp_path / f"seed-{s}" / "summary.json").unlink()
    assert main(["report", str(tmp_path)]) == 0
    assert (tmp_path / "experiment.json").read_text() == before
    assert (tmp_path / "seed-0" / "summary.json").is_file()


def test_report_finds_runs_by_layout_without_experiment_yaml(tmp_path: Path):
    exp = Experiment(
        config=None, seeds=[3, 4], overrides=FAST, variants=[Variant("a"), Variant("b")]
    )
    _finished_experiment(tmp_path, exp)
    assert find_runs(tmp_path) == {
        v: {s: tmp_path / v / f"seed-{s}" for s in (3, 4)} for v in ("a", "b")
    }
    assert main(["report", str(tmp_path)]) == 0
    assert set(json.loads((tmp_path / "experiment.json").read_text())["variants"]) == {"a", "b"}


def test_variants_are_compared_seed_by_seed_on_the_dpo_models(tmp_path: Path):
    exp = Experiment(
        config=None,
        seeds=[0, 1],
        overrides=FAST,
        variants=[
            Variant("weak", ("judge.mode=probability",)),
            Variant("oracle", ("judge.mode=oracle",)),
        ],
    )
    # In the `oracle` variant the anchor model explains better (by construction).
    _finished_experiment(tmp_path, exp, quality={"oracle": {"anchor": 11.0}})
    args = ["experiment", "--seeds", "0,1", "--out", str(tmp_path)]
    args += [x for o in FAST for x in ("--set", o)]
    args += ["--variant", "weak:judge.mode=probability", "--variant", "oracle:judge.mode=oracle"]
    assert main(args) == 0
    experiment = json.loads((tmp_path / "experiment.json").read_text())
    rows = {(r["a"], r["b"]): r for r in experiment["comparison"]}
    assert set(rows) == {("anchor", "sft"), ("rank", "sft"), ("anchor", "rank")}
    row = rows[("anchor", "sft")]
    per_seed = {
        v: [_delta_wl(tmp_path / v / f"seed-{s}", "anchor", "sft") for s in (0, 1)]
        for v in ("weak", "oracle")
    }
    assert row["variants"]["weak"]["values"] == pytest.approx(per_seed["weak"])
    assert row["variants"]["oracle"]["values"] == pytest.approx(per_seed["oracle"])
    diff = [o - w for o, w in zip(per_seed["oracle"], per_seed["weak"], strict=True)]
    assert row["difference"]["oracle"]["values"] == pytest.approx(diff)
    assert row["difference"]["oracle"]["mean"] > 0
    report = (tmp_path / "report.md").read_text()
    assert "## Variant weak: judge.mode=probability" in report
    assert "| anchor vs sft |" in report and "oracle - weak" in report


def test_a_run_whose_config_changed_is_not_finished(tmp_path: Path):
    exp = Experiment(config=None, seeds=[0], overrides=FAST)
    _finished_experiment(tmp_path, exp)
    (run,) = exp.plan(tmp_path)
    assert is_finished(run)
    changed = Experiment(config=None, seeds=[0], overrides=[*FAST, "sampling.n=2"])
    assert not is_finished(changed.plan(tmp_path)[0])


def test_report_on_a_directory_that_is_neither_run_nor_experiment_is_an_error(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "neither a run directory" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.ray
def test_two_seed_experiment_on_the_tiny_model_runs_resumes_and_aggregates(
    tiny_model_dir: Path, tmp_path: Path, caplog
):
    """Two seeds of a minimal config on the tiny model, oracle as evaluation judge."""
    from test_pipeline_job import tiny_config

    cfg = tiny_config(tiny_model_dir)
    cfg["data"]["demo"] = {"n_train": 8, "n_test": 8, "seed": 7}
    cfg["eval_judge"] = {"mode": "oracle"}
    cfg["pipeline"]["progress"] = False
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "exp"
    args = ["experiment", "--config", str(config), "--seeds", "0,1", "--out", str(out)]
    assert main(args) == 0

    experiment = json.loads((out / "experiment.json").read_text())
    assert experiment["run_seeds"] == [0, 1]
    for s in (0, 1):
        summary = json.loads((out / f"seed-{s}" / "summary.json").read_text())
        assert summary["run_seed"] == s
        acc = _accuracy(out / f"seed-{s}", "sft")
        assert summary["accuracy"]["sft"]["value"] == pytest.approx(acc)
        # the tiny model judges in the loop, the oracle re-scored its responses
        agreement = summary["judge_agreement"][summary["judge"]["alignment"]]
        assert agreement["roles"] == ["alignment"] and agreement["n"] > 0
        assert (out / f"seed-{s}" / "oracle" / "scores.parquet").is_file()
    values = experiment["accuracy"]["sft"]["value"]["values"]
    assert values == pytest.approx([_accuracy(out / f"seed-{s}", "sft") for s in (0, 1)])

    caplog.set_level(logging.INFO)
    before = (out / "experiment.json").read_text()
    assert main(args) == 0  # resumed: both seeds finished, nothing recomputed
    assert caplog.text.count("finished already, skipped") == 2
    assert (out / "experiment.json").read_text() == before


def test_a_claim_not_applicable_in_every_seed_is_reported_without_conditions(tmp_path: Path):
    exp = Experiment(config=None, seeds=[0, 1], overrides=FAST)
    # SFT explains better than base here, so `recovery` is not applicable in any seed.
    _finished_experiment(tmp_path, exp, quality={"": {"sft": 12.0}})
    assert main(["report", str(tmp_path)]) == 0
    experiment = json.loads((tmp_path / "experiment.json").read_text())
    assert experiment["claims"]["recovery"]["verdict"]["counts"] == {"not_applicable": 2}
    report = (tmp_path / "report.md").read_text()
    assert "- **recovery**: not_applicable 2" in report
