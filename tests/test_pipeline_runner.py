"""run_stage on a real local Ray cluster: each actor call gets exactly one planned batch (the
composition a resumed run relies on), and a GPU stage's dataset is accepted by Ray Data.

The stage here is a recording stand-in (orchestration only); the engines' own stages run in
test_pipeline_job.py.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from anchor_service.config import StageResources
from anchor_service.rundir import RunDir


class RecordBatch:
    """Writes, for every row, the first key and the size of the batch it arrived in."""

    COLUMNS = ["prompt_id", "batch_first", "batch_len"]

    def __init__(self, label: str = ""):
        self.label = label

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "prompt_id": batch["prompt_id"],
                "batch_first": batch["prompt_id"].iloc[0],
                "batch_len": len(batch),
            }
        )


def _rows(n: int) -> pd.DataFrame:
    return pd.DataFrame({"prompt_id": [f"p/{i}" for i in range(n)]})


def _run(rundir: RunDir, rows: pd.DataFrame, batch_size: int) -> pd.DataFrame:
    from anchor_service.pipeline.runner import StageSpec, run_stage

    spec = StageSpec(
        name="record",
        rows=rows,
        keys=("prompt_id",),
        stage_cls=RecordBatch,
        args={},
        resources=StageResources(actors=1, batch_size=batch_size, num_cpus=0.5),
        out_path=rundir.root / "record.parquet",
        fingerprint_parts=("fp",),
        progress=False,
    )
    return run_stage(rundir, spec)


def _batches(out: pd.DataFrame) -> dict[str, list[str]]:
    return {
        first: sorted(group["prompt_id"], key=lambda s: int(s.split("/")[1]))
        for first, group in out.groupby("batch_first")
    }


@pytest.mark.ray
def test_each_call_gets_one_planned_batch_also_when_resumed(local_ray, tmp_path: Path):
    # 10 rows in batches of 4: p/0-3, p/4-7, p/8-9 (natural key order), each its own call.
    planned = {
        "p/0": ["p/0", "p/1", "p/2", "p/3"],
        "p/4": ["p/4", "p/5", "p/6", "p/7"],
        "p/8": ["p/8", "p/9"],
    }
    out = _run(RunDir(tmp_path / "fresh"), _rows(10), 4)
    assert _batches(out) == planned
    assert (out.groupby("batch_first")["batch_len"].first() == [4, 4, 2]).all()

    # A run cut off after the middle batch: the first and the short last batch remain to do,
    # and still arrive as the planned batches (not re-cut into one call of 4 + 2).
    resumed = RunDir(tmp_path / "resumed")
    parts = resumed.open_parts("record", "fp")
    middle = pd.DataFrame({"prompt_id": planned["p/4"], "batch_first": "p/4", "batch_len": 4})
    middle.to_parquet(parts / "part-middle.parquet")
    out = _run(resumed, _rows(10), 4)
    assert _batches(out) == planned


@pytest.mark.ray
def test_a_gpu_stage_dataset_is_accepted_by_ray_data(local_ray):
    """Ray Data refuses map_batches(batch_size=None) for actors asking for GPUs; found on an
    H100 (bench/gpu.sh). The dataset is only built here: this machine has no GPU to run it."""
    from anchor_service.pipeline.runner import stage_dataset

    todo = [_rows(10).iloc[0:4], _rows(10).iloc[4:8], _rows(10).iloc[8:10]]
    ds = stage_dataset(
        todo,
        RecordBatch,
        {},
        StageResources(actors=1, batch_size=4, num_gpus=1),
        {"num_cpus": 1, "num_gpus": 1},
    )
    assert ds is not None


class TwoAttempts:
    """Writes two rows per input row, as the debate stage writes one row per attempt."""

    COLUMNS = ["prompt_id", "attempt"]

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "prompt_id": list(batch["prompt_id"]) * 2,
                "attempt": [0] * len(batch) + [1] * len(batch),
            }
        )


@pytest.mark.ray
def test_progress_counts_input_rows_never_past_the_total(local_ray, tmp_path: Path, caplog):
    # A debate writes several rows per prompt: counting written rows would pass the total.
    import logging

    from anchor_service.pipeline.runner import StageSpec, run_stage

    rundir = RunDir(tmp_path / "run")
    spec = StageSpec(
        name="attempts",
        rows=_rows(10),
        keys=("prompt_id",),
        out_keys=("prompt_id", "attempt"),
        stage_cls=TwoAttempts,
        args={},
        resources=StageResources(actors=1, batch_size=4, num_cpus=0.5),
        out_path=rundir.root / "attempts.parquet",
        fingerprint_parts=("fp",),
    )
    with caplog.at_level(logging.INFO, logger="anchor_service.progress"):
        out = run_stage(rundir, spec)
    assert len(out) == 20
    lines = [r.getMessage() for r in caplog.records if r.name == "anchor_service.progress"]
    assert lines[0] == "attempts: 10 rows to do"
    assert lines[-1].startswith("attempts: 10/10 rows done in ")
    done = [int(m.split(": ")[1].split("/")[0]) for m in lines if "/10 rows done" in m]
    assert done == sorted(done) and max(done) == 10
