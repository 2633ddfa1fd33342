"""ServeEngine: the Engine protocol over live Serve deployments (pipeline placement `serve`).

The judge stage runs through Ray Data against the live judge deployment and must give the
same scores as the same stage inline; generation through the policy deployment must give the
same keyed samples as the engine inline.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from anchor_service.config import JudgeConfig, ModelSpec
from anchor_service.core.types import CRITERIA
from anchor_service.engines.base import ChoiceQuery, EngineError, GenRequest, SamplingParams
from anchor_service.engines.serve import ServeEngine, parse_target, serve_model

pytestmark = pytest.mark.ray

APP = "anchor-engine-test"


def tiny_spec(model_dir: Path) -> ModelSpec:
    return ModelSpec(name=str(model_dir), dtype="float32")


@pytest.fixture(scope="module")
def live_app(serve_tiny_model):
    with serve_tiny_model(f"serve.app_name={APP}") as live:
        yield live.cfg


def judge_rows() -> pd.DataFrame:
    """Demo questions with a sound and two defective explanations each (plus one empty)."""
    from anchor_service.demo.task import demo_response, generate_demo

    rows = []
    for example in generate_demo(6, seed=3, split="train"):
        for idx, defects in enumerate([(), ("wrong_result",), ("no_numbers", "repetition")]):
            answer, explanation = demo_response(example, defects)
            rows.append(
                {
                    "prompt_id": example.prompt_id,
                    "source": "sample",
                    "sample_idx": idx,
                    "question": example.question,
                    "options": list(example.options),
                    "answer": answer,
                    "explanation": explanation,
                    "meta_json": json.dumps(example.meta),
                }
            )
    rows[-1]["explanation"] = ""  # an empty one scores 0 without a model call, both ways
    return pd.DataFrame(rows)


def test_judge_stage_through_the_live_deployment_matches_inline(
    live_app, tiny_model_dir: Path
) -> None:
    import ray

    from anchor_service.pipeline.judge import JudgeStage

    rows = judge_rows()
    inline = JudgeStage(JudgeConfig(model=tiny_spec(tiny_model_dir)).model_dump())(rows)

    served_cfg = JudgeConfig(model=serve_model(APP, "judge")).model_dump()
    ds = ray.data.from_pandas(rows).map_batches(
        JudgeStage,
        fn_constructor_kwargs={"judge_cfg": served_cfg},
        batch_size=8,
        batch_format="pandas",
        compute=ray.data.ActorPoolStrategy(size=1),
        num_cpus=0.25,
    )
    served = ds.to_pandas()

    key = ["prompt_id", "sample_idx"]
    inline = inline.sort_values(key).reset_index(drop=True)
    served = served.sort_values(key).reset_index(drop=True)
    assert len(served) == len(rows)
    assert (served["status"] == "scored").sum() == len(rows) - 1
    same = ["prompt_id", "sample_idx", "judge", "mode", "status", *CRITERIA, "score"]
    pd.testing.assert_frame_equal(served[same], inline[same], check_dtype=False)
    assert served["judge"].iloc[0] == str(tiny_model_dir)  # the model, not the adapter
    assert served["score_expected"].tolist() == pytest.approx(
        inline["score_expected"].tolist(), abs=1e-3
    )


def test_generate_through_the_live_deployment_matches_the_engine_inline(
    live_app, tiny_model_dir: Path
) -> None:
    from anchor_service.core.prompts import explain_prompt
    from anchor_service.engines.factory import make_engine

    requests = [
        GenRequest(prompt=explain_prompt("What is 12 + 30?", ["42", "41", "18"]), key=(0, "q", i))
        for i in range(3)
    ]
    params = SamplingParams(temperature=0.8, top_p=0.95, max_tokens=16)
    served = make_engine(serve_model(APP, "policy"))
    assert isinstance(served, ServeEngine)
    assert served.model_id == str(tiny_model_dir)
    inline = make_engine(tiny_spec(tiny_model_dir))
    got = served.generate(requests, params)
    want = inline.generate(requests, params)
    assert [c.text for c in got] == [c.text for c in want]
    assert [c.key for c in got] == [r.key for r in requests]
    assert served.generate([], params) == []


def test_choice_probs_through_the_live_deployment_match_inline(
    live_app, tiny_model_dir: Path
) -> None:
    from anchor_service.core.rubric import VERDICT_TOKENS, judge_query
    from anchor_service.engines.hf import HFEngine
    from anchor_service.scoring.item import JudgeItem

    item = JudgeItem("What is 2 + 2?", ["4", "5"], "A", "2 + 2 = 4, and 5 is off by one.")
    prefix, slots = judge_query(item)
    query = ChoiceQuery(prefix=prefix, slots=slots)
    served = ServeEngine(serve_model(APP, "judge")).choice_probs([query], VERDICT_TOKENS)
    inline = HFEngine(tiny_spec(tiny_model_dir)).choice_probs([query], VERDICT_TOKENS)
    assert len(served) == 1 and len(served[0]) == len(CRITERIA)
    for got, want in zip(served[0], inline[0], strict=True):
        assert got.keys() == want.keys()
        assert [got[t] for t in VERDICT_TOKENS] == pytest.approx(
            [want[t] for t in VERDICT_TOKENS], abs=1e-5
        )


def test_multi_token_choice_is_an_engine_error_across_the_handle(live_app) -> None:
    engine = ServeEngine(serve_model(APP, "judge"))
    engine.check_single_tokens(["3", "2", "1", "0"])
    with pytest.raises(EngineError, match="not single tokens"):
        engine.check_single_tokens(["3", "Unsatisfactory verdict"])


def test_missing_deployment_is_an_engine_error_naming_it(live_app) -> None:
    with pytest.raises(EngineError, match="no-such-deployment"):
        ServeEngine(serve_model(APP, "no-such-deployment"))


@pytest.mark.parametrize(
    "name,expected",
    [("anchor/judge", ("anchor", "judge")), ("policy", ("anchor", "policy")), ("a/b", ("a", "b"))],
)
def test_model_name_picks_application_and_deployment(name: str, expected: tuple) -> None:
    assert parse_target(name) == expected


@pytest.mark.parametrize("name", ["", "anchor/", "a/b/c"])
def test_malformed_model_name_is_an_engine_error(name: str) -> None:
    with pytest.raises(EngineError, match="<app>/<deployment>"):
        parse_target(name)
