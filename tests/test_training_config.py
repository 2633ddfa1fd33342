"""`trainer_args` and `tracking`: checked against TRL when the config loads, one place per knob,
fingerprints of existing run directories unchanged, and the order TRL's arguments resolve in."""

from __future__ import annotations

from pathlib import Path

import pytest

from anchor_service.config import (
    ConfigError,
    DPOConfig,
    SFTConfig,
    TrackingConfig,
    TrainScaling,
    load_config,
)
from anchor_service.training import ray_trainer
from anchor_service.training.dpo import DPO
from anchor_service.training.sft import SFT
from anchor_service.training.trainer import trl_arguments


def _load(tmp_path: Path, text: str):
    f = tmp_path / "c.yaml"
    f.write_text(text)
    return load_config(f)


def test_a_mistyped_trainer_arg_names_the_key_and_close_matches(tmp_path):
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, "dpo:\n  trainer_args:\n    lr_scheduler_typ: cosine\n")
    msg = str(err.value)
    assert "'dpo.trainer_args'" in msg
    assert "'lr_scheduler_typ' is not an argument of trl.DPOConfig" in msg
    assert "did you mean 'lr_scheduler_type'" in msg


def test_a_trainer_arg_that_a_field_or_tracking_sets_is_refused(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_config(
            None,
            [
                "sft.trainer_args.learning_rate=0.1",
                "sft.trainer_args.report_to=wandb",
                "sft.trainer_args.save_steps=5",
                "sft.trainer_args.seed=3",
            ],
        )
    msg = str(err.value)
    assert "'learning_rate' is set by sft.learning_rate" in msg
    assert "'report_to' is set by tracking.report_to" in msg
    assert "'save_steps' is set by sft.scaling.save_steps" in msg
    assert "'seed' is set by run_seed" in msg
    with pytest.raises(ConfigError, match="'beta' is set by dpo.beta"):
        load_config(None, ["dpo.trainer_args.beta=0.5"])


def test_fsdp_and_deepspeed_arguments_pass_validation(tmp_path):
    """Only the names can be checked here: FSDP and DeepSpeed need GPUs to run."""
    cfg = _load(
        tmp_path,
        "sft:\n  trainer_args:\n    fsdp: full_shard auto_wrap\n"
        "    fsdp_config: {transformer_layer_cls_to_wrap: [LlamaDecoderLayer]}\n"
        "dpo:\n  trainer_args:\n    deepspeed: ds_zero3.json\n    bf16: true\n",
    )
    assert cfg.sft.trainer_args["fsdp"] == "full_shard auto_wrap"
    assert cfg.dpo.trainer_args == {"deepspeed": "ds_zero3.json", "bf16": True}


def test_resolution_order_skeleton_section_tracking_trainer_args(tmp_path):
    cfg = DPOConfig(
        batch_size=8,
        learning_rate=1e-4,
        scaling=TrainScaling(num_workers=2),
        trainer_args={
            "gradient_accumulation_steps": 2,
            "gradient_checkpointing": True,  # the skeleton's CPU default is off
            "loss_type": ["ipo"],  # the method's sigmoid
            "lr_scheduler_type": "constant",
        },
    )
    tracking = {"report_to": ["tensorboard"], "run_name": "anchor"}
    args = trl_arguments(DPO, cfg, 5, str(tmp_path), tracking)
    assert args.learning_rate == 1e-4 and args.beta == cfg.beta and args.seed == 5
    # 8 pairs a step = 2 workers x 2 accumulation steps x 2 per forward pass.
    assert args.per_device_train_batch_size == 2 and args.gradient_accumulation_steps == 2
    assert args.report_to == ["tensorboard"] and args.run_name == "anchor"
    assert args.gradient_checkpointing is True and args.loss_type == ["ipo"]
    assert args.lr_scheduler_type == "constant"
    plain = trl_arguments(SFT, SFTConfig(), 0, str(tmp_path))
    assert plain.report_to == [] or plain.report_to in ("none", ["none"])
    assert plain.completion_only_loss is True and plain.gradient_checkpointing is False


def test_per_device_batch_divides_over_workers_and_accumulation():
    two = TrainScaling(num_workers=2)
    assert ray_trainer.per_device_batch(8, two, "dpo.batch_size", 2) == 2
    with pytest.raises(ValueError, match="gradient_accumulation_steps=4"):
        ray_trainer.per_device_batch(4, two, "dpo.batch_size", 4)


def test_new_knobs_leave_existing_fingerprints_alone():
    assert "trainer_args" not in SFTConfig().result_dump()
    assert "trainer_args" not in DPOConfig().result_dump()
    assert DPOConfig(trainer_args={"warmup_steps": 2}).result_dump()["trainer_args"] == {
        "warmup_steps": 2
    }
    # tracking is its own section and cannot change a result.
    assert TrackingConfig(report_to="tensorboard").result_dump() == {}


@pytest.mark.parametrize(
    ("value", "trackers"),
    [
        ("none", []),
        ("tensorboard", ["tensorboard"]),
        (["wandb", "mlflow", "wandb"], ["wandb", "mlflow"]),
    ],
)
def test_report_to_is_one_tracker_or_a_list(value, trackers):
    assert TrackingConfig(report_to=value).trackers() == trackers


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("tracking.report_to=[none, wandb]", "'none' cannot be combined"),
        ("tracking.report_to=[]", "an empty list"),
        ("tracking.report_to=comet", "tracking.report_to"),
        ("tracking.report_too=wandb", "did you mean 'tracking.report_to'"),
    ],
)
def test_bad_report_to_is_a_config_error(override, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        load_config(None, [override])
