"""Kill -9 at every step of the method, then resume (issue 18 item 3): the separate suite.

Each case kills a real run (`python -m jobs.run` on a `ray start` head, the fp32 tiny test
model) inside one step, with the kill hook of anchor_service/faults.py: SFT, sampling, the
debate, judging, each DPO, each evaluation stage (answers and scores of every model), the
judge's sanity check and the report. The rerun of the same command must give what the
uninterrupted run gave (tests/kill_run.py): every parquet's rows, pairs, stats, summary
numbers, report.md and stage fingerprints, and the trained weights bit for bit: fp32 on the
CPU is where docs/DESIGN.md ("Where batch independence holds") guarantees identical draws, and
a training run resumes from its registered checkpoint with its optimizer, scheduler, RNG state
and data order (the rerun must not start from step 0). No row may be lost or duplicated.

Marked `faults`: 46 minutes for the uninterrupted run and the 16 cases on a 2-core machine
shared with two other runs, so it runs as
`bash scripts/test-separate.sh faults`; tests/test_pipeline_job.py keeps two cases in CI.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from kill_run import KILL_POINTS, ROOT, kill_and_resume, run_command

# ray_head is test_pipeline_job's module fixture (a `ray start` head), used here too.
from test_pipeline_job import _env, ray_head, tiny_config  # noqa: F401

pytestmark = [pytest.mark.ray, pytest.mark.faults]


def faults_config(model_dir: Path) -> dict:
    """The CI job's config, with a checkpoint after every optimizer step of SFT and DPO, so a
    kill inside training lands after a checkpoint (SFT: 3 steps, DPO: 4-6 steps a strategy)."""
    cfg = tiny_config(model_dir)
    for section in ("sft", "dpo"):
        cfg[section]["scaling"] = {**cfg[section]["scaling"], "save_steps": 1}
    return cfg


@pytest.fixture(scope="module")
def faults_run(ray_head, tiny_model_dir: Path, tmp_path_factory) -> tuple[Path, Path]:  # noqa: F811
    """(the uninterrupted run directory, its config file): the whole method, run once.

    ANCHOR_FAULTS_BASELINE=DIR keeps that run in DIR and reuses it when it is finished there
    (a different config shows as different stage fingerprints, and the cases fail)."""
    base = tmp_path_factory.mktemp("faults")
    config = base / "faults.yaml"
    config.write_text(yaml.safe_dump(faults_config(tiny_model_dir)))
    out = Path(os.environ.get("ANCHOR_FAULTS_BASELINE") or base / "uninterrupted")
    if (out / "summary.json").is_file():
        return out, config
    env = _env() | {"RAY_ADDRESS": ray_head["gcs"]}
    done = subprocess.run(
        run_command(config, out), cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    return out, config


@pytest.mark.parametrize("step", list(KILL_POINTS))
def test_kill_inside_a_step_then_rerun_gives_the_uninterrupted_content(
    ray_head,  # noqa: F811
    faults_run,
    step: str,
    tmp_path: Path,
):
    finished, config = faults_run
    env = _env() | {"RAY_ADDRESS": ray_head["gcs"]}
    figures = kill_and_resume(finished, config, tmp_path / "run", step, env)
    sys.stderr.write(json.dumps(figures) + "\n")
