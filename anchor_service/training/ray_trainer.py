"""The Ray Train wiring shared by SFT and DPO: one `TorchTrainer` running a TRL trainer per worker.

The driver side (`fit_on_ray`) builds the `ScalingConfig`/`RunConfig` from a `TrainScaling`;
the worker side (`worker_setup`, `run_hf_trainer`, `publish_model`) runs inside each training
worker: it resumes from Ray's latest checkpoint, reports HF checkpoints to Ray through
`RayTrainReportCallback`, and lets only rank 0 write the final model.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from anchor_service.cluster import ensure_ray
from anchor_service.config import TrainScaling

logger = logging.getLogger(__name__)

# What the worker writes beside the model: steps, resume point and timing of the run.
SUMMARY_FILE = "training_summary.json"
# Ray Train's checkpoint layout (RayTrainReportCallback): <ray checkpoint>/checkpoint/<HF files>.
HF_CHECKPOINT_SUBDIR = "checkpoint"


class TrainingError(RuntimeError):
    """A Ray Train run failed after its allowed retries; the message names the run and its storage."""


def run_name(kind: str, *parts: Any) -> str:
    """A Ray run name from what defines the run, so a rerun of the same job resumes its checkpoints."""
    digest = hashlib.sha256(
        json.dumps(parts, sort_keys=True, default=str).encode("utf-8")
    ).hexdigest()
    return f"{kind}-{digest[:12]}"


def fit_on_ray(
    train_loop: Callable[[dict[str, Any]], None],
    loop_config: dict[str, Any],
    scaling: TrainScaling,
    storage_path: Path,
    name: str,
) -> Any:
    """Run `train_loop` on `scaling.num_workers` Ray Train workers; return the `ray.train.Result`.

    Worker failures are retried `scaling.max_failures` times from the latest reported checkpoint.
    """
    import ray.train
    from ray.train.torch import TorchTrainer

    ensure_ray()
    resources: dict[str, float] = {"CPU": scaling.cpus_per_worker}
    if scaling.use_gpu:
        resources["GPU"] = 1
    trainer = TorchTrainer(
        train_loop,
        train_loop_config=loop_config,
        scaling_config=ray.train.ScalingConfig(
            num_workers=scaling.num_workers,
            use_gpu=scaling.use_gpu,
            resources_per_worker=resources,
        ),
        run_config=ray.train.RunConfig(
            name=name,
            storage_path=str(Path(storage_path).resolve()),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=scaling.num_to_keep),
            failure_config=ray.train.FailureConfig(max_failures=scaling.max_failures),
            worker_runtime_env={"env_vars": worker_env_vars(scaling)},
        ),
    )
    try:
        return trainer.fit()
    except ray.train.TrainingFailedError as exc:
        raise TrainingError(
            f"Ray Train run '{name}' failed after {scaling.max_failures} allowed worker "
            f"failure(s): {exc}. Its checkpoints are under {Path(storage_path) / name}; "
            "rerunning the same job resumes from the latest one."
        ) from exc


def worker_env_vars(scaling: TrainScaling) -> dict[str, str]:
    """Environment of the training workers (set when Ray starts their processes)."""
    return {
        # Ray's print redirect also leaks what libraries print into captured buffers (dill
        # disassembles every datasets.map function that way) and doubles HF's logs.
        "RAY_TRAIN_ENABLE_PRINT_PATCH": "0",
        **allocator_env(scaling),
    }


# glibc keeps every allocation in its heap (no mmap per large block) and never gives the
# heap's top back: 20 GB exceeds any CPU training process's swing between steps.
REUSE_FREED_MEMORY_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(20 << 30)}
ALLOCATOR_VARS = ("MALLOC_ARENA_MAX", *REUSE_FREED_MEMORY_ENV)


def allocator_env(scaling: TrainScaling) -> dict[str, str]:
    """glibc malloc settings of a training process (read by glibc when the process starts).

    The driver's own values of these variables win. bench.train_dpo gives its plain-TRL
    process the same ones, so that its ratio measures Ray and nothing else.
    """
    env = {
        # Ray Train runs the training loop in a thread beside the actor's main thread, so
        # glibc serves it from a separate malloc arena, made of 64 MB heaps that it maps and
        # unmaps as tensors come and go; plain TRL trains on the main thread and its arena
        # keeps freed memory for reuse. One arena gives the worker the same behaviour (the
        # figures: docs/DESIGN.md "Training workers"). Set MALLOC_ARENA_MAX in the driver's
        # environment to choose another value.
        "MALLOC_ARENA_MAX": "1",
    }
    if scaling.reuse_freed_memory and not scaling.use_gpu:
        # CPU DPO allocates tensors of hundreds of MB per step (logits: pairs x tokens x
        # vocabulary); glibc maps each block above 32 MB freshly and unmaps it when freed, so
        # every step faults in and zeroes gigabytes of new pages, and more slowly in a Ray
        # worker (many threads, larger address space) than in a bare process (figures:
        # docs/DESIGN.md "Training workers"). The price: resident memory stays at its peak
        # until the process ends. GPU training keeps its tensors on the device and glibc's
        # defaults.
        env |= REUSE_FREED_MEMORY_ENV
    return {k: os.environ.get(k, v) for k, v in env.items()}


# ---- worker side -------------------------------------------------------------------------------


# The env:// variables Ray Train sets in each worker for torch.distributed.
DIST_ENV_VARS = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "NODE_RANK")


def worker_setup(scaling: TrainScaling) -> int:
    """First call of every training loop: one-worker runs as one process, torch's threads set.

    Returns the torch thread count.
    """
    leave_single_worker_group()
    return worker_threads(scaling)


def leave_single_worker_group() -> bool:
    """With one worker, drop Ray Train's one-member process group (True if it did).

    Ray Train sets up torch.distributed for every run, also for a single worker; accelerate
    then sees LOCAL_RANK and treats the run as distributed, wraps the model in
    DistributedDataParallel and runs a collective per logged metric, all for a world of one.
    That costs seconds per run on a small machine. Ray itself destroys the
    group only for worlds larger than one, and nothing of ours needs it (`pairs_dataset` and
    `is_rank_zero` work without), so the worker trains as a plain process would.
    """
    import ray.train
    import torch.distributed as dist

    if ray.train.get_context().get_world_size() != 1:
        return False
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    for var in DIST_ENV_VARS:
        os.environ.pop(var, None)
    return True


def worker_threads(scaling: TrainScaling) -> int:
    """Set torch's thread count in a worker: `scaling.torch_threads`, else its CPUs
    (`compute.resolve_threads`, the precedence every process uses)."""
    from anchor_service.compute import resolve_threads, start_threads

    threads = resolve_threads(scaling.torch_threads, None, scaling.cpus_per_worker)
    assert threads is not None  # a worker always has cpus_per_worker
    start_threads(threads, "train worker")
    return threads


def worker_output_dir(name: str) -> str:
    """A local scratch dir for this worker's HF checkpoints (one per rank: no two writers share it).

    Each rank's files (rank 0's model and optimizer, every rank's RNG state) are merged by Ray
    into one checkpoint in storage, so per-rank dirs avoid rank 1 copying a half-written save.
    """
    import ray.train

    rank = ray.train.get_context().get_world_rank()
    path = Path(tempfile.gettempdir()) / "anchor-train" / f"{name}-rank-{rank}"
    # A restarted worker must not find the previous attempt's checkpoints here: Ray's
    # checkpoint is the only source of truth for resuming.
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return str(path)


def hf_args_common(scaling: TrainScaling, run_seed: int, output_dir: str) -> dict[str, Any]:
    """TrainingArguments shared by SFT and DPO: seeds, checkpoint cadence, device, precision."""
    return {
        "output_dir": output_dir,
        "seed": run_seed,
        "data_seed": run_seed,
        "save_strategy": "steps",
        "save_steps": scaling.save_steps,
        # Ray keeps num_to_keep checkpoints in storage; locally only the newest is needed.
        "save_total_limit": 1,
        "logging_steps": 1,
        "report_to": "none",
        "disable_tqdm": True,
        "use_cpu": not scaling.use_gpu,
        # fp32 on CPU (bf16 autocast there is slower on most x86 cores); bf16 on GPUs.
        "bf16": scaling.use_gpu,
        "fp16": False,
        # Checkpointing trades speed for memory: worth it for 8B on GPUs, not for CPU demos.
        "gradient_checkpointing": scaling.use_gpu,
        "dataloader_num_workers": 0,
        "ddp_find_unused_parameters": False,
    }


def per_device_batch(
    batch_size: int, scaling: TrainScaling, field: str, accumulation: int = 1
) -> int:
    """Examples per worker and forward pass, so that workers x accumulation x per-worker =
    `batch_size` (the examples of one optimizer step)."""
    shares = scaling.num_workers * accumulation
    per_worker, rest = divmod(batch_size, shares)
    if per_worker < 1:
        raise ValueError(
            f"{field}={batch_size} is smaller than scaling.num_workers={scaling.num_workers} x "
            f"gradient_accumulation_steps={accumulation}: each worker needs at least one "
            "example per forward pass; raise the batch size or use fewer workers"
        )
    if rest:
        logger.warning(
            "%s=%d is not a multiple of %d workers x %d accumulation steps; the effective "
            "batch is %d",
            field,
            batch_size,
            scaling.num_workers,
            accumulation,
            per_worker * shares,
        )
    return per_worker


@contextmanager
def resume_checkpoint() -> Iterator[str | None]:
    """The HF checkpoint dir inside Ray's latest checkpoint (None on a fresh start)."""
    import ray.train

    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        yield None
        return
    with checkpoint.as_directory() as ckpt_dir:
        hf_dir = Path(ckpt_dir) / HF_CHECKPOINT_SUBDIR
        if not (hf_dir / "trainer_state.json").is_file():
            raise TrainingError(
                f"Ray checkpoint {ckpt_dir} has no HF trainer state in '{HF_CHECKPOINT_SUBDIR}/'; "
                "it was not written by RayTrainReportCallback. Delete the run dir to start over."
            )
        yield str(hf_dir)


def run_hf_trainer(trainer: Any) -> dict[str, Any]:
    """Train an HF/TRL trainer under Ray Train, resuming from Ray's checkpoint; return a summary."""
    import ray.train
    from ray.train.huggingface.transformers import RayTrainReportCallback, prepare_trainer

    trainer.add_callback(RayTrainReportCallback())
    timer = step_timer()
    trainer.add_callback(timer)
    trainer = prepare_trainer(trainer)
    with resume_checkpoint() as hf_dir:
        resumed_from_step = 0
        if hf_dir is not None:
            state = json.loads((Path(hf_dir) / "trainer_state.json").read_text(encoding="utf-8"))
            resumed_from_step = int(state["global_step"])
            logger.info("resuming from checkpoint at step %d", resumed_from_step)
        output = trainer.train(resume_from_checkpoint=hf_dir)
    # The local copies of checkpoints are no longer needed: Ray's storage keeps its own.
    shutil.rmtree(trainer.args.output_dir, ignore_errors=True)
    context = ray.train.get_context()
    return {
        "global_step": int(trainer.state.global_step),
        "resumed_from_step": resumed_from_step,
        "world_size": context.get_world_size(),
        # Wall seconds of each optimizer step of this attempt (warm-up vs steady state).
        "step_seconds": timer.seconds,
        # DistributedDataParallel with several workers; the bare model with one.
        "model_wrapper": type(trainer.model_wrapped).__name__,
        # The malloc settings this worker started with (allocator_env).
        "allocator": {k: os.environ[k] for k in ALLOCATOR_VARS if k in os.environ},
        "train_runtime_s": float(output.metrics.get("train_runtime", 0.0)),
        "train_loss": float(output.metrics.get("train_loss", float("nan"))),
    }


def step_timer() -> Any:
    """A TrainerCallback that keeps the wall seconds of each optimizer step in `.seconds`."""
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.seconds: list[float] = []
            self._start: float | None = None

        def on_step_begin(self, args, state, control, **kwargs):
            self._start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            if self._start is not None:
                self.seconds.append(round(time.perf_counter() - self._start, 3))
                self._start = None

    return StepTimer()


def is_rank_zero() -> bool:
    """True in the worker that writes final outputs."""
    import ray.train

    return ray.train.get_context().get_world_rank() == 0


@contextmanager
def publish_model(out_dir: Path, summary: dict[str, Any]) -> Iterator[Path]:
    """Yield a staging dir to save a model into; on success it replaces `out_dir` in one rename.

    Readers (and a stage's "output exists" check) never see a half-written model.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        yield staging
        (staging / SUMMARY_FILE).write_text(json.dumps(summary, indent=2), encoding="utf-8")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        staging.rename(out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def read_summary(out_dir: Path) -> dict[str, Any]:
    """The training summary a run wrote beside its model (steps, resume point, timing)."""
    return json.loads((Path(out_dir) / SUMMARY_FILE).read_text(encoding="utf-8"))
