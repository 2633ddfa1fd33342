"""Step 6: DPO on preference pairs (METHOD.md), TRL's DPOTrainer inside Ray Train.

Policy = `sft` + a fresh LoRA adapter (seeded by run_seed); reference = the same model with the
adapter switched off (`ref_model=None` on a PEFT model: no second copy of the weights), its
log-probabilities computed once before training (`precompute_ref_log_probs`). Sigmoid loss.

Pair prompts: the pairs file stores the *rendered* explain prompt (a string, chat template
applied with the generation prompt), so DPO trains on exactly the tokens the sampler saw. A
prompt given as chat messages is rendered here with the model's template; either way TRL gets
plain-text rows, and the tokenizer's automatic BOS is not doubled.

With several workers each rank computes the reference log-probs of its share of the pairs
once, before training; TRL gathers them into one cache file beside the shared on-disk
dataset (`pairs_dataset`), which every rank then reads, and which a restarted worker group
finds already there. The Ray Train and TRL wiring is the trainer skeleton's
(training/trainer.py); `DPO` is what DPO plugs into it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from anchor_service.config import DPOConfig
from anchor_service.training import trainer
from anchor_service.training.trainer import TrainerSpec, peft_lora_config

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


def _trl_args(cfg: DPOConfig) -> dict[str, Any]:
    return {
        "beta": cfg.beta,
        "loss_type": ["sigmoid"],
        "precompute_ref_log_probs": True,
        # Keep the configured LoRA dropout (METHOD.md: 0.05); the frozen base has none to
        # disable in the supported (Llama-family) models, and the adapter starts at zero.
        "disable_dropout": False,
    }


def _trainer_kwargs(cfg: DPOConfig) -> dict[str, Any]:
    # A PEFT model with no ref_model: the reference is the adapter switched off.
    return {"ref_model": None, "peft_config": peft_lora_config(cfg.lora)}


def _dataset(rows: list[dict[str, str]], run_dir: Path) -> Any:
    return pairs_dataset(rows, run_dir / "pairs-dataset")


def _publish(trained: Any, cfg: DPOConfig, staging: Path) -> None:
    trained.model.save_pretrained(staging)
    trained.processing_class.save_pretrained(staging)
    if cfg.merge:
        merged = staging / "merged"
        trained.model.merge_and_unload().save_pretrained(merged)
        trained.processing_class.save_pretrained(merged)


def _summary(cfg: DPOConfig, rows: list[dict[str, str]]) -> dict[str, Any]:
    return {"pairs": len(rows), "beta": cfg.beta}


DPO = TrainerSpec(
    kind="dpo",
    section=DPOConfig,
    trl_config="DPOConfig",
    trl_trainer="DPOTrainer",
    trl_args=_trl_args,
    trainer_kwargs=_trainer_kwargs,
    dataset=_dataset,
    publish=_publish,
    summary=_summary,
    published_file="adapter_config.json",
    published="adapter",
    unit="pairs",
)
"""DPO in the trainer skeleton: sft + fresh LoRA, adapter-off reference precomputed once."""


def build_dpo_trainer(
    train_dataset: Any,
    sft_model_dir: Path,
    cfg: DPOConfig,
    run_seed: int,
    output_dir: str,
    callbacks: Sequence[Any] = (),
) -> Any:
    """TRL's DPOTrainer on a pairs dataset, outside Ray (tests, benchmarks)."""
    return trainer.build_trainer(
        DPO, train_dataset, sft_model_dir, cfg, run_seed, output_dir, callbacks
    )


def train_dpo(
    pairs: list[dict],
    sft_model_dir: Path,
    out_dir: Path,
    cfg: DPOConfig,
    run_seed: int,
    storage_path: Path,
    **options: Any,
) -> Path:
    """DPO of `sft_model_dir` on `pairs` (prompt, chosen, rejected); write a LoRA adapter dir.

    `prompt` is the rendered explain prompt (as pairs files store it) or chat messages;
    `chosen`/`rejected` are full responses. With `cfg.merge`, merged weights go to
    `out_dir/merged`. Runs in a Ray Train TorchTrainer (`cfg.scaling`) with checkpoints under
    `storage_path`; a rerun of the same job resumes from them. `options` are
    `trainer.train`'s: `callbacks` (extra transformers TrainerCallbacks for every worker; they
    must pickle), `tracking`, `tracking_dir` and `init_adapter` (a LoRA adapter of
    `sft_model_dir` to train further instead of a fresh one).
    """
    from transformers import AutoTokenizer

    if not pairs:
        raise ValueError("train_dpo got no pairs; a strategy with no pairs must skip DPO")
    rows = dpo_rows(pairs, AutoTokenizer.from_pretrained(Path(sft_model_dir).resolve()))
    return trainer.train(
        DPO,
        rows,
        sft_model_dir,
        out_dir,
        cfg,
        run_seed,
        storage_path,
        **options,
    )
