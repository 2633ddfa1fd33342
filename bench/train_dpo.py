"""DPO benchmark: Ray Train (1 worker) vs plain TRL in-process, same pairs, model and threads.

    python -m bench.train_dpo [--model smollm2-135m-instruct|PATH] [--pairs 32]
                              [--threads 2] [--epochs 1] [--gpu] [--json FILE]

Prints optimizer steps per second of the training loop in each mode (HF's `train_runtime`:
the same span in both, reference log-probs and model loading excluded), their ratio (goal:
Ray >= 0.9x plain), and the end-to-end wall time of each (Ray's includes starting the
cluster, the controller and the worker). Each mode runs in a fresh Python process, `--repeats`
rounds; the ratio is given best vs best and as the median of the rounds. The modes:

- `plain`: TRL's DPOTrainer in a bare process with the allocator settings that the product
  gives its training workers (`ray_trainer.allocator_env`): the ratio to it is what Ray costs.
- `plain-defaults` (CPU only): the same with glibc's defaults, i.e. TRL as one runs it by
  hand: the ratio to it is what a user gains or loses by training through the product.
- `ray`: `train_dpo`, the product's Ray Train path.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from anchor_service.config import DPOConfig, TrainScaling
from anchor_service.core.prompts import explain_prompt
from anchor_service.demo.task import demo_response, generate_demo
from anchor_service.training import ray_trainer
from anchor_service.training.dpo import build_dpo_trainer, dpo_rows, pairs_dataset, train_dpo

MODES = ("plain-defaults", "plain", "ray")


def bench_pairs(model_dir: Path, n: int) -> list[dict]:
    """Demo pairs: sound gold explanation vs a wrong answer, rendered explain prompt."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    pairs = []
    for ex in generate_demo(n, seed=0, split="train"):
        prompt = tokenizer.apply_chat_template(
            explain_prompt(ex.question, ex.options), add_generation_prompt=True, tokenize=False
        )
        good, bad = demo_response(ex), demo_response(ex, ["wrong_result"])
        pairs.append(
            {
                "prompt": prompt,
                "chosen": f"Answer: {good[0]}\nExplanation: {good[1]}",
                "rejected": f"Answer: {bad[0]}\nExplanation: {bad[1]}",
            }
        )
    return pairs


def run_plain(
    pairs: list[dict], model_dir: Path, cfg: DPOConfig, work: Path
) -> tuple[float, float, list[float]]:
    """(steps/s of the training loop, wall seconds, seconds per step) of TRL's DPOTrainer here."""
    from transformers import AutoTokenizer

    t0 = time.perf_counter()
    ray_trainer.worker_threads(cfg.scaling)
    rows = dpo_rows(pairs, AutoTokenizer.from_pretrained(model_dir))
    trainer = build_dpo_trainer(
        pairs_dataset(rows, work / "data"), model_dir, cfg, 0, str(work / "out")
    )
    timer = ray_trainer.step_timer()
    trainer.add_callback(timer)
    out = trainer.train()
    sps = trainer.state.global_step / out.metrics["train_runtime"]
    return sps, time.perf_counter() - t0, timer.seconds


def run_ray(
    pairs: list[dict], model_dir: Path, cfg: DPOConfig, work: Path
) -> tuple[float, float, list[float]]:
    """(steps/s of the training loop, wall seconds, seconds per step) of `train_dpo`, 1 worker.

    Wall time includes starting the local cluster, the controller and the worker."""
    t0 = time.perf_counter()
    out = train_dpo(pairs, model_dir, work / "out", cfg, 0, work / "storage")
    wall = time.perf_counter() - t0
    summary = ray_trainer.read_summary(out)
    return summary["global_step"] / summary["train_runtime_s"], wall, summary["step_seconds"]


def bench_config(args: argparse.Namespace) -> DPOConfig:
    return DPOConfig(
        learning_rate=5e-5,
        batch_size=args.batch_size,
        epochs=args.epochs,
        max_length=args.max_length,
        scaling=TrainScaling(
            num_workers=1,
            use_gpu=args.gpu,
            cpus_per_worker=args.threads,
            torch_threads=args.threads,
            # One checkpoint at most: both modes write the same ones.
            save_steps=10_000,
        ),
    )


def run_mode(mode: str, args: argparse.Namespace, work: Path) -> tuple[float, float, list[float]]:
    """(steps/s, wall s, seconds per step) of one mode, in this process."""
    from anchor_service.engines.registry import resolve_model

    model_dir = resolve_model(args.model)
    pairs = bench_pairs(model_dir, args.pairs)
    run = run_ray if mode == "ray" else run_plain
    return run(pairs, model_dir, bench_config(args), work)


def mode_env(mode: str, args: argparse.Namespace) -> dict[str, str]:
    """Environment of a mode's process (glibc reads its malloc settings at start)."""
    allocator = ray_trainer.allocator_env(bench_config(args).scaling)
    env = {k: v for k, v in os.environ.items() if mode != "plain-defaults" or k not in allocator}
    # The Ray side's workers get the allocator settings through their runtime_env, as in
    # the product; its driver process does not train.
    return env | allocator if mode == "plain" else env


def run_in_fresh_process(
    mode: str, argv: list[str], work: Path, env: dict[str, str]
) -> tuple[float, float, list[float]]:
    """One mode in a new Python process: neither mode inherits the other's memory or threads."""
    result = work / f"{mode}.json"
    cmd = [sys.executable, "-m", "bench.train_dpo", *argv, "--only", mode, "--result", str(result)]
    subprocess.run(cmd, check=True, cwd=Path(__file__).resolve().parent.parent, env=env)
    sps, wall, steps = json.loads(result.read_text(encoding="utf-8"))
    return sps, wall, steps


def ratios(rounds: list[dict], base: str) -> dict[str, Any]:
    """Ray's steps/s over `base`'s: best vs best, the median of the rounds, and each round."""
    per_round = [r["ray"][0] / r[base][0] for r in rounds]
    best = max(r["ray"][0] for r in rounds) / max(r[base][0] for r in rounds)
    return {"best": best, "median": statistics.median(per_round), "rounds": per_round}


def ratio_line(label: str, ratio: dict[str, Any]) -> str:
    return (
        f"{label}: {ratio['best']:.2f}x best vs best, {ratio['median']:.2f}x median of rounds "
        f"({', '.join(f'{x:.2f}' for x in ratio['rounds'])})"
    )


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2-135m-instruct", help="registry key or model dir")
    p.add_argument("--pairs", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3, help="rounds of every mode")
    p.add_argument("--ray-first", action="store_true", help="each round: Ray, then plain")
    p.add_argument("--gpu", action="store_true", help="train on one GPU (both modes)")
    p.add_argument("--max-length", type=int, default=1024, help="tokens per pair (cut)")
    p.add_argument("--json", help="also write the figures to this file")
    p.add_argument("--only", choices=MODES, help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.only:  # a child of the loop below
        with tempfile.TemporaryDirectory(prefix=f"bench-dpo-{args.only}-") as tmp:
            figures = run_mode(args.only, args, Path(tmp))
        Path(args.result).write_text(json.dumps(figures), encoding="utf-8")
        return

    import torch

    # The children get the run's settings; only the parent writes --json.
    child_argv = [
        a
        for i, a in enumerate(argv)
        if not a.startswith("--json") and (i == 0 or argv[i - 1] != "--json")
    ]
    # On a GPU glibc's settings do not apply (ray_trainer.allocator_env): one plain mode.
    modes = [m for m in MODES if not (args.gpu and m == "plain-defaults")]
    if args.ray_first:
        modes = modes[-1:] + modes[:-1]
    rounds: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench-dpo-") as tmp:
        for r in range(args.repeats):
            res = {
                m: run_in_fresh_process(m, child_argv, Path(tmp), mode_env(m, args)) for m in modes
            }
            rounds.append(res)
            line = ", ".join(f"{m} {res[m][0]:.3f} steps/s" for m in modes)
            print(
                f"round {r + 1}: {line}; Ray / plain {res['ray'][0] / res['plain'][0]:.2f}x; "
                + "; ".join(f"seconds per step {m} {res[m][2]}" for m in modes),
                flush=True,
            )
    best = {m: max(r[m] for r in rounds) for m in modes}

    print(f"DPO benchmark, {datetime.datetime.now().isoformat(timespec='seconds')}")
    print(
        f"machine: {platform.node()} {platform.machine()} {platform.processor() or ''} "
        f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; torch {torch.__version__}"
    )
    print(
        f"model: {args.model}; {args.pairs} pairs, batch {args.batch_size}, "
        f"{args.epochs:g} epoch(s), {args.threads} torch threads, {args.repeats} round(s), "
        f"each mode in a fresh process, in the order {', '.join(modes)}"
        + (f"; GPU: {torch.cuda.get_device_name(0)}" if args.gpu else "")
    )
    labels = {
        "plain-defaults": "plain TRL, glibc defaults:",
        "plain": "plain TRL, worker allocator:",
        "ray": "Ray Train, 1 worker:",
    }
    for m in modes:
        print(f"{labels[m]:30s}{best[m][0]:.3f} steps/s best (wall {best[m][1]:.1f} s)")
    vs_plain = ratios(rounds, "plain")
    vs_defaults = ratios(rounds, "plain-defaults") if "plain-defaults" in modes else None
    print(ratio_line("ratio Ray / plain", vs_plain) + " (goal >= 0.9x)")
    # Per-step medians over all rounds: robust to warm-up steps (on a GPU the first steps of
    # each new sequence length take seconds in a fresh process, whichever mode it runs).
    med = {m: statistics.median(t for r in rounds for t in r[m][2]) for m in modes}
    print(
        "median seconds per step: "
        + ", ".join(f"{m} {med[m]:.3f}" for m in modes)
        + f"; Ray / plain {med['plain'] / med['ray']:.2f}x"
    )
    if vs_defaults:
        print(ratio_line("ratio Ray / plain with glibc defaults", vs_defaults))
    if args.json:
        figures = {
            "args": vars(args),
            "modes": modes,
            "rounds": [
                {
                    f"{m}_{k}": res[m][i]
                    for m in modes
                    for i, k in enumerate(("steps_per_s", "wall_s", "step_s"))
                }
                for res in rounds
            ],
            **{f"{m}_steps_per_s": best[m][0] for m in modes},
            "ratio": vs_plain["best"],
            "median_step_s": med,
            "median_step_ratio": med["plain"] / med["ray"],
            "median_round_ratio": vs_plain["median"],
        }
        if vs_defaults:
            figures["ratio_vs_defaults"] = vs_defaults["best"]
            figures["median_round_ratio_vs_defaults"] = vs_defaults["median"]
        Path(args.json).write_text(json.dumps(figures, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
