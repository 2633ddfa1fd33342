"""Tracking: every trainer keeps its per-step log in the run directory whatever `report_to`
says; TensorBoard, W&B (offline) and MLflow (file store) get the same steps from rank 0; the
report draws the DPO curves per strategy from the logs."""

from __future__ import annotations

import importlib.util
import os
import struct
from pathlib import Path

import pandas as pd
import pytest

from anchor_service.config import ClusterConfig, SFTConfig, TrackingConfig, TrainScaling
from anchor_service.demo.task import generate_demo
from anchor_service.rundir import RunDir
from anchor_service.schema import TRAIN_LOG_COLUMNS
from anchor_service.training.sft import train_sft

# The trackers installed here (tensorboard writes through tensorboardX, a Ray dependency).
TRACKERS = [
    name
    for name, module in (("tensorboard", "tensorboardX"), ("wandb", "wandb"), ("mlflow", "mlflow"))
    if importlib.util.find_spec(module) is not None
]
# W&B never goes online in a test; the workers inherit this when the local cluster starts.
OFFLINE_ENV = {"WANDB_MODE": "offline", "WANDB_SILENT": "true"}


@pytest.fixture(scope="module")
def ray_local():
    import ray

    saved = {k: os.environ.get(k) for k in OFFLINE_ENV}
    os.environ.update(OFFLINE_ENV)
    ray.init(num_cpus=ClusterConfig().num_cpus)
    yield
    ray.shutdown()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def tensorboard_scalars(event_file: Path) -> dict[str, list[tuple[int, float]]]:
    """The scalar series of a TensorBoard event file (TFRecord framing, Event protos)."""
    from tensorboardX.proto.event_pb2 import Event

    data, out, at = event_file.read_bytes(), {}, 0
    while at < len(data):
        (length,) = struct.unpack("<Q", data[at : at + 8])
        event = Event.FromString(data[at + 12 : at + 12 + length])
        at += 12 + length + 4
        for value in event.summary.value:
            out.setdefault(value.tag, []).append((event.step, value.simple_value))
    return out


def test_sft_log_is_kept_and_reported_to_every_installed_tracker(
    ray_local, random_model_dir, tmp_path, monkeypatch
):
    run = RunDir(tmp_path / "run")
    cfg = SFTConfig(
        learning_rate=5e-3,
        batch_size=4,
        epochs=1,
        scaling=TrainScaling(torch_threads=1, max_failures=0),
    )
    out = train_sft(
        generate_demo(8, seed=3, split="train"),
        random_model_dir,
        run.model("sft"),
        cfg,
        7,
        run.train_storage,
        tracking=TrackingConfig(report_to=TRACKERS, project="anchor-test"),
        tracking_dir=run.tracking,
    )
    log = pd.read_parquet(run.train_log("sft"))
    assert out == run.model("sft") and run.trained_models() == ["sft"]
    assert list(log.columns) == TRAIN_LOG_COLUMNS and list(log["step"]) == [1, 2]
    assert log["loss"].notna().all() and log["learning_rate"].gt(0).all()
    assert log["rewards/margins"].isna().all()  # SFT has no rewards

    (events,) = (run.tracking / "tensorboard" / "sft").glob("events.*")
    scalars = tensorboard_scalars(events)
    assert scalars["train/loss"] == [
        (s, pytest.approx(v, rel=1e-6)) for s, v in zip(log["step"], log["loss"], strict=True)
    ]
    if "wandb" in TRACKERS:
        (offline_run,) = (run.tracking / "wandb").glob("offline-run-*")
        assert list(offline_run.glob("*.wandb")), list(offline_run.iterdir())
    if "mlflow" in TRACKERS:
        import mlflow

        # Reading the store here; the worker allowed itself the file store it wrote.
        monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
        client = mlflow.MlflowClient(tracking_uri=(run.tracking / "mlruns").as_uri())
        experiment = client.get_experiment_by_name("anchor-test")
        (mlrun,) = client.search_runs([experiment.experiment_id])
        assert mlrun.info.run_name == "sft"
        history = client.get_metric_history(mlrun.info.run_id, "loss")
        assert [(m.step, m.value) for m in history] == [
            (s, pytest.approx(v, rel=1e-6)) for s, v in zip(log["step"], log["loss"], strict=True)
        ]


def test_report_draws_dpo_curves_per_strategy_from_the_logs(tmp_path):
    from anchor_service.report.figures import dpo_curves
    from anchor_service.schema import train_log_frame

    run = RunDir(tmp_path)
    assert dpo_curves(tmp_path, tmp_path / "f.png") is None
    for strategy, margin in (("anchor", 0.2), ("rank", 0.1), ("sft", None)):
        history = [
            {
                "step": s,
                "epoch": s / 3,
                "loss": 0.7 - 0.1 * s,
                "learning_rate": 1e-4,
                "grad_norm": 1.0,
                "rewards/margins": None if margin is None else margin * s,
            }
            for s in (1, 2, 3)
        ] + [{"train_runtime": 1.0, "train_loss": 0.5, "step": 3}]
        run.model(strategy).mkdir(parents=True)
        train_log_frame(history).to_parquet(run.train_log(strategy))
    assert run.trained_models() == ["anchor", "rank", "sft"]
    assert len(pd.read_parquet(run.train_log("anchor"))) == 3  # the summary entry is no step
    path = dpo_curves(tmp_path, tmp_path / "figures" / "dpo_training.png")
    assert path is not None and path.stat().st_size > 1000
