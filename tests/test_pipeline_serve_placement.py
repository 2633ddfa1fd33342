"""`pipeline.placement: serve`, whole (issue 18 item 4): the pipeline against live deployments.

The method's pipeline (SFT, sampling, the debate, judging, categories and pairs) runs once
inline, then again with `placement: serve` against a live Serve application whose judge and
policy deployments hold the same fp32 tiny model: the judge stage scores through the judge
deployment and the debater is the policy deployment (recipe.method.with_serve_placement).
Sampling stays inline in both: it needs the run's SFT model, and the policy deployment serves
one model (an adapter chosen per request is not on the deployment yet), so the served run
reuses the inline run's SFT model and samples (same fingerprints: skipped) and recomputes
the debate and judging (their fingerprints name the served models). fp32 HF on the CPU draws
identically in any batch (docs/DESIGN.md "Where batch independence holds"), so the debates,
the scores and the pairs must be the inline run's, row for row. About 3.5 min on 2 cores.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from test_pipeline_job import tiny_config

from anchor_service.config import RunConfig
from anchor_service.core.types import CRITERIA
from anchor_service.recipe.method import MethodRun

pytestmark = pytest.mark.ray

APP = "anchor-placement-run"
STRATEGIES = ("anchor", "rank")


def _model_overrides(cfg: dict) -> list[str]:
    """The run's model settings for the served replicas (the prompt cut depends on
    max_model_len, so the deployments must read the prompts the inline engines read)."""
    model = cfg["policy"]
    return [
        f"{section}.{key}={model[key]}"
        for section in ("policy", "judge.model")
        for key in ("max_model_len", "batch_size")
    ]


def test_serve_placement_gives_the_inline_debates_scores_and_pairs(
    serve_tiny_model, tiny_model_dir: Path, tmp_path: Path
):
    raw = tiny_config(tiny_model_dir)
    inline_dir, served_dir = tmp_path / "inline", tmp_path / "served"
    MethodRun(RunConfig.model_validate(raw), inline_dir).run(until="pairs")
    shutil.copytree(inline_dir, served_dir, ignore=shutil.ignore_patterns("ray_train", "parts"))

    served_raw = raw | {"pipeline": {**raw["pipeline"], "placement": "serve"}}
    served_raw["serve"] = {"app_name": APP}
    with serve_tiny_model(f"serve.app_name={APP}", *_model_overrides(raw)):
        run = MethodRun(RunConfig.model_validate(served_raw), served_dir)
        assert run.cfg.judge.model.engine == "serve" and run.cfg.debater.engine == "serve"
        run.run(until="pairs")

    state = {d: _fingerprints(d) for d in (inline_dir, served_dir)}
    for stage in ("sft", "sample"):
        assert state[served_dir][stage] == state[inline_dir][stage], f"{stage} recomputed"
    for stage in ("debate", "judge"):
        assert state[served_dir][stage] != state[inline_dir][stage], f"{stage} not served"

    debates = [pd.read_parquet(d / "debates.parquet") for d in (served_dir, inline_dir)]
    assert len(debates[1]) > 0, "no consistently-incorrect prompt: the debater never ran"
    pd.testing.assert_frame_equal(*debates)
    scores = [pd.read_parquet(d / "scores.parquet") for d in (served_dir, inline_dir)]
    assert (scores[1]["source"] == "debate").any(), "no accepted debate was judged"
    same = [c for c in scores[1].columns if c != "score_expected"]
    pd.testing.assert_frame_equal(scores[0][same], scores[1][same])
    assert scores[0]["judge"].iloc[0] == str(tiny_model_dir)
    assert set(CRITERIA) <= set(scores[0].columns)
    pd.testing.assert_series_equal(scores[0]["score_expected"], scores[1]["score_expected"])
    for strategy in STRATEGIES:
        pd.testing.assert_frame_equal(
            pd.read_parquet(served_dir / f"pairs-{strategy}.parquet"),
            pd.read_parquet(inline_dir / f"pairs-{strategy}.parquet"),
        )
        assert json.loads((served_dir / f"stats-{strategy}.json").read_text()) == json.loads(
            (inline_dir / f"stats-{strategy}.json").read_text()
        )


def _fingerprints(run: Path) -> dict[str, str]:
    return {
        p.stem: json.loads(p.read_text())["fingerprint"]
        for p in (run / "state").glob("*.json")
        if p.name != "timings.json"
    }
