"""Step 0: label-only SFT on the answer prompt (METHOD.md), TRL's SFTTrainer inside Ray Train.

The data are conversational prompt/completion rows: the answer prompt's messages and the
assistant turn `Answer: <letter>`; the loss is on the completion only. LoRA is always merged
afterwards, so `sft` is a plain model: the starting point and the DPO reference.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from anchor_service.config import LoraConfig, SFTConfig
from anchor_service.core.prompts import answer_prompt, answer_target
from anchor_service.core.types import Example
from anchor_service.training import ray_trainer

logger = logging.getLogger(__name__)


def sft_rows(examples: Sequence[Example]) -> list[dict[str, Any]]:
    """Conversational prompt/completion rows: answer prompt -> `Answer: <gold letter>`."""
    return [
        {
            "prompt": answer_prompt(ex.question, ex.options),
            "completion": [{"role": "assistant", "content": answer_target(ex.gold)}],
        }
        for ex in examples
    ]


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


def build_sft_trainer(
    rows: list[dict[str, Any]],
    base_model_dir: Path,
    cfg: SFTConfig,
    run_seed: int,
    output_dir: str,
    callbacks: Sequence[Any] = (),
) -> Any:
    """TRL's SFTTrainer for label-only SFT (completion-only loss; LoRA or full fine-tuning)."""
    from datasets import Dataset
    from trl import SFTConfig as TRLSFTConfig
    from trl import SFTTrainer

    model, tokenizer = load_model_and_tokenizer(base_model_dir, cfg.scaling.use_gpu)
    args = TRLSFTConfig(
        **ray_trainer.hf_args_common(cfg.scaling, run_seed, output_dir),
        learning_rate=cfg.learning_rate,
        per_device_train_batch_size=ray_trainer.per_device_batch(
            cfg.batch_size, cfg.scaling, "sft.batch_size"
        ),
        num_train_epochs=cfg.epochs,
        max_length=cfg.max_length,
        completion_only_loss=True,
        # Examples are short and few per step; packing would mix answer prompts.
        packing=False,
    )
    return SFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        peft_config=peft_lora_config(cfg.lora) if cfg.use_lora else None,
        callbacks=list(callbacks),
    )


def _sft_worker(config: dict[str, Any]) -> None:
    """The Ray Train loop of one SFT worker; rank 0 writes the merged model."""
    cfg = SFTConfig.model_validate(config["cfg"])
    ray_trainer.worker_setup(cfg.scaling)
    trainer = build_sft_trainer(
        config["rows"],
        Path(config["base_model_dir"]),
        cfg,
        config["run_seed"],
        ray_trainer.worker_output_dir(config["name"]),
        config.get("callbacks", ()),
    )
    summary = ray_trainer.run_hf_trainer(trainer)
    if not ray_trainer.is_rank_zero():
        return
    model = trainer.model
    if cfg.use_lora:
        # `sft` must be a plain model (METHOD.md step 0): fold the adapter into the weights.
        model = model.merge_and_unload()
    summary |= {"kind": "sft", "examples": len(config["rows"]), "use_lora": cfg.use_lora}
    with ray_trainer.publish_model(Path(config["out_dir"]), summary) as staging:
        model.save_pretrained(staging)
        trainer.processing_class.save_pretrained(staging)


def train_sft(
    examples: list[Example],
    base_model_dir: Path,
    out_dir: Path,
    cfg: SFTConfig,
    run_seed: int,
    storage_path: Path,
    *,
    callbacks: Sequence[Any] = (),
) -> Path:
    """Label-only SFT of `base_model_dir` on `examples`; write a plain (merged) model to `out_dir`.

    Runs in a Ray Train TorchTrainer (`cfg.scaling`); checkpoints go under `storage_path`, and a
    rerun of the same job resumes from them. `callbacks` are extra transformers
    TrainerCallbacks for every worker (they must pickle).
    """
    if not examples:
        raise ValueError("train_sft got no examples; the training split is empty")
    out_dir = Path(out_dir).resolve()
    base_model_dir = Path(base_model_dir).resolve()
    rows = sft_rows(examples)
    name = ray_trainer.run_name(
        "sft", str(base_model_dir), cfg.model_dump(mode="json"), run_seed, rows
    )
    logger.info("SFT of %s on %d examples (run %s)", base_model_dir, len(rows), name)
    ray_trainer.fit_on_ray(
        _sft_worker,
        {
            "rows": rows,
            "base_model_dir": str(base_model_dir),
            "out_dir": str(out_dir),
            "cfg": cfg.model_dump(mode="json"),
            "run_seed": run_seed,
            "name": name,
            "callbacks": list(callbacks),
        },
        cfg.scaling,
        Path(storage_path),
        name,
    )
    if not (out_dir / "config.json").is_file():
        raise ray_trainer.TrainingError(
            f"SFT run {name} finished but wrote no model to {out_dir}; with a multi-node "
            "cluster, out_dir must be on storage the rank-0 worker can reach"
        )
    return out_dir
