"""DPO on two Ray Train workers (gloo): the adapter-off reference log-probs are computed once
and are the same, and right, on every rank; a worker killed mid-epoch is restarted by Ray
Train's FailureConfig from the last checkpoint, and the run ends with exactly the adapter
(and the per-step log) of an uninterrupted run: fp32 on CPU, and the checkpoint holds every
rank's RNG state, the optimizer, the scheduler and the position in the seeded data order."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pandas as pd
import pytest
from ray import cloudpickle
from test_training_failover import DieOnceAfterCheckpoint
from transformers import TrainerCallback

from anchor_service.config import ClusterConfig, DPOConfig, TrackingConfig, TrainScaling
from anchor_service.core.prompts import explain_prompt
from anchor_service.demo.task import demo_response, generate_demo
from anchor_service.rundir import TRAIN_LOG_FILE
from anchor_service.schema import TRAIN_LOG_COLUMNS
from anchor_service.training import ray_trainer
from anchor_service.training.dpo import dpo_rows, tokenize_pair, train_dpo

# Workers cannot import this test module: ship the callback class by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

SEED = 11


class RecordReference(TrainerCallback):
    """Writes the reference log-probs each rank trains with (its dataset's cached columns)."""

    def __init__(self, out: Path) -> None:
        self.out = str(out)

    def on_train_begin(self, args, state, control, train_dataloader=None, **kwargs):
        import ray.train

        rank = ray.train.get_context().get_world_rank()
        data = train_dataloader.dataset
        Path(self.out).mkdir(parents=True, exist_ok=True)
        Path(self.out, f"rank-{rank}.json").write_text(
            json.dumps(
                {
                    "chosen": [float(x) for x in data["ref_chosen_logps"]],
                    "rejected": [float(x) for x in data["ref_rejected_logps"]],
                    "pid": os.getpid(),
                }
            )
        )


@pytest.fixture(scope="module")
def ray_local():
    import ray

    ray.init(num_cpus=ClusterConfig().num_cpus)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def pairs(random_model_dir) -> list[dict]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(random_model_dir)
    out = []
    for ex in generate_demo(16, seed=5, split="train"):
        prompt = tokenizer.apply_chat_template(
            explain_prompt(ex.question, ex.options), add_generation_prompt=True, tokenize=False
        )
        chosen, rejected = demo_response(ex), demo_response(ex, ["wrong_result"])
        out.append(
            {
                "prompt_id": ex.prompt_id,
                "prompt": prompt,
                "chosen": f"Answer: {chosen[0]}\nExplanation: {chosen[1]}",
                "rejected": f"Answer: {rejected[0]}\nExplanation: {rejected[1]}",
            }
        )
    return out


# 2 workers x 2 pairs = 4 pairs a step: 4 steps, checkpoints at steps 2 and 4.
CFG = DPOConfig(
    learning_rate=5e-3,
    batch_size=4,
    epochs=1,
    scaling=TrainScaling(num_workers=2, save_steps=2, max_failures=1, torch_threads=1),
)


@pytest.fixture(scope="module")
def straight(ray_local, random_model_dir, pairs, tmp_path_factory) -> Path:
    """The uninterrupted two-worker run, recording each rank's reference and reporting to
    TensorBoard (from rank 0 only)."""
    tmp = tmp_path_factory.mktemp("dpo-straight")
    return train_dpo(
        pairs,
        random_model_dir,
        tmp / "models" / "anchor",
        CFG,
        SEED,
        tmp / "ray",
        callbacks=[RecordReference(tmp / "reference")],
        tracking=TrackingConfig(report_to="tensorboard"),
    )


def test_reference_log_probs_are_computed_once_and_right_on_every_rank(
    straight, random_model_dir, pairs
):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from anchor_service.training.margins import _completion_logps

    ranks = [
        json.loads(p.read_text()) for p in sorted((straight.parents[1] / "reference").glob("*"))
    ]
    assert len(ranks) == 2 and ranks[0]["pid"] != ranks[1]["pid"]
    # One computation, shared: both ranks read the same cached values, bit for bit.
    assert ranks[0]["chosen"] == ranks[1]["chosen"]
    assert ranks[0]["rejected"] == ranks[1]["rejected"]
    # ... and they are the adapter-off (= sft) model's, computed here in one process.
    tokenizer = AutoTokenizer.from_pretrained(random_model_dir)
    sft = AutoModelForCausalLM.from_pretrained(random_model_dir, dtype=torch.float32).eval()
    for i, row in enumerate(dpo_rows(pairs, tokenizer)):
        prompt, chosen, rejected = tokenize_pair(tokenizer, row)
        with torch.no_grad():
            want = _completion_logps(sft, [(prompt, chosen), (prompt, rejected)], 0).tolist()
        # Relative: a sequence log-prob is a sum over hundreds of tokens, and TRL's batch
        # (other rows, other padding) sums in another order than this one-pair batch; fp32
        # then agrees to a few ulps of the total, ~1e-7 relative (-600.38537 vs -600.38525).
        assert [ranks[0]["chosen"][i], ranks[0]["rejected"][i]] == pytest.approx(want, rel=1e-5)


def test_tracking_reports_from_rank_zero_only(straight):
    events = list((straight.parents[1] / "tracking" / "tensorboard" / "anchor").glob("events.*"))
    assert len(events) == 1, events


def test_killed_worker_resumes_to_the_uninterrupted_adapter(
    straight, ray_local, random_model_dir, pairs, tmp_path
):
    from safetensors.torch import load_file

    marker = tmp_path / "died"
    killed = train_dpo(
        pairs,
        random_model_dir,
        tmp_path / "models" / "anchor",
        CFG,
        SEED,
        tmp_path / "ray",
        callbacks=[DieOnceAfterCheckpoint(marker, rank=1, step=3)],
    )
    assert marker.read_text() == "died at step 3 after 1 checkpoint(s)"
    summary = ray_trainer.read_summary(killed)
    assert summary["world_size"] == 2 and summary["model_wrapper"] == "DistributedDataParallel"
    assert (summary["resumed_from_step"], summary["global_step"]) == (2, 4)
    assert ray_trainer.read_summary(straight)["resumed_from_step"] == 0
    # What makes the resume exact: every checkpoint holds each rank's RNG state.
    checkpoints = sorted((tmp_path / "ray").glob("dpo-*/checkpoint_*/checkpoint"))
    assert checkpoints and all(
        {"rng_state_0.pth", "rng_state_1.pth", "optimizer.pt", "scheduler.pt"}
        <= {f.name for f in c.iterdir()}
        for c in checkpoints
    ), [sorted(f.name for f in c.iterdir()) for c in checkpoints]

    want = load_file(straight / "adapter_model.safetensors")
    got = load_file(killed / "adapter_model.safetensors")
    assert sorted(got) == sorted(want)
    different = [k for k in want if not (got[k] == want[k]).all()]
    assert not different, f"{len(different)} of {len(want)} tensors differ, e.g. {different[:3]}"

    # The per-step log of the resumed run is the uninterrupted run's, step for step.
    log = pd.read_parquet(killed / TRAIN_LOG_FILE)
    assert list(log.columns) == TRAIN_LOG_COLUMNS and list(log["step"]) == [1, 2, 3, 4]
    pd.testing.assert_frame_equal(log, pd.read_parquet(straight / TRAIN_LOG_FILE), check_exact=True)
    assert log["rewards/margins"].notna().all()
