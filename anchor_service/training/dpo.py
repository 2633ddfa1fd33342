"""Step 6: DPO on preference pairs (METHOD.md), TRL's DPOTrainer inside Ray Train.

Policy = `sft` + a fresh LoRA adapter (seeded by run_seed); reference = the same model with the
adapter switched off (`ref_model=None` on a PEFT model: no second copy of the weights), its
log-probabilities computed once before training (`precompute_ref_log_probs`). Sigmoid loss.

Pair prompts: the pairs file stores the *rendered* explain prompt (a string, chat template
applied with the generation prompt), so DPO trains on exactly the tokens the sampler saw. A
prompt given as chat messages is rendered here with the model's template; either way TRL gets
plain-text rows, and the tokenizer's automatic BOS is not doubled.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from anchor_service.config import DPOConfig
from anchor_service.training import ray_trainer
from anchor_service.training.sft import load_model_and_tokenizer, peft_lora_config

logger = logging.getLogger(__name__)

PAIR_KEYS = ("prompt", "chosen", "rejected")


def _response_text(value: Any, where: str) -> str:
    """A response as text: a string, or an assistant message / one-message list."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping) and isinstance(value.get("content"), str):
        return value["content"]
    if isinstance(value, Sequence) and len(value) == 1:
        return _response_text(value[0], where)
    raise ValueError(
        f"{where} must be a string or one assistant message, got {type(value).__name__}; "
        "pass the response text as written by the model"
    )


def pair_prompt(prompt: Any, tokenizer: Any, where: str) -> str:
    """A pair's prompt as text: rendered chat messages, or an already rendered string."""
    if hasattr(prompt, "tolist"):  # a message list read back from parquet is a numpy array
        prompt = prompt.tolist()
    if isinstance(prompt, str):
        text = prompt
    elif isinstance(prompt, Sequence) and all(isinstance(m, Mapping) for m in prompt):
        text = tokenizer.apply_chat_template(
            list(prompt), add_generation_prompt=True, tokenize=False
        )
    else:
        raise ValueError(
            f"{where}: prompt must be a rendered string or a list of chat messages, "
            f"got {type(prompt).__name__}"
        )
    # A rendered template may already start with the BOS text the tokenizer adds itself.
    bos = tokenizer.bos_token
    if bos and text.startswith(bos) and tokenizer("x").input_ids[:1] == [tokenizer.bos_token_id]:
        text = text[len(bos) :]
    return text


def dpo_rows(pairs: Sequence[Mapping[str, Any]], tokenizer: Any) -> list[dict[str, str]]:
    """Plain-text prompt/chosen/rejected rows (other keys of a pair, e.g. prompt_id, dropped)."""
    rows = []
    for i, pair in enumerate(pairs):
        where = f"pair {i} ({pair.get('prompt_id', 'no prompt_id')})"
        missing = [k for k in PAIR_KEYS if k not in pair]
        if missing:
            raise ValueError(f"{where} lacks {missing}; a pair needs {list(PAIR_KEYS)}")
        rows.append(
            {
                "prompt": pair_prompt(pair["prompt"], tokenizer, where),
                "chosen": _response_text(pair["chosen"], f"{where}.chosen"),
                "rejected": _response_text(pair["rejected"], f"{where}.rejected"),
            }
        )
    return rows


def tokenize_pair(tokenizer: Any, row: Mapping[str, str]) -> tuple[list[int], list[int], list[int]]:
    """(prompt, chosen, rejected) token ids exactly as TRL's DPOTrainer builds them for text rows.

    EOS closes each response; the prompt is the longest common prefix of the tokenised prompt
    and prompt+response (tokens may merge across the boundary).
    """
    eos = tokenizer.eos_token
    prompt_ids = tokenizer(row["prompt"]).input_ids
    out = []
    for key in ("chosen", "rejected"):
        response = row[key] if row[key].endswith(eos) else row[key] + eos
        out.append(tokenizer(row["prompt"] + response).input_ids)
    prompt_len = min(_common_prefix(prompt_ids, ids) for ids in out)
    return prompt_ids[:prompt_len], out[0][prompt_len:], out[1][prompt_len:]


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def build_dpo_trainer(
    train_dataset: Any,
    sft_model_dir: Path,
    cfg: DPOConfig,
    run_seed: int,
    output_dir: str,
    callbacks: Sequence[Any] = (),
    init_adapter: Path | None = None,
) -> Any:
    """TRL's DPOTrainer: sft + fresh LoRA (or `init_adapter`, trained further), reference =
    adapter off (sft either way), ref log-probs precomputed."""
    from trl import DPOConfig as TRLDPOConfig
    from trl import DPOTrainer

    model, tokenizer = load_model_and_tokenizer(sft_model_dir, cfg.scaling.use_gpu)
    if init_adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(init_adapter), is_trainable=True)
    args = TRLDPOConfig(
        **ray_trainer.hf_args_common(cfg.scaling, run_seed, output_dir),
        learning_rate=cfg.learning_rate,
        per_device_train_batch_size=ray_trainer.per_device_batch(
            cfg.batch_size, cfg.scaling, "dpo.batch_size"
        ),
        num_train_epochs=cfg.epochs,
        beta=cfg.beta,
        loss_type=["sigmoid"],
        max_length=cfg.max_length,
        precompute_ref_log_probs=True,
        # Keep the configured LoRA dropout (METHOD.md: 0.05); the frozen base has none to
        # disable in the supported (Llama-family) models, and the adapter starts at zero.
        disable_dropout=False,
    )
    return DPOTrainer(
        model=model,
        ref_model=None,
        args=args,
        train_dataset=train_dataset,
        processing_class=tokenizer,
        peft_config=None if init_adapter is not None else peft_lora_config(cfg.lora),
        callbacks=list(callbacks),
    )


def pairs_dataset(rows: list[dict[str, str]], data_dir: Path) -> Any:
    """The rows as an on-disk `datasets.Dataset` under `data_dir`, shared by all ranks.

    TRL caches the precomputed reference log-probs beside the dataset's files and only the
    main rank writes them, so every rank must read one dataset from one directory (an
    in-memory dataset would give each rank its own temporary cache path).
    """
    import torch.distributed as dist
    from datasets import Dataset, load_from_disk

    data_dir = Path(data_dir)
    distributed = dist.is_available() and dist.is_initialized()
    if (not distributed or dist.get_rank() == 0) and not (data_dir / "dataset_info.json").is_file():
        Dataset.from_list(rows).save_to_disk(str(data_dir))
    if distributed:
        dist.barrier()
    return load_from_disk(str(data_dir))


def _dpo_worker(config: dict[str, Any]) -> None:
    """The Ray Train loop of one DPO worker; rank 0 writes the adapter (and merged weights)."""
    cfg = DPOConfig.model_validate(config["cfg"])
    ray_trainer.worker_setup(cfg.scaling)
    trainer = build_dpo_trainer(
        pairs_dataset(config["rows"], Path(config["data_dir"])),
        Path(config["sft_model_dir"]),
        cfg,
        config["run_seed"],
        ray_trainer.worker_output_dir(config["name"]),
        config.get("callbacks", ()),
        Path(config["init_adapter"]) if config.get("init_adapter") else None,
    )
    summary = ray_trainer.run_hf_trainer(trainer)
    if not ray_trainer.is_rank_zero():
        return
    summary |= {"kind": "dpo", "pairs": len(config["rows"]), "beta": cfg.beta}
    with ray_trainer.publish_model(Path(config["out_dir"]), summary) as staging:
        trainer.model.save_pretrained(staging)
        trainer.processing_class.save_pretrained(staging)
        if cfg.merge:
            merged = staging / "merged"
            trainer.model.merge_and_unload().save_pretrained(merged)
            trainer.processing_class.save_pretrained(merged)


def train_dpo(
    pairs: list[dict],
    sft_model_dir: Path,
    out_dir: Path,
    cfg: DPOConfig,
    run_seed: int,
    storage_path: Path,
    *,
    callbacks: Sequence[Any] = (),
    init_adapter: Path | None = None,
) -> Path:
    """DPO of `sft_model_dir` on `pairs` (prompt, chosen, rejected); write a LoRA adapter dir.

    `prompt` is the rendered explain prompt (as pairs files store it) or chat messages;
    `chosen`/`rejected` are full responses. With `cfg.merge`, merged weights go to
    `out_dir/merged`. Runs in a Ray Train TorchTrainer (`cfg.scaling`) with checkpoints under
    `storage_path`; a rerun of the same job resumes from them. `callbacks` are extra
    transformers TrainerCallbacks for every worker (they must pickle). `init_adapter`: a
    LoRA adapter of `sft_model_dir` to train further instead of a fresh one.
    """
    from transformers import AutoTokenizer

    if not pairs:
        raise ValueError("train_dpo got no pairs; a strategy with no pairs must skip DPO")
    out_dir = Path(out_dir).resolve()
    sft_model_dir = Path(sft_model_dir).resolve()
    rows = dpo_rows(pairs, AutoTokenizer.from_pretrained(sft_model_dir))
    init = str(Path(init_adapter).resolve()) if init_adapter is not None else None
    name_parts: list[Any] = [str(sft_model_dir), cfg.model_dump(mode="json"), run_seed, rows]
    if init is not None:
        name_parts.append(init)
    name = ray_trainer.run_name("dpo", *name_parts)
    storage_path = Path(storage_path).resolve()
    logger.info("DPO of %s on %d pairs (run %s)", sft_model_dir, len(rows), name)
    ray_trainer.fit_on_ray(
        _dpo_worker,
        {
            "rows": rows,
            "data_dir": str(storage_path / name / "pairs-dataset"),
            "sft_model_dir": str(sft_model_dir),
            "out_dir": str(out_dir),
            "cfg": cfg.model_dump(mode="json"),
            "run_seed": run_seed,
            "name": name,
            "callbacks": list(callbacks),
            "init_adapter": init,
        },
        cfg.scaling,
        storage_path,
        name,
    )
    if not (out_dir / "adapter_config.json").is_file():
        raise ray_trainer.TrainingError(
            f"DPO run {name} finished but wrote no adapter to {out_dir}; with a multi-node "
            "cluster, out_dir must be on storage the rank-0 worker can reach"
        )
    return out_dir
