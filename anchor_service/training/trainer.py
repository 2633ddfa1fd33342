"""One trainer skeleton for SFT and DPO: a TRL trainer on Ray Train workers.

    driver: name the run -> Ray Train workers -> check what rank 0 published
    worker: set-up -> dataset -> TRL trainer -> resume from Ray's checkpoint -> fit
            -> publish on rank 0 (the model, its summary and its per-step log)

What differs between SFT and DPO is a `TrainerSpec` (sft.SFT, dpo.DPO): the TRL classes and
the section's own TRL arguments, how the rows become a dataset, what rank 0 publishes.

TRL's arguments are resolved in one order, later wins: the skeleton's defaults (seeds,
checkpoint cadence, logging, device, precision: ray_trainer.hf_args_common), the section's
fields (learning rate, batch, epochs, max_length, then the spec's own, e.g. DPO's beta and
sigmoid loss), `tracking` (report_to, run_name), the section's `trainer_args`. A
`trainer_args` key that a section field, `tracking` or the skeleton's seeds, checkpoints and
logging set is rejected when the config loads (config.check_trainer_args), so in effect
`trainer_args` adds arguments or overrides the precision, device and method defaults only.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from anchor_service.config import LoraConfig, Section, TrackingConfig
from anchor_service.rundir import TRAIN_LOG_FILE
from anchor_service.schema import train_log_frame
from anchor_service.training import ray_trainer

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainerSpec:
    """What one kind of training (SFT, DPO) plugs into the skeleton. The functions run on
    the workers, so they are module-level (Ray pickles them by reference)."""

    kind: str
    """`sft` or `dpo`: the run name's prefix, the summary's `kind`, the config section."""
    section: type[Section]
    """The config section (SFTConfig, DPOConfig), re-validated on each worker."""
    trl_config: str
    """TRL's arguments class (`SFTConfig`, `DPOConfig`)."""
    trl_trainer: str
    """TRL's trainer class (`SFTTrainer`, `DPOTrainer`)."""
    trl_args: Callable[[Any], dict[str, Any]]
    """The section's own TRL arguments beyond the common ones (cfg -> kwargs)."""
    trainer_kwargs: Callable[[Any], dict[str, Any]]
    """Keyword arguments of the trainer class besides model, args, data and callbacks."""
    dataset: Callable[[list[dict[str, Any]], Path], Any]
    """(rows, this run's storage dir) -> the `datasets.Dataset` each worker trains on."""
    publish: Callable[[Any, Any, Path], None]
    """(trainer, cfg, staging dir): what rank 0 writes when training ended."""
    summary: Callable[[Any, list[dict[str, Any]]], dict[str, Any]]
    """(cfg, rows) -> what the training summary records besides steps and timing."""
    published_file: str
    """A file the published directory must hold (the driver's check that rank 0 wrote it)."""
    published: str
    """What is published, in words (`model`, `adapter`), for error messages."""
    unit: str
    """What a row is, in words (`examples`, `pairs`), for the log."""


# ---- shared pieces of the specs ------------------------------------------------------------


def peft_lora_config(lora: LoraConfig) -> Any:
    """The peft.LoraConfig of a project LoRA section (causal LM, no bias)."""
    import peft

    return peft.LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        bias="none",
        task_type="CAUSAL_LM",
    )


def load_model_and_tokenizer(model_dir: Path, use_gpu: bool) -> tuple[Any, Any]:
    """A causal LM (fp32 on CPU, bf16 on GPU) and its tokenizer, with a pad token set."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    dtype = torch.bfloat16 if use_gpu else torch.float32
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype)
    return model, tokenizer


# ---- the TRL trainer -----------------------------------------------------------------------


def trl_arguments(
    spec: TrainerSpec,
    cfg: Any,
    run_seed: int,
    output_dir: str,
    tracking: dict[str, Any] | None = None,
) -> Any:
    """TRL's arguments object of one run, in the module docstring's order of precedence."""
    import trl

    accumulation = int(cfg.trainer_args.get("gradient_accumulation_steps", 1))
    kwargs = {
        **ray_trainer.hf_args_common(cfg.scaling, run_seed, output_dir),
        "learning_rate": cfg.learning_rate,
        "per_device_train_batch_size": ray_trainer.per_device_batch(
            cfg.batch_size, cfg.scaling, f"{spec.kind}.batch_size", accumulation
        ),
        "num_train_epochs": cfg.epochs,
        "max_length": cfg.max_length,
        **spec.trl_args(cfg),
        **(tracking or {}),
        **cfg.trainer_args,
    }
    return getattr(trl, spec.trl_config)(**kwargs)


def build_trainer(
    spec: TrainerSpec,
    dataset: Any,
    model_dir: Path,
    cfg: Any,
    run_seed: int,
    output_dir: str,
    callbacks: Sequence[Any] = (),
    tracking: dict[str, Any] | None = None,
    init_adapter: Path | None = None,
) -> Any:
    """The spec's TRL trainer on `dataset`, starting from the model in `model_dir`;
    `init_adapter`: a LoRA adapter of that model trained further instead of a fresh one."""
    import trl

    model, tokenizer = load_model_and_tokenizer(model_dir, cfg.scaling.use_gpu)
    kwargs = spec.trainer_kwargs(cfg)
    if init_adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(init_adapter), is_trainable=True)
        kwargs["peft_config"] = None
    return getattr(trl, spec.trl_trainer)(
        model=model,
        args=trl_arguments(spec, cfg, run_seed, output_dir, tracking),
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=list(callbacks),
        **kwargs,
    )


def tracking_arguments(tracking: TrackingConfig, tracking_dir: str, model: str) -> dict[str, Any]:
    """This worker's tracking arguments: rank 0 reports to the configured trackers, the other
    ranks to none. The file-writing trackers get their directories under `tracking_dir`
    through the environment variables they read, unless the worker's environment sets them."""
    trackers = tracking.trackers() if ray_trainer.is_rank_zero() else []
    if not trackers:
        return {"report_to": "none"}
    root = Path(tracking_dir)
    root.mkdir(parents=True, exist_ok=True)
    env = {}
    if "tensorboard" in trackers:
        env["TENSORBOARD_LOGGING_DIR"] = str(root / "tensorboard" / model)
    if "wandb" in trackers:
        env |= {"WANDB_PROJECT": tracking.project, "WANDB_DIR": str(root)}
    if "mlflow" in trackers:
        env["MLFLOW_EXPERIMENT_NAME"] = tracking.project
        if "MLFLOW_TRACKING_URI" not in os.environ:
            # A file store needs no server or database; MLflow 3 refuses one unless allowed.
            env |= {
                "MLFLOW_TRACKING_URI": (root / "mlruns").as_uri(),
                "MLFLOW_ALLOW_FILE_STORE": "true",
            }
    for key, value in env.items():
        os.environ.setdefault(key, value)
    return {"report_to": trackers, "run_name": model}


# ---- the worker ----------------------------------------------------------------------------


def train_worker(config: dict[str, Any]) -> None:
    """The Ray Train loop of every worker: set-up, dataset, trainer, resume and fit; rank 0
    then publishes the model with its training summary and per-step log."""
    spec: TrainerSpec = config["spec"]
    cfg = spec.section.model_validate(config["cfg"])
    ray_trainer.worker_setup(cfg.scaling)
    out_dir = Path(config["out_dir"])
    tracking = tracking_arguments(
        TrackingConfig.model_validate(config["tracking"]), config["tracking_dir"], out_dir.name
    )
    trainer = build_trainer(
        spec,
        spec.dataset(config["rows"], Path(config["run_dir"])),
        Path(config["model_dir"]),
        cfg,
        config["run_seed"],
        ray_trainer.worker_output_dir(config["name"]),
        config["callbacks"],
        tracking,
        Path(config["init_adapter"]) if config.get("init_adapter") else None,
    )
    summary = ray_trainer.run_hf_trainer(trainer)
    if not ray_trainer.is_rank_zero():
        return
    summary |= {"kind": spec.kind, **spec.summary(cfg, config["rows"])}
    with ray_trainer.publish_model(out_dir, summary) as staging:
        spec.publish(trainer, cfg, staging)
        # log_history comes back with a resumed checkpoint, so the log covers every step.
        train_log_frame(trainer.state.log_history).to_parquet(staging / TRAIN_LOG_FILE)


# ---- the driver ----------------------------------------------------------------------------


def train(
    spec: TrainerSpec,
    rows: list[dict[str, Any]],
    model_dir: Path,
    out_dir: Path,
    cfg: Any,
    run_seed: int,
    storage_path: Path,
    *,
    callbacks: Sequence[Any] = (),
    tracking: TrackingConfig | None = None,
    tracking_dir: Path | None = None,
    init_adapter: Path | None = None,
) -> Path:
    """Train `spec` on `rows` from `model_dir` in a Ray Train TorchTrainer (`cfg.scaling`);
    rank 0 publishes to `out_dir`. Checkpoints go under `storage_path`, and a rerun of the
    same job resumes from them. `callbacks` are extra transformers TrainerCallbacks for every
    worker (they must pickle); `tracking` (default: none) writes under `tracking_dir`
    (default: `out_dir`/../../tracking, the run directory's `tracking/`); `init_adapter`: a
    LoRA adapter of `model_dir` to train further (it names the run too)."""
    out_dir = Path(out_dir).resolve()
    model_dir = Path(model_dir).resolve()
    storage_path = Path(storage_path).resolve()
    identity = cfg.model_dump(mode="json")
    if not cfg.trainer_args:  # the names of runs made before trainer_args existed
        del identity["trainer_args"]
    init = str(Path(init_adapter).resolve()) if init_adapter is not None else None
    name_parts: list[Any] = [str(model_dir), identity, run_seed, rows]
    if init is not None:  # absent otherwise: the names of runs made before init_adapter
        name_parts.append(init)
    name = ray_trainer.run_name(spec.kind, *name_parts)
    logger.info(
        "%s of %s on %d %s (run %s)", spec.kind.upper(), model_dir, len(rows), spec.unit, name
    )
    tracking = tracking or TrackingConfig()
    ray_trainer.fit_on_ray(
        train_worker,
        {
            "spec": spec,
            "rows": rows,
            "run_dir": str(storage_path / name),
            "model_dir": str(model_dir),
            "out_dir": str(out_dir),
            "cfg": cfg.model_dump(mode="json"),
            "run_seed": run_seed,
            "name": name,
            "callbacks": list(callbacks),
            "init_adapter": init,
            "tracking": tracking.model_dump(mode="json"),
            # Resolved here: a worker's working directory is not the driver's.
            "tracking_dir": str(Path(tracking_dir or out_dir.parent.parent / "tracking").resolve()),
        },
        cfg.scaling,
        storage_path,
        name,
    )
    if not (out_dir / spec.published_file).is_file():
        raise ray_trainer.TrainingError(
            f"{spec.kind.upper()} run {name} finished but wrote no {spec.published} to "
            f"{out_dir}; with a multi-node cluster, out_dir must be on storage the rank-0 "
            "worker can reach"
        )
    return out_dir
