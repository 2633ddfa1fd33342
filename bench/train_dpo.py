"""DPO benchmark: Ray Train (1 worker) vs plain TRL in-process, same pairs, model and threads.

    python -m bench.train_dpo [--model smollm2-135m-instruct|PATH] [--pairs 32]
                              [--threads 2] [--epochs 1] [--gpu] [--json FILE]

Prints optimizer steps per second of the training loop in each mode (HF's `train_runtime`:
the same span in both, reference log-probs and model loading excluded), their ratio (goal:
Ray >= 0.9x plain), and the end-to-end wall time of each (Ray's includes starting the
cluster, the controller and the worker). Each mode runs in a fresh Python process, plain then
Ray, `--repeats` rounds; the ratio is given best vs best and as the median of the rounds.
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

from anchor_service.config import DPOConfig, TrainScaling
from anchor_service.core.prompts import explain_prompt
from anchor_service.data.demo import demo_response, generate_demo
from anchor_service.training import ray_trainer
from anchor_service.training.dpo import build_dpo_trainer, dpo_rows, pairs_dataset, train_dpo


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


def run_mode(mode: str, args: argparse.Namespace, work: Path) -> tuple[float, float, list[float]]:
    """(steps/s, wall s, seconds per step) of one mode, in this process."""
    from anchor_service.engines.registry import resolve_model

    model_dir = resolve_model(args.model)
    pairs = bench_pairs(model_dir, args.pairs)
    cfg = DPOConfig(
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
    run = run_plain if mode == "plain" else run_ray
    return run(pairs, model_dir, cfg, work)


def run_in_fresh_process(
    mode: str, argv: list[str], work: Path
) -> tuple[float, float, list[float]]:
    """One mode in a new Python process: neither mode inherits the other's memory or threads."""
    result = work / f"{mode}.json"
    cmd = [sys.executable, "-m", "bench.train_dpo", *argv, "--only", mode, "--result", str(result)]
    subprocess.run(cmd, check=True, cwd=Path(__file__).resolve().parent.parent)
    sps, wall, steps = json.loads(result.read_text(encoding="utf-8"))
    return sps, wall, steps


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2-135m-instruct", help="registry key or model dir")
    p.add_argument("--pairs", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3, help="rounds of plain then Ray")
    p.add_argument("--ray-first", action="store_true", help="each round: Ray, then plain")
    p.add_argument("--gpu", action="store_true", help="train on one GPU (both modes)")
    p.add_argument("--max-length", type=int, default=1024, help="tokens per pair (cut)")
    p.add_argument("--json", help="also write the figures to this file")
    p.add_argument("--only", choices=["plain", "ray"], help=argparse.SUPPRESS)
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
    rounds = []
    with tempfile.TemporaryDirectory(prefix="bench-dpo-") as tmp:
        for r in range(args.repeats):
            order = ("ray", "plain") if args.ray_first else ("plain", "ray")
            result = {mode: run_in_fresh_process(mode, child_argv, Path(tmp)) for mode in order}
            plain, ray = result["plain"], result["ray"]
            rounds.append((plain, ray))
            print(
                f"round {r + 1}: plain {plain[0]:.3f} steps/s, Ray {ray[0]:.3f} steps/s "
                f"({ray[0] / plain[0]:.2f}x); seconds per step plain {plain[2]}, Ray {ray[2]}",
                flush=True,
            )
    ratios = [ray[0] / plain[0] for plain, ray in rounds]
    best_plain = max(plain for plain, _ in rounds)
    best_ray = max(ray for _, ray in rounds)

    print(f"DPO benchmark, {datetime.datetime.now().isoformat(timespec='seconds')}")
    print(
        f"machine: {platform.node()} {platform.machine()} {platform.processor() or ''} "
        f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; torch {torch.__version__}"
    )
    print(
        f"model: {args.model}; {args.pairs} pairs, batch {args.batch_size}, "
        f"{args.epochs:g} epoch(s), {args.threads} torch threads, {args.repeats} round(s), "
        "each mode in a fresh process, "
        + ("Ray first" if args.ray_first else "plain first")
        + (f"; GPU: {torch.cuda.get_device_name(0)}" if args.gpu else "")
    )
    print(f"plain TRL in-process: {best_plain[0]:.3f} steps/s best (wall {best_plain[1]:.1f} s)")
    print(f"Ray Train, 1 worker:  {best_ray[0]:.3f} steps/s best (wall {best_ray[1]:.1f} s)")
    print(
        f"ratio Ray / plain: {best_ray[0] / best_plain[0]:.2f}x best vs best, "
        f"{statistics.median(ratios):.2f}x median of rounds "
        f"({', '.join(f'{x:.2f}' for x in ratios)}) (goal >= 0.9x)"
    )
    if args.json:
        figures = {
            "args": vars(args),
            "rounds": [
                {
                    "plain_steps_per_s": pl[0],
                    "plain_wall_s": pl[1],
                    "plain_step_s": pl[2],
                    "ray_steps_per_s": ry[0],
                    "ray_wall_s": ry[1],
                    "ray_step_s": ry[2],
                }
                for pl, ry in rounds
            ],
            "plain_steps_per_s": best_plain[0],
            "ray_steps_per_s": best_ray[0],
            "ratio": best_ray[0] / best_plain[0],
            "median_round_ratio": statistics.median(ratios),
        }
        Path(args.json).write_text(json.dumps(figures, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
