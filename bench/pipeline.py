"""Ray Data stages vs a plain in-process loop: sample + judge throughput, same engine and work.

    python -m bench.pipeline [--prompts 32] [--samples 4] [--max-tokens 64] [--repeats 1]
    python -m bench.pipeline --quick      # smoke run on the tiny test model (tests/tiny_model.py)
    python -m bench.pipeline --model DIR --set pipeline.sample.num_gpus=1 \
        --set pipeline.judge.num_gpus=1   # on a GPU (DIR: e.g. from bench.random_model)

Run it from the repository root. Both sides run the product's stage classes (SampleStage,
then JudgeStage on the samples) with the demo config's ModelSpecs, batch sizes and torch
threads (anchor_service/resources/demo.yaml), over the same demo explain prompts:
(a) Ray: `pipeline.runner.run_stage` on a local cluster (`cluster.ensure_ray`), 1 actor, part
files and the stage's output file written as in a real run; (b) plain: the same stage
objects called batch by batch in this process, batches cut the same way.

Model load time is excluded from both and printed apart: each stage object loads its engine,
runs one warm-up batch (other prompts) and only then notes that it is ready. A side's time is
from ready to the last row back (Ray: to `run_stage` returning, so Ray Data's dispatch, object
store copies and the part/output writes count against Ray). Ray's actor start (worker process,
imports) is printed too but is not in the ratio. Both sides judge the plain side's samples,
so the judge work is identical; whether the two sides' outputs match is printed as a check.
Prints prompts/s and tokens/s per stage and side, and the ratio Ray / plain (goal >= 0.95x).
Sampling tokens are the generated tokens (re-tokenised text); judging tokens are the prompt
tokens of every criterion slot (as `bench.engines` counts them). No assertions: a benchmark
reports, tests check.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import logging
import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from anchor_service.config import ModelSpec, RunConfig, StageResources, load_config
from anchor_service.demo.task import demo_response, generate_demo
from anchor_service.pipeline.judge import JudgeStage
from anchor_service.pipeline.runner import StageSpec, run_stage
from anchor_service.pipeline.sample import SampleStage
from anchor_service.rundir import RunDir
from anchor_service.schema import judge_input, sample_input

log = logging.getLogger("bench.pipeline")

SAMPLE_KEYS = ["prompt_id", "sample_idx"]
JUDGE_KEYS = ["prompt_id", "source", "sample_idx"]


def note_ready(stage: Any, warm_rows: list[dict], timing_path: str, started: float) -> None:
    """Run one warm-up batch, then write when the stage became ready and its thread setup."""
    import torch

    loaded = time.time()
    stage(pd.DataFrame(warm_rows))
    ready = time.time()
    timing = {
        "load_s": loaded - started,
        "warm_s": ready - loaded,
        "init_start": started,
        "ready": ready,
        "torch_threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "pid": os.getpid(),
    }
    Path(timing_path).write_text(json.dumps(timing), encoding="utf-8")


class TimedSampleStage(SampleStage):
    """SampleStage that warms up after loading and writes when it became ready."""

    def __init__(self, timing_path: str, warm_rows: list[dict], **kwargs: Any):
        started = time.time()
        super().__init__(**kwargs)
        note_ready(self, warm_rows, timing_path, started)


class TimedJudgeStage(JudgeStage):
    """JudgeStage that warms up after loading and writes when it became ready."""

    def __init__(self, timing_path: str, warm_rows: list[dict], **kwargs: Any):
        started = time.time()
        super().__init__(**kwargs)
        note_ready(self, warm_rows, timing_path, started)


@dataclass
class StageFigures:
    """What one side measured for one stage."""

    side: str
    stage: str
    rows: int
    tokens: int
    seconds: float
    load_s: float
    warm_s: float
    actor_start_s: float
    torch_threads: int
    interop_threads: int
    omp_num_threads: str | None

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds


def run_side(
    side: str,
    stage_cls: type,
    ctor_kwargs: dict[str, Any],
    rows: pd.DataFrame,
    keys: list[str],
    resources: StageResources,
    work: Path,
    name: str,
    progress: bool,
) -> tuple[pd.DataFrame, float, dict]:
    """One stage on one side; (output, seconds from ready to the last row, timing).

    "plain": the stage object in this process, one call per batch of `resources.batch_size`
    rows; "ray": through run_stage (1 actor), which cuts the same batches.
    """
    timing_path = work / f"{name}-{side}.json"
    if side == "plain":
        stage = stage_cls(timing_path=str(timing_path), **ctor_kwargs)
        timing = json.loads(timing_path.read_text(encoding="utf-8"))
        t0 = time.time()
        batch = resources.batch_size
        outs = [
            stage(rows.iloc[i : i + batch].reset_index(drop=True))
            for i in range(0, len(rows), batch)
        ]
        seconds = time.time() - t0
        del stage
        gc.collect()
        return pd.concat(outs, ignore_index=True), seconds, timing
    rundir = RunDir(work / f"run-{name}")
    called = time.time()
    spec = StageSpec(
        name=name,
        rows=rows,
        keys=tuple(keys),
        stage_cls=stage_cls,
        args=dict(ctor_kwargs, timing_path=str(timing_path)),
        resources=resources,
        out_path=rundir.root / f"{name}.parquet",
        fingerprint_parts=("bench",),
        model=_model_of(ctor_kwargs),
        progress=progress,
    )
    out = run_stage(rundir, spec)
    done = time.time()
    timing = json.loads(timing_path.read_text(encoding="utf-8"))
    timing["actor_start_s"] = timing["init_start"] - called
    return out, done - timing["ready"], timing


def _model_of(ctor_kwargs: dict) -> ModelSpec | None:
    """The model a bench stage loads: the sampler's `spec` or the judge's model."""
    if "judge_cfg" in ctor_kwargs:
        return ModelSpec.model_validate(ctor_kwargs["judge_cfg"]["model"])
    return ModelSpec.model_validate(ctor_kwargs["spec"])


def figures(side: str, stage: str, rows: int, tokens: int, seconds: float, t: dict):
    """StageFigures from a side's timing record."""
    return StageFigures(
        side=side,
        stage=stage,
        rows=rows,
        tokens=tokens,
        seconds=seconds,
        load_s=t["load_s"],
        warm_s=t["warm_s"],
        actor_start_s=t.get("actor_start_s", 0.0),
        torch_threads=t["torch_threads"],
        interop_threads=t["interop_threads"],
        omp_num_threads=t["omp_num_threads"],
    )


def bench_config(args: argparse.Namespace) -> RunConfig:
    """The demo config, with this run's model, dtype, batch and thread overrides."""
    from anchor_service.resources import demo_config_path

    overrides = []
    for key, value in (
        ("name", args.model),
        ("dtype", args.dtype),
    ):
        if value:
            overrides += [f"policy.{key}={value}", f"judge.model.{key}={value}"]
    if args.threads:
        overrides += [f"pipeline.{s}.torch_threads={args.threads}" for s in ("sample", "judge")]
    if args.sample_batch:
        overrides.append(f"pipeline.sample.batch_size={args.sample_batch}")
    if args.judge_batch:
        overrides.append(f"pipeline.judge.batch_size={args.judge_batch}")
    # Last, so they win: e.g. pipeline.sample.num_gpus=1 on a GPU machine.
    overrides += args.set
    return load_config(demo_config_path(), overrides)


def warm_judge_rows(examples: list) -> list[dict]:
    """Judge-stage input rows with the demo task's sound explanations, for warming up."""
    rows = []
    for ex in examples:
        answer, explanation = demo_response(ex)
        rows.append(
            {
                "prompt_id": ex.prompt_id,
                "source": "sample",
                "sample_idx": 0,
                "question": ex.question,
                "options": list(ex.options),
                "answer": answer,
                "explanation": explanation,
                "meta_json": json.dumps(ex.meta),
            }
        )
    return rows


def generated_tokens(model: str, texts: list[str]) -> int:
    """Tokens of the sampled texts, as the policy's tokenizer counts them."""
    from bench.engines import _tokenizer

    tokenizer = _tokenizer(model)
    return sum(len(tokenizer.encode(t, add_special_tokens=False)) for t in texts)


def judged_tokens(model: str, rows: pd.DataFrame) -> int:
    """Prompt tokens the judge reads for `rows` (empty explanations are never sent)."""
    from anchor_service.core.rubric import judge_query
    from anchor_service.engines.base import ChoiceQuery
    from anchor_service.scoring.item import JudgeItem
    from bench.engines import judge_prompt_tokens

    queries = [
        ChoiceQuery(*judge_query(JudgeItem(r.question, list(r.options), r.answer, r.explanation)))
        for r in rows.itertuples(index=False)
        if isinstance(r.explanation, str) and r.explanation.strip()
    ]
    return judge_prompt_tokens(model, queries) if queries else 0


def same_rows(a: pd.DataFrame, b: pd.DataFrame, keys: list[str], cols: list[str]) -> bool:
    """True when both outputs have the same keys and values in `cols`."""
    a = a.sort_values(keys).reset_index(drop=True)[keys + cols].astype(str)
    b = b.sort_values(keys).reset_index(drop=True)[keys + cols].astype(str)
    return a.equals(b)


def main(argv: list[str] | None = None) -> None:
    """Measure both sides and print their figures and the Ray / plain ratios."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="registry key or model dir (default: the demo config's)")
    p.add_argument("--dtype", choices=["bfloat16", "float32"], help="default: the demo's bf16")
    p.add_argument("--prompts", type=int, default=32)
    p.add_argument("--samples", type=int, default=4)
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--sample-batch", type=int, help="rows per call (default: the demo's 64)")
    p.add_argument("--judge-batch", type=int, help="rows per call (default: the demo's 32)")
    p.add_argument("--threads", type=int, help="torch threads (default: the demo's 2)")
    p.add_argument("--repeats", type=int, default=1, help="alternate the sides; keep each best")
    p.add_argument("--no-progress", action="store_true", help="Ray Data without progress bars")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="demo-config override, repeatable (GPU: pipeline.sample.num_gpus=1 and "
        "pipeline.judge.num_gpus=1, or Ray hides the GPU from the actors)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: tiny test model, fp32, 4 prompts x 4 samples x 16 tokens, batch 8",
    )
    p.add_argument("--json", help="also write the figures to this file")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.quick:
        # tests/ is not a package: its conftest imports tiny_model the same way.
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from tiny_model import tiny_model

        args.model = str(tiny_model())
        args.dtype = "float32"
        args.prompts, args.max_tokens = 4, 16
        args.sample_batch = args.judge_batch = 8

    import torch

    from anchor_service.cluster import ensure_ray

    cfg = bench_config(args)
    policy, judge = cfg.policy, cfg.judge
    res_sample, res_judge = cfg.pipeline.sample, cfg.pipeline.judge
    progress = cfg.pipeline.progress and not args.no_progress
    examples = generate_demo(args.prompts, seed=0, split="train")
    by_id = {ex.prompt_id: ex for ex in examples}
    # Rows in key order (demo ids are numbered in order): the order run_stage cuts batches in.
    sample_rows = sample_input(examples, args.samples)
    warm_examples = generate_demo(2, seed=1, split="test")
    warm_sample = sample_input(warm_examples, 2).to_dict("records")
    sample_kwargs = dict(
        spec=policy.model_dump(),
        model_label="bench",
        run_seed=cfg.run_seed,
        temperature=cfg.sampling.temperature,
        top_p=cfg.sampling.top_p,
        max_tokens=args.max_tokens,
        torch_threads=res_sample.torch_threads or policy.torch_threads,
        warm_rows=warm_sample,
    )

    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    ensure_ray(cfg.cluster)
    ray_start_s = time.perf_counter() - t0

    best: dict[tuple[str, str], StageFigures] = {}
    outputs: dict[tuple[str, str], pd.DataFrame] = {}

    def keep(side: str, stage: str, out: pd.DataFrame, tokens: int, secs: float, t: dict) -> None:
        f = figures(side, stage, len(out), tokens, secs, t)
        if (side, stage) not in best or f.seconds < best[(side, stage)].seconds:
            best[(side, stage)] = f
        outputs[(side, stage)] = out
        log.info("%s %s: %d rows in %.1fs", side, stage, len(out), secs)

    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        work = Path(tmp)
        sample_tokens: int | None = None
        judge_tokens: int | None = None
        judge_in: pd.DataFrame | None = None
        judge_kwargs: dict[str, Any] | None = None
        for r in range(args.repeats):
            # Alternate which side goes first: load on a shared machine drifts.
            sides = ["plain", "ray"] if r % 2 == 0 else ["ray", "plain"]
            for side in sides:
                rep = work / f"{side}-{r}"
                rep.mkdir()
                out, secs, t = run_side(
                    side,
                    TimedSampleStage,
                    sample_kwargs,
                    sample_rows,
                    SAMPLE_KEYS,
                    res_sample,
                    rep,
                    "sample",
                    progress,
                )
                if sample_tokens is None:
                    sample_tokens = generated_tokens(policy.name, list(out["text"]))
                keep(side, "sample", out, sample_tokens, secs, t)
                if judge_in is None:
                    # The first side's samples are both sides' judge input: identical work.
                    judge_in = judge_input(out, by_id, "sample")
                    judge_tokens = judged_tokens(judge.model.name, judge_in)
                    judge_kwargs = dict(
                        judge_cfg=judge.model_dump(),
                        torch_threads=res_judge.torch_threads or judge.model.torch_threads,
                        warm_rows=warm_judge_rows(warm_examples),
                    )
                assert judge_kwargs is not None and judge_tokens is not None
                out, secs, t = run_side(
                    side,
                    TimedJudgeStage,
                    judge_kwargs,
                    judge_in,
                    JUDGE_KEYS,
                    res_judge,
                    rep,
                    "judge",
                    progress,
                )
                keep(side, "judge", out, judge_tokens, secs, t)
    load_after = os.getloadavg()[0]

    same_samples = same_rows(
        outputs[("plain", "sample")], outputs[("ray", "sample")], SAMPLE_KEYS, ["text"]
    )
    same_scores = same_rows(
        outputs[("plain", "judge")], outputs[("ray", "judge")], JUDGE_KEYS, ["score_expected"]
    )

    print(f"\nbench.pipeline, {datetime.datetime.now().isoformat(timespec='seconds')}")
    print(
        f"machine: {platform.node()} {platform.machine()} {platform.processor() or ''} "
        f"{os.cpu_count()} CPUs; load average {load_before:.1f} before, {load_after:.1f} "
        f"after; torch {torch.__version__}"
    )
    print(
        f"model: {policy.name} {policy.dtype}; {args.prompts} prompts x {args.samples} samples "
        f"x <= {args.max_tokens} tokens; batch (rows per call / engine) sample "
        f"{res_sample.batch_size}/{policy.batch_size}, judge {res_judge.batch_size}/"
        f"{judge.model.batch_size}; judge mode {judge.mode}; best of {args.repeats}"
    )
    print(
        f"Ray: local cluster started in {ray_start_s:.1f}s, 1 actor per stage, "
        f"num_cpus {res_sample.num_cpus:g}/{res_judge.num_cpus:g} (sample/judge)"
    )
    header = (
        f"{'stage':6} {'side':6} {'rows':>5} {'seconds':>8} {'prompts/s':>10} {'tok/s':>9} "
        f"{'load s':>7} {'warm s':>7} {'actor s':>8} {'threads (intra/inter/OMP)':>26}"
    )
    print(header)
    for stage in ("sample", "judge"):
        for side in ("plain", "ray"):
            f = best[(side, stage)]
            threads = f"{f.torch_threads}/{f.interop_threads}/{f.omp_num_threads or '-'}"
            print(
                f"{stage:6} {side:6} {f.rows:5d} {f.seconds:8.2f} {f.rows_per_s:10.2f} "
                f"{f.tokens_per_s:9.1f} {f.load_s:7.1f} {f.warm_s:7.1f} {f.actor_start_s:8.1f} "
                f"{threads:>26}"
            )
    ratios = {
        stage: best[("plain", stage)].seconds / best[("ray", stage)].seconds
        for stage in ("sample", "judge")
    }
    total_plain = sum(best[("plain", s)].seconds for s in ("sample", "judge"))
    total_ray = sum(best[("ray", s)].seconds for s in ("sample", "judge"))
    ratios["sample+judge"] = total_plain / total_ray
    print(
        "ratio Ray / plain (throughput): "
        + ", ".join(f"{k} {v:.2f}x" for k, v in ratios.items())
        + " (goal >= 0.95x)"
    )
    print(
        f"same outputs on both sides: samples {'yes' if same_samples else 'NO'}, "
        f"judge scores {'yes' if same_scores else 'NO'}"
    )
    if args.json:
        rows = [
            asdict(f) | {"rows_per_s": f.rows_per_s, "tokens_per_s": f.tokens_per_s}
            for f in best.values()
        ]
        Path(args.json).write_text(
            json.dumps(
                {
                    "args": vars(args),
                    "load": [load_before, load_after],
                    "ray_start_s": ray_start_s,
                    "ratios": ratios,
                    "same_outputs": {"samples": same_samples, "scores": same_scores},
                    "results": rows,
                },
                indent=2,
            ),
            encoding="utf-8",
        )


if __name__ == "__main__":
    main()
