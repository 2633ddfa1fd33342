"""The `explain` workload of bench/serve.py: /v1/explain on vLLM, `@serve.batch` vs async.

Two policy deployments of the same model, one after the other on the same Ray cluster: the
offline vLLM engine behind `@serve.batch` (`continuous_batching=false`) and vLLM's async
engine (`continuous_batching=true`). Each gets the same open-loop Poisson arrivals of the
same requests (see bench/serve.py's docstring); the judge is the oracle (not loaded).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
from typing import Any

import httpx

from bench.serve import free_port, percentile

# Words put before a question to vary prompt lengths (a neutral, repeated preamble).
_FILLER = (
    "Read the question carefully, think about each option in turn, and rule out the ones "
    "that cannot be right before you pick one. "
).split()
CONTEXT_WORDS = (0, 40, 160)
CALIBRATION_REQUESTS = 16
RATE_OF_CAPACITY = 0.7


def explain_bodies(n: int, max_tokens: list[int], seed: int) -> list[dict[str, Any]]:
    """`n` /v1/explain bodies: demo questions, mixed context and output lengths, sampled."""
    from anchor_service.data.demo import generate_demo

    rng = random.Random(seed)
    bodies = []
    for i, example in enumerate(generate_demo(n, seed, "test")):
        words = rng.choice(CONTEXT_WORDS)
        context = " ".join(_FILLER[j % len(_FILLER)] for j in range(words))
        question = f"{context}\n\n{example.question}" if context else example.question
        bodies.append(
            {
                "question": question,
                "options": list(example.options),
                "n": 1,
                "temperature": 0.9,
                "top_p": 0.95,
                "max_tokens": rng.choice(max_tokens),
                "seed": seed + i,
            }
        )
    return bodies


def arrivals(n: int, rate: float, seed: int) -> list[float]:
    """Send times (s from the start) of a Poisson process of `rate` per second."""
    rng = random.Random(seed)
    at, out = 0.0, []
    for _ in range(n):
        at += rng.expovariate(rate)
        out.append(at)
    return out


async def open_loop(url: str, bodies: list[dict], times: list[float]) -> dict[str, Any]:
    """Each body sent at its time, whatever is still in flight; latency from that time."""
    latencies: list[float] = []
    chars_out: list[int] = []
    statuses: dict[int, int] = {}
    limits = httpx.Limits(max_connections=len(bodies))

    async with httpx.AsyncClient(base_url=url, timeout=1800, limits=limits) as client:
        start = time.perf_counter()

        async def one(body: dict, at: float) -> float:
            await asyncio.sleep(max(0.0, start + at - time.perf_counter()))
            r = await client.post("/v1/explain", json=body)
            done = time.perf_counter()
            statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
            if r.status_code == 200:
                latencies.append(done - (start + at))
                chars_out.extend(len(c["text"]) for c in r.json()["completions"])
            return done

        finished = await asyncio.gather(*(one(b, t) for b, t in zip(bodies, times, strict=True)))
    makespan = max(finished) - start
    return {
        "requests": len(latencies),
        "seconds": round(makespan, 2),
        "offered_rps": round(len(bodies) / times[-1], 4) if times[-1] > 0 else None,
        "throughput_rps": round(len(latencies) / makespan, 4),
        "p50_s": round(percentile(latencies, 50), 3) if latencies else None,
        "p99_s": round(percentile(latencies, 99), 3) if latencies else None,
        "mean_s": round(statistics.fmean(latencies), 3) if latencies else None,
        "mean_chars_out": round(statistics.fmean(chars_out), 1) if chars_out else None,
        "statuses": statuses,
    }


def _overrides(args: argparse.Namespace, port: int, continuous: bool) -> list[str]:
    dep = "serve.policy_deployment"
    return [
        "judge.mode=oracle",
        f"policy.name={args.model}",
        "policy.engine=vllm",
        f"policy.dtype={args.dtype}",
        f"policy.batch_size={args.batch_size}",
        "policy.max_model_len=1024",
        f"policy.torch_threads={args.threads}",
        f"serve.port={port}",
        f"serve.limits.max_tokens={max(args.max_tokens)}",
        f"{dep}.continuous_batching={str(continuous).lower()}",
        f"{dep}.max_batch_size={args.batch_size}",
        f"{dep}.batch_wait_timeout_s={args.batch_wait_s}",
        f"{dep}.num_cpus={args.threads}",
        f"{dep}.max_ongoing_requests={max(64, args.requests)}",
        f"{dep}.max_queued_requests=-1",
        "serve.judge_deployment.num_cpus=0.1",
    ]


def run_mode(
    args: argparse.Namespace, port: int, continuous: bool, bodies: list[dict], rate: float | None
) -> tuple[dict[str, Any], float]:
    """Deploy one mode, warm it, find the rate if asked, drive it; (results, rate used)."""
    from ray import serve

    from anchor_service.config import load_config
    from anchor_service.serve.app import build_application

    name = "async" if continuous else "serve.batch"
    cfg = load_config(None, _overrides(args, port, continuous))
    print(f"{name}: deploying", file=sys.stderr, flush=True)
    serve.run(build_application(cfg), name="anchor-bench", route_prefix="/")
    url = f"http://127.0.0.1:{port}"
    warm = explain_bodies(2, [8], seed=10_000)
    asyncio.run(open_loop(url, warm, [0.0, 0.0]))  # first calls allocate; not measured
    if rate is None:
        burst = bodies[:CALIBRATION_REQUESTS]
        capacity = asyncio.run(open_loop(url, burst, [0.0] * len(burst)))
        rate = RATE_OF_CAPACITY * capacity["throughput_rps"]
        print(f"  burst capacity {capacity}; rate {rate:.4f}/s", file=sys.stderr, flush=True)
    result = asyncio.run(open_loop(url, bodies, arrivals(len(bodies), rate, args.seed)))
    print(f"  {name}: {result}", file=sys.stderr, flush=True)
    serve.delete("anchor-bench")
    return result, rate


def report(args: argparse.Namespace, rate: float, off: dict, on: dict) -> dict[str, float]:
    """Print the table and the ratios; return the ratios."""
    ratios = {
        "p50_offline_over_async": round(off["p50_s"] / on["p50_s"], 3),
        "p99_offline_over_async": round(off["p99_s"] / on["p99_s"], 3),
        "throughput_async_over_offline": round(on["throughput_rps"] / off["throughput_rps"], 3),
    }
    print(
        f"/v1/explain, policy {args.model} on vllm ({args.dtype}), {args.threads} threads, "
        f"max_num_seqs {args.batch_size}, {args.requests} requests, Poisson {rate:.4f}/s, "
        f"max_tokens from {args.max_tokens}"
    )
    print(f"{'mode':<13}{'req/s':>9}{'p50 s':>9}{'p99 s':>9}{'mean s':>9}  statuses")
    for name, r in (("serve.batch", off), ("async", on)):
        print(
            f"{name:<13}{r['throughput_rps']:>9.3f}{r['p50_s']:>9.2f}{r['p99_s']:>9.2f}"
            f"{r['mean_s']:>9.2f}  {r['statuses']}"
        )
    print(
        f"p50 serve.batch/async: {ratios['p50_offline_over_async']:.2f}x (goal >= 1.5x), "
        f"p99: {ratios['p99_offline_over_async']:.2f}x, "
        f"throughput async/serve.batch: {ratios['throughput_async_over_offline']:.2f}x"
    )
    return ratios


def main(args: argparse.Namespace) -> dict[str, Any]:
    """Both modes on one Ray cluster; the results, rate and ratios."""
    import ray
    from ray import serve

    from anchor_service.engines.registry import resolve_model

    resolve_model(args.model)  # convert the embedded model once, before timing anything
    bodies = explain_bodies(args.requests, args.max_tokens, args.seed)
    ray.init(num_cpus=max(4, args.threads + 2), include_dashboard=False, logging_level="WARNING")
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    rate = None if args.rate == "auto" else float(args.rate)
    try:
        off, rate = run_mode(args, port, False, bodies, rate)
        on, _ = run_mode(args, port, True, bodies, rate)
    finally:
        serve.shutdown()
        ray.shutdown()
    ratios = report(args, rate, off, on)
    return {"serve_batch": off, "async": on, "rate": rate, "ratios": ratios}
