"""The method as a real Ray job: `ray start --head`, `ray job submit`, kill -9 and resume.

One session-scoped local head serves every test here; the tiny trained test model (conftest)
plays policy, debater and judge so a whole run takes a few minutes on 2 cores.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from anchor_service.core.types import CATEGORIES
from anchor_service.evaluation.stats import accuracy

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.ray


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Ray 2.60 turns token authentication on for local clusters: the head, `ray job submit` and
# every driver of these tests share one token, as a user's shell would.
_TOKEN = secrets.token_hex(32)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["RAY_AUTH_MODE"] = "token"
    env["RAY_AUTH_TOKEN"] = _TOKEN
    # `python` in the job entrypoint must be this interpreter (the job inherits raylet's PATH).
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    env.pop("RAY_ADDRESS", None)
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    return env


@pytest.fixture(scope="module")
def ray_head():
    """A real local Ray head (`ray start --head --block`) in a short temporary directory.

    Every port is chosen free (other Ray clusters may run on this machine), and teardown kills
    only this head's process group: `ray stop` would stop every Ray cluster of the machine.
    Ray gives its raylet a fixed 30 s to register ("The current node timed out during
    startup"), which a loaded 2-core machine can miss, so a head that exits while starting is
    started again (3 tries) and its own output is in the failure message.
    """
    for attempt in range(1, 4):
        head, address, temp = _start_head()
        try:
            if _wait_for_job_agent(address["dashboard"], head):
                break
        except BaseException:
            _stop_head(head, temp)
            raise
        log = (Path(temp) / "head.log").read_text(errors="replace")[-3000:]
        _stop_head(head, temp)
        assert attempt < 3, f"ray start --head exited on 3 tries; the last said:\n{log}"
        sys.stderr.write(f"ray start --head exited (try {attempt} of 3), starting again\n")
    try:
        yield address
    finally:
        _stop_head(head, temp)


def _start_head() -> tuple[subprocess.Popen, dict[str, str], str]:
    temp = tempfile.mkdtemp(prefix="rayt", dir="/tmp")  # unix socket paths must stay short
    gcs, dash = _free_port(), _free_port()
    ray = str(Path(sys.executable).parent / "ray")
    ports = {
        "--dashboard-agent-listen-port": _free_port(),
        "--dashboard-agent-grpc-port": _free_port(),
        "--runtime-env-agent-port": _free_port(),
        "--metrics-export-port": _free_port(),
    }
    with open(Path(temp) / "head.log", "wb") as log:
        head = subprocess.Popen(
            [
                ray,
                "start",
                "--head",
                "--block",
                f"--port={gcs}",
                "--num-cpus=4",
                f"--temp-dir={temp}",
                "--include-dashboard=true",
                "--dashboard-host=127.0.0.1",
                f"--dashboard-port={dash}",
                "--disable-usage-stats",
                *(f"{k}={v}" for k, v in ports.items()),
            ],
            env=_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return head, {"gcs": f"127.0.0.1:{gcs}", "dashboard": f"http://127.0.0.1:{dash}"}, temp


def _stop_head(head: subprocess.Popen, temp: str) -> None:
    # The whole process group, even when `ray start` itself has exited: the GCS server and
    # raylet it started may still be running in it.
    try:
        os.killpg(head.pid, signal.SIGTERM)
        head.wait(timeout=60)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(head.pid, signal.SIGKILL)
    shutil.rmtree(temp, ignore_errors=True)


def _wait_for_job_agent(dashboard: str, head: subprocess.Popen) -> bool:
    """True once `ray job list` answers (the head's job agent has registered); False if the
    head exited first."""
    ray = str(Path(sys.executable).parent / "ray")
    deadline = time.monotonic() + 180
    while True:
        if head.poll() is not None:
            return False
        probe = subprocess.run(
            [ray, "job", "list", "--address", dashboard],
            env=_env(),
            capture_output=True,
            timeout=60,
        )
        if probe.returncode == 0:
            return True
        assert time.monotonic() < deadline, probe.stderr.decode()[-2000:]
        time.sleep(2)


_DEMO = {"n_train": 24, "seed": 7}
_SAMPLES, _MAX_TOKENS = 4, 40
# Tried lowest first; each is a run of the sample stage on the training questions (~20 s).
_TEMPERATURES = (0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.7)
_MIN_PER_CATEGORY = 2  # a margin: one prompt on a near-tie could flip between machines


def _tiny_model_spec(model_dir: Path) -> dict:
    return {"name": str(model_dir), "dtype": "float32", "batch_size": 32, "max_model_len": 512}


@functools.cache
def category_temperature(model_dir: Path) -> float:
    """The lowest sampling temperature at which the tiny model's samples (the sample stage
    itself, run seed 0) put at least `_MIN_PER_CATEGORY` training prompts in every category.

    Cached beside the model (it is fixed for a model), so only the first test session on a
    machine pays for it. No temperature that does: an error naming what each one gave.
    """
    from anchor_service.demo.task import generate_demo
    from anchor_service.pipeline.sample import SampleStage
    from anchor_service.schema import sample_input

    probe = {
        "demo": _DEMO,
        "n": _SAMPLES,
        "max_tokens": _MAX_TOKENS,
        "t": _TEMPERATURES,
        "min": _MIN_PER_CATEGORY,
    }
    key = hashlib.sha256(json.dumps(probe, sort_keys=True).encode()).hexdigest()[:12]
    cached = Path(model_dir) / f"category-temperature-{key}.json"
    if cached.is_file():
        return json.loads(cached.read_text())["temperature"]
    examples = generate_demo(_DEMO["n_train"], _DEMO["seed"], "train")
    rows = sample_input(examples, _SAMPLES)
    tried = {}
    for t in _TEMPERATURES:
        stage = SampleStage(_tiny_model_spec(model_dir), "policy", 0, t, 1.0, _MAX_TOKENS)
        samples = stage(rows)
        right = samples.groupby("prompt_id")["correct"].sum()
        counts = {
            "consistently_correct": int((right == _SAMPLES).sum()),
            "variable": int(((right > 0) & (right < _SAMPLES)).sum()),
            "consistently_incorrect": int((right == 0).sum()),
        }
        tried[t] = counts
        if min(counts.values()) >= _MIN_PER_CATEGORY:
            tmp = cached.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"temperature": t, "categories": counts}))
            os.replace(tmp, cached)
            return t
    raise AssertionError(
        f"the tiny model {model_dir} gives no temperature with {_MIN_PER_CATEGORY}+ training "
        f"prompts in every category: {tried}"
    )


def tiny_config(model_dir: Path) -> dict:
    """A whole-method config small enough for CI, on the tiny trained test model.

    The tiny model is close to guessing, so sampling is nearly greedy: prompts it happens to
    get right come out consistently correct, others consistently incorrect or variable. Keyed
    sampling makes the categories the same on every run of one model, but the model is
    trained on the machine and comes out different on another CPU, so the temperature is the
    lowest that gives this model every category (`category_temperature`).
    """
    model = _tiny_model_spec(model_dir)
    res = {"actors": 1, "batch_size": 8, "num_cpus": 1, "torch_threads": 2}
    train_scaling = {"num_workers": 1, "cpus_per_worker": 1, "torch_threads": 2}
    return {
        "run_seed": 0,
        "data": {"source": "demo", "demo": {**_DEMO, "n_test": 12}},
        "policy": model,
        "judge": {"mode": "probability", "model": model},
        "sampling": {
            "n": _SAMPLES,
            "temperature": category_temperature(model_dir),
            "top_p": 1.0,
            "max_tokens": _MAX_TOKENS,
        },
        "debate": {"max_retries": 2, "temperature": 0.7},
        "pairs": {"strategies": ["anchor", "rank"], "min_pairs": 2},
        "sft": {
            "use_lora": False,
            "learning_rate": 1e-4,
            "batch_size": 8,
            "epochs": 1,
            "max_length": 256,
            "scaling": train_scaling,
        },
        "dpo": {
            "learning_rate": 5e-4,
            "batch_size": 4,
            "epochs": 1,
            "max_length": 320,
            "scaling": train_scaling,
        },
        "pipeline": {"sample": res, "debate": res, "judge": {**res, "batch_size": 4}},
        "evaluation": {"bootstrap": 200},
    }


@pytest.fixture(scope="session")
def tiny_config_file(tiny_model_dir: Path, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cfg") / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_config(tiny_model_dir)))
    return path


@pytest.fixture(scope="module")
def submitted_run(ray_head, tiny_config_file: Path, tmp_path_factory) -> Path:
    """The whole method submitted with `ray job submit`, waited on until it succeeds."""
    out = tmp_path_factory.mktemp("job") / "run"
    ray = str(Path(sys.executable).parent / "ray")
    cmd = [
        ray,
        "job",
        "submit",
        "--address",
        ray_head["dashboard"],
        "--working-dir",
        ".",
        "--",
        "python",
        "-m",
        "jobs.run",
        "--config",
        str(tiny_config_file),
        "--out",
        str(out),
    ]
    # Right after `ray start` the head's job agent may not have registered yet.
    for _ in range(30):
        proc = subprocess.run(
            cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=1200
        )
        if "No available agent" not in proc.stderr:
            break
        time.sleep(2)
    tail = (proc.stdout + proc.stderr)[-6000:]
    assert proc.returncode == 0, f"ray job submit failed:\n{tail}"
    assert "succeeded" in (proc.stdout + proc.stderr).lower(), tail
    return out


def test_submitted_job_writes_the_file_contract(submitted_run: Path):
    run = submitted_run
    for name in ("config.yaml", "samples.parquet", "debates.parquet", "scores.parquet"):
        assert (run / name).is_file(), name
    for strategy in ("anchor", "rank"):
        assert (run / f"pairs-{strategy}.parquet").is_file()
        assert (run / f"stats-{strategy}.json").is_file()
    assert (run / "summary.json").is_file() and (run / "report.md").is_file()


def test_every_category_present_and_pairs_for_each_strategy(submitted_run: Path):
    stats = json.loads((submitted_run / "stats-anchor.json").read_text())
    for c in CATEGORIES:
        assert stats["prompts"][c] > 0, f"no {c} prompt: {stats['prompts']}"
    for strategy in ("anchor", "rank"):
        pairs = pd.read_parquet(submitted_run / f"pairs-{strategy}.parquet")
        assert len(pairs) > 0
        assert pairs["prompt_id"].is_unique
        assert (pairs["chosen"] != pairs["rejected"]).all()


def test_summary_equals_numbers_recomputed_from_the_files(submitted_run: Path):
    run = submitted_run
    summary = json.loads((run / "summary.json").read_text())
    samples = pd.read_parquet(run / "samples.parquet")
    n_samples = len(samples) // samples["prompt_id"].nunique()
    counts = dict.fromkeys(CATEGORIES, 0)
    for _, g in samples.groupby("prompt_id"):
        c = int(g["correct"].sum())
        counts[
            "consistently_correct"
            if c == n_samples
            else "consistently_incorrect"
            if c == 0
            else "variable"
        ] += 1
    assert summary["categories"] == counts
    for strategy in ("anchor", "rank"):
        pairs = pd.read_parquet(run / f"pairs-{strategy}.parquet")
        n = len(pairs)
        anchored = int(pairs["category"].isin(["variable", "consistently_incorrect"]).sum())
        assert summary["pairs"][strategy] == n
        assert summary["lambda"][strategy] == pytest.approx(anchored / n)
    for model, acc in summary["accuracy"].items():
        answers = pd.read_parquet(run / "eval" / f"answers-{model}.parquet")
        assert acc == pytest.approx(accuracy(list(answers["correct"])))


def test_each_dpo_adapter_raises_the_implicit_reward_margin(submitted_run: Path):
    from anchor_service.training.margins import implicit_reward_margins

    summary = json.loads((submitted_run / "summary.json").read_text())
    cfg = yaml.safe_load((submitted_run / "config.yaml").read_text())
    trained = [s for s in ("anchor", "rank") if s not in summary["dpo_skipped"]]
    assert trained, "no strategy reached min_pairs"
    for strategy in trained:
        pairs = pd.read_parquet(submitted_run / f"pairs-{strategy}.parquet").to_dict("records")
        margins = implicit_reward_margins(
            submitted_run / "models" / strategy,
            submitted_run / "models" / "sft",
            pairs,
            beta=cfg["dpo"]["beta"],
        )
        assert sum(margins) / len(margins) > 0, f"{strategy}: mean margin {margins}"


def test_report_rebuilds_the_same_summary(submitted_run: Path, tmp_path: Path):
    copy = tmp_path / "run"
    shutil.copytree(submitted_run, copy, ignore=shutil.ignore_patterns("models", "ray_train"))
    before = json.loads((copy / "summary.json").read_text())
    (copy / "summary.json").unlink()
    (copy / "report.md").unlink()
    from anchor_service.cli.main import main

    assert main(["report", str(copy)]) == 0
    assert json.loads((copy / "summary.json").read_text()) == before


def test_kill_during_judging_then_resume_gives_identical_pairs(
    ray_head, submitted_run: Path, tiny_config_file: Path, tmp_path: Path
):
    out = tmp_path / "run"
    env = _env() | {"RAY_ADDRESS": ray_head["gcs"]}
    cmd = [
        sys.executable,
        "-m",
        "jobs.build_pairs",
        "--config",
        str(tiny_config_file),
        "--out",
        str(out),
    ]
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    parts = out / "parts" / "judge"
    deadline = time.monotonic() + 900
    try:
        while not list(parts.glob("part-*.parquet")):
            assert proc.poll() is None, "the run ended before the judge stage wrote a part"
            assert time.monotonic() < deadline, "judge stage never started"
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    assert not (out / "scores.parquet").exists(), "killed too late: judging had finished"
    written = pd.concat([pd.read_parquet(p) for p in parts.glob("part-*.parquet")])
    assert 0 < len(written)

    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    scores = pd.read_parquet(out / "scores.parquet")
    keys = scores[["prompt_id", "source", "sample_idx"]]
    assert not keys.duplicated().any()
    reference = pd.read_parquet(submitted_run / "scores.parquet")
    assert len(scores) == len(reference)
    for strategy in ("anchor", "rank"):
        got = pd.read_parquet(out / f"pairs-{strategy}.parquet")
        want = pd.read_parquet(submitted_run / f"pairs-{strategy}.parquet")
        pd.testing.assert_frame_equal(got, want)
        assert json.loads((out / f"stats-{strategy}.json").read_text()) == json.loads(
            (submitted_run / f"stats-{strategy}.json").read_text()
        )


@pytest.mark.parametrize("step", ["sample", "report"])
def test_kill_inside_a_step_then_rerun_gives_the_submitted_content(
    ray_head, submitted_run: Path, tiny_config_file: Path, tmp_path: Path, step: str
):
    """Two cases of tests/test_faults.py (every step, a separate suite) on the submitted run:
    a Ray Data stage killed after its first part file, and the report after summary.json."""
    from kill_run import kill_and_resume

    env = _env() | {"RAY_ADDRESS": ray_head["gcs"]}
    kill_and_resume(submitted_run, tiny_config_file, tmp_path / "run", step, env)
