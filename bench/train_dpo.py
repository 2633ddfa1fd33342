"""DPO benchmark: Ray Train (1 worker) vs plain TRL in-process, same pairs, model and threads.

    python -m bench.train_dpo [--model smollm2-135m-instruct|PATH] [--pairs 32]
                              [--threads 2] [--epochs 1] [--gpu] [--json FILE]

Prints optimizer steps per second of the training loop in each mode (HF's `train_runtime`:
the same span in both, reference log-probs and model loading excluded), their ratio (goal:
Ray >= 0.9x plain), and the end-to-end wall time of each (Ray's includes starting the
cluster, the controller and the worker).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
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
) -> tuple[float, float]:
    """(steps/s of the training loop, wall seconds) of TRL's DPOTrainer in this process."""
    from transformers import AutoTokenizer

    t0 = time.perf_counter()
    ray_trainer.worker_threads(cfg.scaling)
    rows = dpo_rows(pairs, AutoTokenizer.from_pretrained(model_dir))
    trainer = build_dpo_trainer(
        pairs_dataset(rows, work / "data"), model_dir, cfg, 0, str(work / "out")
    )
    out = trainer.train()
    return trainer.state.global_step / out.metrics["train_runtime"], time.perf_counter() - t0


def run_ray(pairs: list[dict], model_dir: Path, cfg: DPOConfig, work: Path) -> tuple[float, float]:
    """(steps/s of the training loop, wall seconds) of `train_dpo` on one Ray Train worker."""
    t0 = time.perf_counter()
    out = train_dpo(pairs, model_dir, work / "out", cfg, 0, work / "storage")
    wall = time.perf_counter() - t0
    summary = ray_trainer.read_summary(out)
    return summary["global_step"] / summary["train_runtime_s"], wall


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2-135m-instruct", help="registry key or model dir")
    p.add_argument("--pairs", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--repeats", type=int, default=1, help="alternate the modes; keep each best")
    p.add_argument("--gpu", action="store_true", help="train on one GPU (both modes)")
    p.add_argument("--max-length", type=int, default=1024, help="tokens per pair (cut)")
    p.add_argument("--json", help="also write the figures to this file")
    args = p.parse_args(argv)

    import torch

    from anchor_service.engines.registry import resolve_model

    with tempfile.TemporaryDirectory(prefix="bench-dpo-") as tmp:
        work = Path(tmp)
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
        plain, ray = [], []
        for r in range(args.repeats):
            # Separate dirs: a Ray run with the same name would resume the finished one.
            plain.append(run_plain(pairs, model_dir, cfg, work / f"plain-{r}"))
            ray.append(run_ray(pairs, model_dir, cfg, work / f"ray-{r}"))
        plain_sps, plain_wall = max(plain)
        ray_sps, ray_wall = max(ray)

    print(f"DPO benchmark, {datetime.datetime.now().isoformat(timespec='seconds')}")
    print(
        f"machine: {platform.node()} {platform.machine()} {platform.processor() or ''} "
        f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; torch {torch.__version__}"
    )
    print(
        f"model: {args.model}; {args.pairs} pairs, batch {args.batch_size}, "
        f"{args.epochs:g} epoch(s), {args.threads} torch threads, best of {args.repeats}"
        + (f"; GPU: {torch.cuda.get_device_name(0)}" if args.gpu else "")
    )
    print(f"plain TRL in-process: {plain_sps:.3f} steps/s (wall {plain_wall:.1f} s)")
    print(f"Ray Train, 1 worker:  {ray_sps:.3f} steps/s (wall {ray_wall:.1f} s)")
    print(f"ratio Ray / plain: {ray_sps / plain_sps:.2f}x steps/s (goal >= 0.9x)")
    if args.json:
        figures = {
            "args": vars(args),
            "plain_steps_per_s": plain_sps,
            "plain_wall_s": plain_wall,
            "ray_steps_per_s": ray_sps,
            "ray_wall_s": ray_wall,
            "ratio": ray_sps / plain_sps,
        }
        Path(args.json).write_text(json.dumps(figures, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
