"""Step 0: label-only SFT on the answer prompt (METHOD.md), TRL's SFTTrainer inside Ray Train.

The data are conversational prompt/completion rows: the answer prompt's messages and the
assistant turn `Answer: <letter>`; the loss is on the completion only. LoRA is always merged
afterwards, so `sft` is a plain model: the starting point and the DPO reference. The Ray
Train and TRL wiring is the trainer skeleton's (training/trainer.py); `SFT` is what SFT
plugs into it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from anchor_service.config import SFTConfig
from anchor_service.core.prompts import answer_prompt, answer_target
from anchor_service.core.types import Example
from anchor_service.training import trainer
from anchor_service.training.trainer import TrainerSpec, peft_lora_config


def sft_rows(examples: Sequence[Example]) -> list[dict[str, Any]]:
    """Conversational prompt/completion rows: answer prompt -> `Answer: <gold letter>`."""
    return [
        {
            "prompt": answer_prompt(ex.question, ex.options),
            "completion": [{"role": "assistant", "content": answer_target(ex.gold)}],
        }
        for ex in examples
    ]


def _trl_args(cfg: SFTConfig) -> dict[str, Any]:
    return {
        "completion_only_loss": True,
        # Examples are short and few per step; packing would mix answer prompts.
        "packing": False,
    }


def _trainer_kwargs(cfg: SFTConfig) -> dict[str, Any]:
    return {"peft_config": peft_lora_config(cfg.lora) if cfg.use_lora else None}


def _dataset(rows: list[dict[str, Any]], run_dir: Path) -> Any:
    from datasets import Dataset

    return Dataset.from_list(rows)


def _publish(trained: Any, cfg: SFTConfig, staging: Path) -> None:
    model = trained.model
    if cfg.use_lora:
        # `sft` must be a plain model (METHOD.md step 0): fold the adapter into the weights.
        model = model.merge_and_unload()
    model.save_pretrained(staging)
    trained.processing_class.save_pretrained(staging)


def _summary(cfg: SFTConfig, rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {"examples": len(rows), "use_lora": cfg.use_lora}


SFT = TrainerSpec(
    kind="sft",
    section=SFTConfig,
    trl_config="SFTConfig",
    trl_trainer="SFTTrainer",
    trl_args=_trl_args,
    trainer_kwargs=_trainer_kwargs,
    dataset=_dataset,
    publish=_publish,
    summary=_summary,
    published_file="config.json",
    published="model",
    unit="examples",
)
"""Label-only SFT in the trainer skeleton: completion-only loss, LoRA merged on publish."""


def build_sft_trainer(
    rows: list[dict[str, Any]],
    base_model_dir: Path,
    cfg: SFTConfig,
    run_seed: int,
    output_dir: str,
    callbacks: Sequence[Any] = (),
) -> Any:
    """TRL's SFTTrainer for label-only SFT on `rows`, outside Ray (tests, benchmarks)."""
    return trainer.build_trainer(
        SFT, _dataset(rows, Path(output_dir)), base_model_dir, cfg, run_seed, output_dir, callbacks
    )


def train_sft(
    examples: list[Example],
    base_model_dir: Path,
    out_dir: Path,
    cfg: SFTConfig,
    run_seed: int,
    storage_path: Path,
    **options: Any,
) -> Path:
    """Label-only SFT of `base_model_dir` on `examples`; write a plain (merged) model to `out_dir`.

    Runs in a Ray Train TorchTrainer (`cfg.scaling`); checkpoints go under `storage_path`, and a
    rerun of the same job resumes from them. `options` are `trainer.train`'s: `callbacks`
    (extra transformers TrainerCallbacks for every worker; they must pickle), `tracking` and
    `tracking_dir`.
    """
    if not examples:
        raise ValueError("train_sft got no examples; the training split is empty")
    return trainer.train(
        SFT,
        sft_rows(examples),
        base_model_dir,
        out_dir,
        cfg,
        run_seed,
        storage_path,
        **options,
    )
