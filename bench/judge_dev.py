"""Judge prompt development set: how many sound/flawed pairs each judge ranks right.

    python -m bench.judge_dev --model smollm2-135m-instruct [--model DIR_OR_NAME ...]
        [--mode probability] [--dtype auto] [--threads N] [--batch-size 8] [--json]

A pair is ranked right when the sound explanation's score_expected (probability mode; the
integer score in generative mode) is strictly higher than the flawed one's. Prints, per
model, pairs ranked right overall and per kind of flaw, the mean margin (sound - flawed)
and seconds per judged explanation; --json prints the same as one JSON object per model.
The data is bench/data/judge_dev_pairs.jsonl (not the package check set).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import defaultdict
from typing import Any

from anchor_service.compute import resolve_threads, start_threads
from anchor_service.config import ModelSpec
from anchor_service.core.rubric import JUDGE_PROMPT_VERSION
from anchor_service.core.types import Judgement
from bench.judge_data import DevPair, load_dev_pairs


def value(j: Judgement) -> float | None:
    """The number a judgement is ranked by: score_expected where there is one, else score."""
    if j.score_expected is not None:
        return float(j.score_expected)
    return None if j.score is None else float(j.score)


def dev_figures(pairs: list[DevPair], judged: list[Judgement]) -> dict[str, Any]:
    """Ranked right overall and per flaw, from judgements in (sound, flawed) pair order."""
    right: dict[str, list[int]] = defaultdict(list)
    margins = []
    for n, pair in enumerate(pairs):
        sound, flawed = value(judged[2 * n]), value(judged[2 * n + 1])
        ok = sound is not None and flawed is not None and sound > flawed
        right[pair.flaw].append(int(ok))
        if sound is not None and flawed is not None:
            margins.append(sound - flawed)
    total = sum(sum(v) for v in right.values())
    return {
        "ranked_right": total,
        "pairs": len(pairs),
        "per_flaw": {k: f"{sum(v)}/{len(v)}" for k, v in sorted(right.items())},
        "mean_margin": round(statistics.fmean(margins), 3) if margins else None,
        "unscored": sum(j.status == "unscored" for j in judged),
    }


def measure(args: argparse.Namespace, model: str, pairs: list[DevPair]) -> dict[str, Any]:
    from anchor_service.engines.factory import make_engine
    from anchor_service.scoring.judge import Judge

    spec = ModelSpec(
        name=model, dtype=args.dtype, torch_threads=args.threads, batch_size=args.batch_size
    )
    start_threads(resolve_threads(None, spec), "bench.judge_dev")
    engine = make_engine(spec)
    judge = Judge(engine, mode=args.mode, judge_id=engine.model_id)
    items = [item for p in pairs for item in (p.sound, p.flawed)]
    t0 = time.perf_counter()
    judged = judge.score(items)
    secs = time.perf_counter() - t0
    return {
        "model": engine.model_id,
        "mode": judge.mode,
        "dtype": args.dtype,
        "batch_size": args.batch_size,
        "prompt_version": JUDGE_PROMPT_VERSION,
        **dev_figures(pairs, judged),
        "s_per_item": round(secs / len(items), 2),
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", action="append", help="model name or directory (repeat)")
    p.add_argument("--mode", default="probability", choices=["auto", "probability", "generative"])
    p.add_argument("--dtype", default="auto")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--limit", type=int, default=None, help="only the first N pairs")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    pairs = load_dev_pairs()[: args.limit]
    for model in args.model or ["smollm2-135m-instruct"]:
        fig = measure(args, model, pairs)
        if args.json:
            print(json.dumps(fig))
            continue
        print(
            f"{fig['model']} ({fig['mode']}, dtype {fig['dtype']}, batch {fig['batch_size']}, "
            f"prompt v{fig['prompt_version']}): {fig['ranked_right']}/{fig['pairs']} pairs "
            f"ranked right, mean margin {fig['mean_margin']}, {fig['s_per_item']} s/item, "
            f"unscored {fig['unscored']}"
        )
        print("  per flaw: " + ", ".join(f"{k} {v}" for k, v in fig["per_flaw"].items()))


if __name__ == "__main__":
    main()
