"""Kill -9 a run inside one step, rerun it, and compare it with an uninterrupted run.

Used by tests/test_faults.py (every step) and tests/test_pipeline_job.py (two of them in CI).

A case starts from a copy of a finished run directory with one step undone (its outputs and
its `state/` marker removed; Ray Train storage and part files are never copied), so that the
run recomputes exactly that step and skips every other one (their fingerprints are unchanged).
The run is a real driver process (`python -m jobs.run` on a `ray start` head) with the kill
hook set (anchor_service/faults.py): it SIGKILLs itself inside the step, after the first part
file of a Ray Data stage, the first registered checkpoint of a training run, or summary.json
of the report. The test checks it died there, reruns the same command without the hook, and
compares the rerun's content with the uninterrupted run's: every parquet's rows, the pairs,
stats, sanity.json, summary.json, report.md, each trained model's weights (bit for bit) and
every stage's fingerprint (`scripts/identity_check.py`; timings are not part of it).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from anchor_service.rundir import RunDir
from anchor_service.schema import SCORE_KEYS

ROOT = Path(__file__).resolve().parents[1]
STRATEGIES = ("anchor", "rank")
EVAL_MODELS = ("base", "sft", *STRATEGIES)

# Every step of the method's run (METHOD.md steps 0-7) and what kind of point the hook has in it.
KILL_POINTS: dict[str, str] = {
    "sft": "train",
    "sample": "data",
    "debate": "data",
    "judge": "data",
    **{f"dpo-{s}": "train" for s in STRATEGIES},
    **{f"eval-{what}-{m}": "data" for m in EVAL_MODELS for what in ("answers", "scores")},
    "sanity-alignment": "data",
    "report": "report",
}

# The columns that identify a row of each Ray Data stage's output.
SAMPLE_KEYS = ["prompt_id", "sample_idx"]


def _identity_check():
    spec = importlib.util.spec_from_file_location(
        "identity_check", ROOT / "scripts" / "identity_check.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


identity_check = _identity_check()


def step_outputs(run: Path, step: str) -> tuple[list[Path], list[str]]:
    """(files or folders the step writes, the row keys of its main output) for `step`."""
    rd = RunDir(run, create=False)
    if step == "report":
        return [rd.summary, rd.report_md, run / "report.html", run / "figures"], []
    if step == "sft":
        return [rd.model("sft")], []
    if step.startswith("dpo-"):
        return [rd.model(step.removeprefix("dpo-"))], []
    if step == "sample":
        return [rd.samples], SAMPLE_KEYS
    if step == "debate":
        return [rd.debates], ["prompt_id", "attempt"]
    if step == "judge":
        return [rd.scores], list(SCORE_KEYS)
    if step.startswith("eval-answers-"):
        return [rd.eval_answers(step.removeprefix("eval-answers-"))], SAMPLE_KEYS
    if step.startswith("eval-scores-"):
        return [rd.eval_scores(step.removeprefix("eval-scores-"))], list(SCORE_KEYS)
    if step.startswith("sanity-"):
        return [rd.sanity_scores(step.removeprefix("sanity-"))], list(SCORE_KEYS)
    raise ValueError(f"no kill point '{step}'")


def undo_step(finished: Path, work: Path, step: str) -> None:
    """`work` = a copy of the finished run with `step` undone (outputs and marker removed)."""
    shutil.copytree(finished, work, ignore=shutil.ignore_patterns("ray_train", "parts"))
    for path in step_outputs(work, step)[0]:
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    (work / "state" / f"{step}.json").unlink(missing_ok=True)


def run_command(config: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "jobs.run", "--config", str(config), "--out", str(out)]


def run_killed(cmd: list[str], env: dict[str, str], step: str, timeout_s: float = 900) -> str:
    """Run `cmd` with the kill hook at `step`; it must die of SIGKILL. Returns its log tail."""
    log = Path(cmd[-1]).with_suffix(".killed.log")
    with log.open("w") as fh:
        proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=env | {"ANCHOR_KILL_AT": f"{step}:1"},
            start_new_session=True,
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
        try:
            rc = proc.wait(timeout=timeout_s)
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # anything the driver left in its group
            except ProcessLookupError:
                pass
    tail = log.read_text()[-4000:]
    assert rc == -signal.SIGKILL, f"expected the run to be killed in {step}, rc={rc}:\n{tail}"
    return tail


def assert_killed_inside(run: Path, step: str, finished: Path) -> str:
    """The killed run stopped inside `step`: part of it written, its result not. Says how far."""
    kind = KILL_POINTS[step]
    outputs, keys = step_outputs(run, step)
    assert not (run / "state" / f"{step}.json").exists(), f"{step} was marked done"
    if kind == "report":
        assert outputs[0].is_file() and not outputs[1].exists(), "not killed inside the report"
        return "summary.json written, report.md not"
    assert not outputs[0].exists(), f"killed too late: {outputs[0]} was written"
    if kind == "train":
        snapshots = list((run / "ray_train").glob("*/checkpoint_manager_snapshot.json"))
        assert snapshots, "no Ray Train run with a registered checkpoint"
        ckpts = [json.loads(p.read_text()).get("checkpoint_results", []) for p in snapshots]
        assert any(ckpts), f"no checkpoint registered before the kill: {snapshots}"
        return f"{max(len(c) for c in ckpts)} checkpoint(s) registered"
    parts = sorted((run / "parts" / step).glob("part-*.parquet"))
    assert parts, f"no part file of {step} before the kill"
    written = pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)
    total = pd.read_parquet(step_outputs(finished, step)[0][0])
    assert not written.duplicated(subset=keys).any(), "duplicated rows among the parts"
    return f"{len(written)} of {len(total)} rows written in {len(parts)} part(s)"


def rerun(cmd: list[str], env: dict[str, str], timeout_s: float = 900) -> None:
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout_s)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]


def assert_same_content(run: Path, finished: Path, step: str) -> None:
    """The resumed run's content equals the uninterrupted run's; the step's rows exactly once."""
    got, want = identity_check.content(run), identity_check.content(finished)
    diffs = identity_check.compare(identity_check.digest(got), identity_check.digest(want))
    assert not diffs, "\n".join(diffs)
    outputs, keys = step_outputs(run, step)
    if keys:
        df = pd.read_parquet(outputs[0])
        assert not df.duplicated(subset=keys).any(), f"duplicated rows in {outputs[0]}"
    assert not (run / "parts" / step).exists(), "the step's part files were left behind"


def resumed_from_step(run: Path, step: str) -> int:
    """The optimizer step the rerun's training resumed from (its training_summary.json)."""
    from anchor_service.training.ray_trainer import read_summary

    return int(read_summary(step_outputs(run, step)[0][0])["resumed_from_step"])


def kill_and_resume(
    finished: Path, config: Path, work: Path, step: str, env: dict[str, str]
) -> dict[str, object]:
    """The whole case: undo, run killed inside `step`, check, rerun, compare. Returns figures."""
    t0 = time.monotonic()
    undo_step(finished, work, step)
    cmd = run_command(config, work)
    run_killed(cmd, env, step)
    where = assert_killed_inside(work, step, finished)
    t_killed = time.monotonic()
    rerun(cmd, env)
    assert_same_content(work, finished, step)
    out: dict[str, object] = {"step": step, "killed": where}
    if KILL_POINTS[step] == "train":
        out["resumed_from_step"] = resumed_from_step(work, step)
        assert out["resumed_from_step"] >= 1, "the rerun trained from scratch"
    out["seconds"] = {"killed": round(t_killed - t0), "rerun": round(time.monotonic() - t_killed)}
    return out
