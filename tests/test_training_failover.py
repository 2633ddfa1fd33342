"""Ray Train failover: a worker dies once after a checkpoint; training resumes from it and ends."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from ray import cloudpickle
from transformers import TrainerCallback

from anchor_service.config import ClusterConfig, SFTConfig, TrainScaling
from anchor_service.demo.task import generate_demo
from anchor_service.training import ray_trainer
from anchor_service.training.sft import train_sft

# Workers cannot import this test module: ship the callback class by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


class DieOnceAfterCheckpoint(TrainerCallback):
    """Kills one rank's process (no cleanup, as a crash would) at a step past a checkpoint."""

    def __init__(self, marker: Path, rank: int, step: int) -> None:
        self.marker, self.rank, self.step = str(marker), rank, step

    def on_step_end(self, args, state, control, **kwargs):
        import ray.train

        if (
            state.global_step == self.step
            and ray.train.get_context().get_world_rank() == self.rank
            and not os.path.exists(self.marker)
        ):
            # Die only once the controller has registered the checkpoint (it polls reports
            # asynchronously); a crash before that rightly resumes from the one before.
            registered = ray.train.get_all_reported_checkpoints(timeout_s=120)
            Path(self.marker).write_text(
                f"died at step {state.global_step} after {len(registered)} checkpoint(s)"
            )
            os._exit(1)


@pytest.fixture(scope="module")
def ray_local():
    import ray

    ray.init(num_cpus=ClusterConfig().num_cpus)
    yield
    ray.shutdown()


def test_worker_crash_resumes_from_last_checkpoint_and_finishes(
    ray_local, random_model_dir, tmp_path
):
    from transformers import AutoModelForCausalLM

    examples = generate_demo(16, seed=9, split="train")
    # 2 workers x 2 examples = 4 per step: 4 steps, checkpoints at steps 2 and 4.
    cfg = SFTConfig(
        use_lora=False,
        learning_rate=1e-3,
        batch_size=4,
        epochs=1,
        scaling=TrainScaling(num_workers=2, save_steps=2, max_failures=1, torch_threads=1),
    )
    marker = tmp_path / "died"
    out = train_sft(
        examples,
        random_model_dir,
        tmp_path / "sft",
        cfg,
        3,
        tmp_path / "ray",
        callbacks=[DieOnceAfterCheckpoint(marker, rank=1, step=3)],
    )

    assert marker.read_text() == "died at step 3 after 1 checkpoint(s)"
    summary = ray_trainer.read_summary(out)
    assert summary["world_size"] == 2
    assert summary["model_wrapper"] == "DistributedDataParallel"
    assert summary["resumed_from_step"] == 2
    assert summary["global_step"] == 4
    assert AutoModelForCausalLM.from_pretrained(out) is not None


def _crashing_loop(config: dict) -> None:
    os._exit(1)


def test_run_fails_with_training_error_when_failures_exceed_the_limit(ray_local, tmp_path):
    scaling = TrainScaling(num_workers=1, max_failures=0)
    with pytest.raises(ray_trainer.TrainingError, match="'crash' failed after 0 allowed worker"):
        ray_trainer.fit_on_ray(_crashing_loop, {}, scaling, tmp_path / "ray", "crash")
