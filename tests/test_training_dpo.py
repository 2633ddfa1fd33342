"""DPO (METHOD.md step 6): pair rows, adapter-off reference, implicit reward margins, Ray run."""

from __future__ import annotations

import os
import statistics

import pandas as pd
import pytest

from anchor_service.config import ClusterConfig, DPOConfig, TrainScaling
from anchor_service.core.prompts import explain_prompt
from anchor_service.demo.task import demo_response, generate_demo
from anchor_service.rundir import TRAIN_LOG_FILE
from anchor_service.schema import TRAIN_LOG_COLUMNS
from anchor_service.training import ray_trainer
from anchor_service.training.dpo import build_dpo_trainer, dpo_rows, pairs_dataset, train_dpo
from anchor_service.training.margins import implicit_reward_margins


@pytest.fixture(scope="module")
def ray_local():
    import ray

    ray.init(num_cpus=ClusterConfig().num_cpus)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def tokenizer(random_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(random_model_dir)


def _response(answer: str, explanation: str) -> str:
    return f"Answer: {answer}\nExplanation: {explanation}"


def _pairs(tokenizer, n: int) -> list[dict]:
    """Synthetic anchor pairs on demo questions: sound gold explanation vs a wrong answer.

    The prompt is stored rendered, as pairs files store it.
    """
    pairs = []
    for ex in generate_demo(n, seed=5, split="train"):
        rendered = tokenizer.apply_chat_template(
            explain_prompt(ex.question, ex.options), add_generation_prompt=True, tokenize=False
        )
        pairs.append(
            {
                "prompt_id": ex.prompt_id,
                "prompt": rendered,
                "chosen": _response(*demo_response(ex)),
                "rejected": _response(*demo_response(ex, ["wrong_result"])),
            }
        )
    return pairs


def test_dpo_rows_render_chat_messages_like_the_stored_prompt(tokenizer):
    ex = generate_demo(1, seed=5, split="train")[0]
    messages = explain_prompt(ex.question, ex.options)
    stored = _pairs(tokenizer, 1)[0]
    as_messages = dict(stored, prompt=messages, chosen=[{"role": "assistant", "content": "x"}])
    rows = dpo_rows([stored, as_messages], tokenizer)
    assert rows[0]["prompt"] == rows[1]["prompt"]
    assert rows[0]["prompt"].endswith("assistant\n")
    assert rows[1]["chosen"] == "x"
    assert set(rows[0]) == {"prompt", "chosen", "rejected"}


def test_dpo_rows_do_not_double_a_bos_the_tokenizer_adds(random_model_dir):
    """With a tokenizer that prepends BOS, DPO sees the rendered prompt's tokens, BOS once."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(random_model_dir, add_bos_token=True)
    rendered = _pairs(tokenizer, 1)[0]["prompt"]
    assert rendered.startswith(tokenizer.bos_token)
    row = dpo_rows([{"prompt": rendered, "chosen": "a", "rejected": "b"}], tokenizer)[0]
    assert (
        tokenizer(row["prompt"]).input_ids
        == tokenizer(rendered, add_special_tokens=False).input_ids
    )


def test_dpo_rows_name_the_pair_missing_a_response(tokenizer):
    pair = {"prompt_id": "demo/train/9", "prompt": "p", "chosen": "c"}
    with pytest.raises(ValueError, match=r"pair 0 \(demo/train/9\) lacks \['rejected'\]"):
        dpo_rows([pair], tokenizer)


def test_dpo_reference_is_the_adapter_off_model_precomputed_once(
    random_model_dir, tokenizer, tmp_path
):
    """No second model copy; the cached reference log-probs equal the margins' own reference."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from anchor_service.training.dpo import tokenize_pair
    from anchor_service.training.margins import _completion_logps

    pairs = _pairs(tokenizer, 4)
    rows = dpo_rows(pairs, tokenizer)
    cfg = DPOConfig(batch_size=2)
    trainer = build_dpo_trainer(
        pairs_dataset(rows, tmp_path / "data"), random_model_dir, cfg, 0, str(tmp_path / "out")
    )
    assert trainer.ref_model is None and isinstance(trainer.model, PeftModel)
    assert trainer.precompute_ref_logps
    cached = trainer.train_dataset
    base = AutoModelForCausalLM.from_pretrained(random_model_dir, dtype=torch.float32).eval()
    for i, row in enumerate(rows):
        prompt, chosen, rejected = tokenize_pair(tokenizer, row)
        assert cached[i]["chosen_ids"] == chosen and cached[i]["rejected_ids"] == rejected
        with torch.no_grad():
            ref = _completion_logps(base, [(prompt, chosen), (prompt, rejected)], 0).tolist()
        assert ref == pytest.approx(
            [cached[i]["ref_chosen_logps"], cached[i]["ref_rejected_logps"]], abs=1e-3
        )


def test_untrained_adapter_has_zero_margin(random_model_dir, tokenizer, tmp_path):
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from anchor_service.training.trainer import peft_lora_config

    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(random_model_dir),
        peft_lora_config(DPOConfig().lora),
    )
    model.save_pretrained(tmp_path / "fresh")
    margins = implicit_reward_margins(
        tmp_path / "fresh", random_model_dir, _pairs(tokenizer, 3), 0.1
    )
    assert margins == pytest.approx([0.0, 0.0, 0.0], abs=1e-6)


def test_allocator_env_reuses_freed_memory_only_for_cpu_training(monkeypatch):
    for key in ray_trainer.ALLOCATOR_VARS:
        monkeypatch.delenv(key, raising=False)
    cpu = ray_trainer.allocator_env(TrainScaling())
    assert cpu == {"MALLOC_ARENA_MAX": "1", **ray_trainer.REUSE_FREED_MEMORY_ENV}
    assert cpu["MALLOC_MMAP_MAX_"] == "0" and int(cpu["MALLOC_TRIM_THRESHOLD_"]) >= 1 << 30
    assert ray_trainer.allocator_env(TrainScaling(use_gpu=True)) == {"MALLOC_ARENA_MAX": "1"}
    off = TrainScaling(reuse_freed_memory=False)
    assert ray_trainer.allocator_env(off) == {"MALLOC_ARENA_MAX": "1"}
    # A value in the driver's environment wins.
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "1048576")
    assert ray_trainer.allocator_env(TrainScaling())["MALLOC_TRIM_THRESHOLD_"] == "1048576"
    env = ray_trainer.worker_env_vars(TrainScaling())
    assert env["RAY_TRAIN_ENABLE_PRINT_PATCH"] == "0" and env["MALLOC_MMAP_MAX_"] == "0"


def test_dpo_writes_adapter_that_raises_mean_margin(
    ray_local, random_model_dir, tokenizer, tmp_path
):
    from peft import PeftConfig
    from transformers import AutoModelForCausalLM

    pairs = _pairs(tokenizer, 16)
    cfg = DPOConfig(
        learning_rate=5e-3,
        batch_size=4,
        epochs=1,
        merge=True,
        scaling=TrainScaling(save_steps=2, torch_threads=1),
    )
    out = train_dpo(pairs, random_model_dir, tmp_path / "anchor", cfg, 11, tmp_path / "ray")

    assert (out / "adapter_model.safetensors").is_file()
    adapter = PeftConfig.from_pretrained(out)
    assert adapter.r == cfg.lora.r and adapter.lora_alpha == cfg.lora.alpha
    assert AutoModelForCausalLM.from_pretrained(out / "merged") is not None
    summary = ray_trainer.read_summary(out)
    assert summary["kind"] == "dpo" and summary["pairs"] == 16 and summary["global_step"] == 4
    # One worker trains as one process: no DDP wrapper over a world of one.
    assert summary["world_size"] == 1 and "Distributed" not in summary["model_wrapper"]
    assert len(summary["step_seconds"]) == 4 and all(t > 0 for t in summary["step_seconds"])
    # The worker started with the CPU training allocator settings (its runtime_env).
    assert summary["allocator"] == ray_trainer.allocator_env(cfg.scaling)
    assert summary["allocator"]["MALLOC_MMAP_MAX_"] == os.environ.get("MALLOC_MMAP_MAX_", "0")

    margins = implicit_reward_margins(out, random_model_dir, pairs, cfg.beta)
    assert len(margins) == 16
    assert statistics.mean(margins) > 0, margins

    # The per-step log beside the adapter (no tracker configured): every step, with rewards.
    log = pd.read_parquet(out / TRAIN_LOG_FILE)
    assert list(log.columns) == TRAIN_LOG_COLUMNS and list(log["step"]) == [1, 2, 3, 4]
    assert (
        log[["loss", "rewards/chosen", "rewards/rejected", "rewards/margins"]].notna().all().all()
    )
    gap = log["rewards/margins"] - (log["rewards/chosen"] - log["rewards/rejected"])
    assert gap.abs().max() < 1e-5
