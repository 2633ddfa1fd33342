"""Label-only SFT (METHOD.md step 0): data rows, completion-only loss, a real Ray Train run."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from anchor_service.config import ClusterConfig, SFTConfig, TrainScaling
from anchor_service.core.prompts import answer_prompt, answer_target
from anchor_service.demo.task import generate_demo
from anchor_service.rundir import TRAIN_LOG_FILE
from anchor_service.training import ray_trainer
from anchor_service.training.sft import build_sft_trainer, sft_rows, train_sft


@pytest.fixture(scope="module")
def ray_local():
    import ray

    ray.init(num_cpus=ClusterConfig().num_cpus)
    yield
    ray.shutdown()


def _gold_logprob(model_dir: Path, examples) -> float:
    """Mean log-probability of the gold `Answer: X` turn after the answer prompt."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    total = 0.0
    for ex in examples:
        prompt = answer_prompt(ex.question, ex.options)
        prompt_ids = tokenizer.apply_chat_template(
            prompt, add_generation_prompt=True, return_dict=True
        )["input_ids"]
        full = tokenizer.apply_chat_template(
            prompt + [{"role": "assistant", "content": answer_target(ex.gold)}], return_dict=True
        )["input_ids"]
        ids = torch.tensor([full])
        with torch.no_grad():
            logps = torch.log_softmax(model(ids).logits[0, :-1].float(), dim=-1)
        targets = ids[0, 1:]
        token_logps = logps.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        total += token_logps[len(prompt_ids) - 1 :].sum().item()
    return total / len(examples)


def test_sft_rows_pair_answer_prompt_with_gold_answer_turn():
    examples = generate_demo(4, seed=1, split="train")
    rows = sft_rows(examples)
    for ex, row in zip(examples, rows, strict=True):
        assert row["prompt"] == answer_prompt(ex.question, ex.options)
        assert row["completion"] == [{"role": "assistant", "content": f"Answer: {'ABCD'[ex.gold]}"}]


def test_sft_loss_covers_only_the_answer_turn(random_model_dir, tmp_path):
    examples = generate_demo(3, seed=2, split="train")
    trainer = build_sft_trainer(
        sft_rows(examples), random_model_dir, SFTConfig(batch_size=1), 0, str(tmp_path)
    )
    tokenizer = trainer.processing_class
    for ex, row in zip(examples, trainer.train_dataset, strict=True):
        ids, labels = row["input_ids"], row["labels"]
        learned = [t for t, label in zip(ids, labels, strict=True) if label != -100]
        assert tokenizer.decode(learned).startswith(answer_target(ex.gold))
        # Everything before the answer turn (system, question, options) is masked out.
        first = next(i for i, label in enumerate(labels) if label != -100)
        assert all(label != -100 for label in labels[first:])
        assert ex.question in tokenizer.decode(ids[:first])


def test_per_device_batch_needs_one_example_per_worker():
    with pytest.raises(ValueError, match="sft.batch_size=1 is smaller than"):
        ray_trainer.per_device_batch(1, TrainScaling(num_workers=2), "sft.batch_size")
    assert ray_trainer.per_device_batch(8, TrainScaling(num_workers=2), "sft.batch_size") == 4


def test_sft_raises_gold_answer_probability_and_writes_merged_model(
    ray_local, random_model_dir, tmp_path
):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    examples = generate_demo(32, seed=3, split="train")
    cfg = SFTConfig(
        learning_rate=5e-3,
        batch_size=8,
        epochs=2,
        scaling=TrainScaling(save_steps=4, torch_threads=1),
    )
    out = train_sft(examples, random_model_dir, tmp_path / "sft", cfg, 7, tmp_path / "ray")

    before = _gold_logprob(random_model_dir, examples)
    after = _gold_logprob(out, examples)
    assert after > before + 1.0, (before, after)

    files = {p.name for p in out.iterdir()}
    assert "model.safetensors" in files and "tokenizer.json" in files
    assert not any(name.startswith("adapter_") for name in files), files
    model = AutoModelForCausalLM.from_pretrained(out)
    assert not hasattr(model, "peft_config")
    assert AutoTokenizer.from_pretrained(out).chat_template
    summary = ray_trainer.read_summary(out)
    assert summary["kind"] == "sft" and summary["use_lora"] is True
    assert summary["global_step"] == 8 and summary["resumed_from_step"] == 0
    log = pd.read_parquet(out / TRAIN_LOG_FILE)
    assert list(log["step"]) == list(range(1, 9)) and log["loss"].notna().all()
