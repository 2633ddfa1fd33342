"""Iterative rounds as whole runs on the tiny trained test model (oracle evaluation judge).

One k = 2 run (DPO of round 2 continuing round 1's adapter, the stop rule's thresholds set so
that every round passes) is shared by the tests; the others start from copies of it: a run
cut between rounds resumes without redoing round 1 and ends with the same files, and a k = 3
run whose stop rule cannot pass trains round 2 (round 1 is never gated), stops before round
3 and reports round 1, with `maxmin` and `label_filter` trained and evaluated beside
`anchor` and `rank`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from test_pipeline_job import tiny_config

from anchor_service.cli.main import main
from anchor_service.evaluation.stats import accuracy

# ~15 minutes on 2 quiet cores (27 shared with a demo run): outside CI's budget, run by `bash scripts/test-separate.sh rounds`.
pytestmark = [pytest.mark.ray, pytest.mark.rounds]

TRAINED = ("anchor", "rank")


def rounds_config(model_dir: Path, **rounds) -> dict:
    cfg = tiny_config(model_dir)
    cfg["data"]["demo"] = {"n_train": 24, "n_test": 8, "seed": 7}
    cfg["eval_judge"] = {"mode": "oracle"}
    cfg["pipeline"]["progress"] = False
    # min_delta_ci_low -101: a Delta W-L CI (within [-100, 100]) always lies above it.
    cfg["rounds"] = {
        "k": 2,
        "init": "continue",
        "validation_size": 6,
        "min_delta_ci_low": -101.0,
        "max_accuracy_drop": 100.0,
        **rounds,
    }
    return cfg


def run_method(cfg: dict, out: Path) -> None:
    path = out.parent / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["run", "--config", str(path), "--out", str(out)]) == 0


@pytest.fixture(scope="module")
def two_rounds(tiny_model_dir: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("rounds") / "run"
    run_method(rounds_config(tiny_model_dir), out)
    return out


def _copy_round_one(run: Path, dest: Path) -> Path:
    """The run directory as a kill right after round 1's last stage leaves it."""
    shutil.copytree(run, dest, ignore=shutil.ignore_patterns("ray_train"))
    shutil.rmtree(dest / "rounds")
    for name in ("summary.json", "report.md", "report.html"):
        (dest / name).unlink()
    return dest


def _states(run: Path) -> dict[str, str]:
    return {
        p.name: p.read_text() for p in (run / "state").glob("*.json") if p.name != "timings.json"
    }


def test_both_rounds_of_each_strategy_ran_and_are_reported(two_rounds: Path):
    run = two_rounds
    record = json.loads((run / "rounds" / "rounds.json").read_text())
    round1 = pd.read_parquet(run / "samples.parquet")
    validation = set(pd.read_parquet(run / "validation" / "answers-anchor.parquet")["prompt_id"])
    test_ids = set(pd.read_parquet(run / "eval" / "answers-base.parquet")["prompt_id"])
    assert len(validation) == 6 and validation.isdisjoint(round1["prompt_id"])
    assert validation.isdisjoint(test_ids)
    summary = json.loads((run / "summary.json").read_text())
    for s in TRAINED:
        chain = record["strategies"][s]
        assert chain["trained_rounds"] == [1, 2] and chain["reported_round"] == 2
        assert chain["stopped"] == "reached rounds.k = 2"
        assert [(d["round"], d["passed"]) for d in chain["decisions"]] == [(2, True)]
        home = run / "rounds" / "2" / s
        samples = pd.read_parquet(home / "samples.parquet")
        assert set(samples["model"]) == {s}  # sampled from the strategy's round-1 policy
        keys = ["prompt_id", "sample_idx"]
        assert samples[keys].sort_values(keys).values.tolist() == (
            round1[keys].sort_values(keys).values.tolist()
        )
        assert len(pd.read_parquet(home / f"pairs-{s}.parquet")) > 0
        adapter = home / "models" / s / "adapter_model.safetensors"
        assert (
            adapter.read_bytes() != (run / "models" / s / "adapter_model.safetensors").read_bytes()
        )
        answers = pd.read_parquet(home / "eval" / f"answers-{s}.parquet")
        assert summary["accuracy"][s] == accuracy(list(answers["correct"]))
        assert set(pd.read_parquet(home / "validation" / f"answers-{s}.parquet")["prompt_id"]) == (
            validation
        )
        per_round = summary["rounds"]["strategies"][s]["per_round"]
        assert [e["round"] for e in per_round] == [1, 2]
        assert per_round[1]["delta_wl_vs_base"] == summary["delta_wl"][s]
        assert per_round[1]["delta_wl_vs_previous"]["vs"] == s
    report = (run / "report.md").read_text()
    assert "## Rounds (k = 2, DPO init `continue`)" in report
    assert (run / "figures" / "rounds.png").is_file()


def test_a_run_cut_between_rounds_resumes_without_redoing_round_one(
    two_rounds: Path, tiny_model_dir: Path, tmp_path: Path
):
    run = _copy_round_one(two_rounds, tmp_path / "run")
    before = _states(run)
    run_method(rounds_config(tiny_model_dir), run)
    assert _states(run) == before, "a round-1 stage ran again"
    for s in TRAINED:
        got, want = run / "rounds" / "2" / s, two_rounds / "rounds" / "2" / s
        for name in ("samples.parquet", "scores.parquet", f"pairs-{s}.parquet"):
            pd.testing.assert_frame_equal(pd.read_parquet(got / name), pd.read_parquet(want / name))
        assert json.loads((got / f"stats-{s}.json").read_text()) == json.loads(
            (want / f"stats-{s}.json").read_text()
        )
    assert json.loads((run / "summary.json").read_text()) == json.loads(
        (two_rounds / "summary.json").read_text()
    )


def test_a_failed_stop_rule_ends_after_round_two_and_every_strategy_trains(
    two_rounds: Path, tiny_model_dir: Path, tmp_path: Path
):
    from anchor_service.training.margins import implicit_reward_margins

    run = _copy_round_one(two_rounds, tmp_path / "run")
    cfg = rounds_config(tiny_model_dir, k=3, min_delta_ci_low=100.0)
    # Only the two strategies never trained end to end elsewhere: anchor and rank would each
    # add a second round 2 to the suite's time and test nothing new.
    cfg["pairs"]["strategies"] = ["maxmin", "label_filter"]
    run_method(cfg, run)
    assert not (run / "rounds" / "3").exists()
    record = json.loads((run / "rounds" / "rounds.json").read_text())
    summary = json.loads((run / "summary.json").read_text())
    assert not summary["dpo_skipped"]
    for s in cfg["pairs"]["strategies"]:
        assert (run / "rounds" / "2" / s / "models" / s).is_dir()
        chain = record["strategies"][s]
        assert chain["trained_rounds"] == [1, 2] and chain["reported_round"] == 1
        assert chain["stopped"] == "round 2 failed the stop rule; round 1 is reported"
        assert [d["round"] for d in chain["decisions"]] == [2]
        assert "CI not wholly above +100.0" in chain["decisions"][0]["reason"]
        answers = pd.read_parquet(run / "eval" / f"answers-{s}.parquet")
        assert summary["accuracy"][s] == accuracy(list(answers["correct"]))
        assert summary["delta_wl"][s]["vs"] == "base"
        per_round = summary["rounds"]["strategies"][s]["per_round"]
        assert [e["accepted"] for e in per_round] == [True, False]
        pairs = pd.read_parquet(run / f"pairs-{s}.parquet").to_dict("records")
        margins = implicit_reward_margins(
            run / "models" / s, run / "models" / "sft", pairs, beta=0.1
        )
        assert sum(margins) / len(margins) > 0, f"{s}: mean margin {margins}"
    # label-blind: its chosen response is always a sample, never the debater's
    assert set(pd.read_parquet(run / "pairs-maxmin.parquet")["chosen_ref"]) <= {
        f"sample:{i}" for i in range(cfg["sampling"]["n"])
    }
    label_filter = pd.read_parquet(run / "pairs-label_filter.parquet")
    assert "consistently_incorrect" not in set(label_filter["category"])
    # sampling, debate, judging and the sft evaluations were not redone
    states = _states(run)
    for name in ("sft.json", "sample.json", "debate.json", "judge.json", "eval-answers-sft.json"):
        assert states[name] == (two_rounds / "state" / name).read_text()
