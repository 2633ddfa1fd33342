"""Judge quality per model and mode: check-set sanity, seconds per item, oracle agreement.

    python -m bench.judge_oracle --run runs/demo --model smollm2-135m-instruct
        [--model qwen2.5-coder-1.5b-instruct ...] [--mode probability|generative|both]
        [--items 120] [--dtype auto] [--batch-size 16] [--threads N] [--json]

`--run` is a finished demo-task run directory (`anchor-align demo`): its samples are real
policy responses, and the demo task's oracle knows the truth about each, so a judge's
ordering of them can be compared with the oracle's (`judge_agreement`, METHOD.md step 7:
Spearman, pairwise and within-question agreement with bootstrap CIs over questions). A
fixed subset of whole questions is drawn (seeded) so every model judges the same items.
Per model and mode it prints: the package check-set sanity figure (x/10), seconds per
judged item (after a warm-up), Spearman and pairwise agreement with the oracle, and the
engine, dtype and batch size used.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import random
import time
from typing import Any

import pandas as pd

from anchor_service.config import ModelSpec, RunConfig
from anchor_service.demo.oracle import OracleJudge
from anchor_service.engines.factory import make_engine
from anchor_service.evaluation.agreement import judge_agreement
from anchor_service.recipe.method import load_data
from anchor_service.report.agreement import ordering_key
from anchor_service.rundir import RunDir
from anchor_service.schema import judge_input
from anchor_service.scoring.item import JudgeItem, items_of
from anchor_service.scoring.judge import Judge
from anchor_service.scoring.sanity import load_checkset, sanity_figure

MODES = ("probability", "generative")


def demo_items(run: str, n_items: int, seed: int) -> tuple[list[JudgeItem], list[str]]:
    """Judge items of whole questions drawn from a demo run's samples, with their prompt ids."""
    rundir = RunDir(run)
    cfg = RunConfig.model_validate(_yaml(rundir.config))
    if cfg.data.source != "demo":
        raise SystemExit(f"{run}: not a demo-task run (data.source={cfg.data.source!r})")
    samples = pd.read_parquet(rundir.samples)
    by_id = load_data(cfg).by_id
    rows = judge_input(samples, by_id, "sample")
    prompts = sorted(rows["prompt_id"].unique())
    random.Random(seed).shuffle(prompts)
    chosen: list[str] = []
    count = 0
    sizes = rows.groupby("prompt_id").size()
    for pid in prompts:
        if count >= n_items:
            break
        chosen.append(pid)
        count += int(sizes[pid])
    picked = rows[rows["prompt_id"].isin(chosen)].sort_values(["prompt_id", "sample_idx"])
    return items_of(picked), list(picked["prompt_id"])


def _yaml(path: Any) -> dict:
    import yaml

    with open(path) as f:
        return yaml.safe_load(f)


def _keys(judged: list) -> list[tuple[int, float] | None]:
    return [ordering_key(j.score, j.score_expected, j.status) for j in judged]


def measure(judge: Judge, items: list[JudgeItem]) -> tuple[float, list]:
    """Seconds per item of scoring `items` after a two-item warm-up, and the judgements."""
    judge.score(items[:2])
    t0 = time.perf_counter()
    judged = judge.score(items)
    return (time.perf_counter() - t0) / max(1, len(items)), judged


def evaluate_model(args: argparse.Namespace, name: str, items, groups, oracle_keys) -> list[dict]:
    spec = ModelSpec(
        name=name, dtype=args.dtype, batch_size=args.batch_size, torch_threads=args.threads
    )
    t0 = time.perf_counter()
    engine = make_engine(spec)
    load_s = time.perf_counter() - t0
    checkset = [item for pair in load_checkset() for item in pair]
    modes = MODES if args.mode == "both" else (args.mode,)
    out = []
    for mode in modes:
        judge = Judge(engine, mode=mode, judge_id=engine.model_id)
        sanity = sanity_figure(judge.score(checkset))
        per_item, judged = measure(judge, items)
        agreement = judge_agreement(oracle_keys, _keys(judged), groups, seed=0, n_resamples=1000)
        out.append(
            {
                "model": name,
                "mode": mode,
                "engine": type(engine).__name__,
                "dtype": str(getattr(engine, "dtype", args.dtype)),
                "batch_size": args.batch_size,
                "load_s": round(load_s, 1),
                "sanity": f"{sanity['passed']}/{sanity['total']}",
                "s_per_item": round(per_item, 3),
                "unscored": sum(j.status == "unscored" for j in judged),
                "items": len(items),
                "agreement": agreement,
            }
        )
    return out


def _ci(entry: dict) -> str:
    v, lo, hi = entry.get("value"), entry.get("ci_low"), entry.get("ci_high")
    if v is None:
        return "n/a"
    return f"{v:+.2f} [{lo:+.2f}, {hi:+.2f}]" if lo is not None else f"{v:+.2f}"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", required=True, help="a finished demo-task run directory")
    p.add_argument("--model", action="append", required=True)
    p.add_argument("--mode", choices=[*MODES, "both"], default="both")
    p.add_argument("--items", type=int, default=120, help="about this many responses")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", default="auto")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)

    items, groups = demo_items(args.run, args.items, args.seed)
    oracle_keys = _keys(OracleJudge().score(items))
    rows = []
    for name in args.model:
        new = evaluate_model(args, name, items, groups, oracle_keys)
        rows += new
        if args.json:
            for r in new:
                print(json.dumps(r), flush=True)
    if args.json:
        return
    print(f"# bench.judge_oracle  {datetime.date.today()}  {platform.machine()}  {args.run}")
    print(f"{len(items)} responses of {len(set(groups))} demo questions (seed {args.seed})")
    print("model | mode | engine, dtype, batch | sanity | s/item | Spearman vs oracle | pairwise")
    for r in rows:
        a = r["agreement"]
        print(
            f"{r['model']} | {r['mode']} | {r['engine']}, {r['dtype']}, {r['batch_size']} | "
            f"{r['sanity']} | {r['s_per_item']:.2f} | {_ci(a['spearman'])} | "
            f"{_ci(a['pairwise'])} (unscored {r['unscored']})"
        )


if __name__ == "__main__":
    main()
