"""Implicit reward margins of a DPO adapter: does it prefer chosen over rejected more than `sft`?

margin = beta * [(log p_pol(chosen) - log p_ref(chosen)) - (log p_pol(rejected) - log p_ref(rejected))]
with the reference = the same model with the adapter switched off, so the reference's own
margin is 0 by definition and a trained adapter's mean margin on its pairs should be > 0.
Sequences are tokenised exactly as the DPO trainer saw them (`dpo.tokenize_pair`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from anchor_service.training.dpo import dpo_rows, tokenize_pair

# Sequences per forward pass: chosen and rejected of 4 pairs.
BATCH_SEQUENCES = 8


def _completion_logps(model: Any, sequences: list[tuple[list[int], list[int]]], pad_id: int) -> Any:
    """Sum of log-probs of each completion given its prompt, for a batch of (prompt, completion)."""
    import torch

    width = max(len(p) + len(c) for p, c in sequences)
    input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(sequences), width), dtype=torch.long)
    completion = torch.zeros((len(sequences), width), dtype=torch.bool)
    for i, (prompt, comp) in enumerate(sequences):
        ids = prompt + comp
        input_ids[i, : len(ids)] = torch.tensor(ids)
        attention[i, : len(ids)] = 1
        completion[i, len(prompt) : len(ids)] = True
    logits = model(input_ids=input_ids, attention_mask=attention).logits.float()
    # Token t is predicted by position t-1.
    logps = torch.log_softmax(logits[:, :-1], dim=-1)
    token_logps = logps.gather(-1, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    return (token_logps * completion[:, 1:]).sum(dim=1)


def implicit_reward_margins(
    adapter_dir: Path,
    sft_model_dir: Path,
    pairs: Sequence[Mapping[str, Any]],
    beta: float,
) -> list[float]:
    """Per pair: beta * (policy-minus-reference log-ratio of chosen - that of rejected)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(sft_model_dir)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    base = AutoModelForCausalLM.from_pretrained(sft_model_dir, dtype=torch.float32)
    model = PeftModel.from_pretrained(base, str(adapter_dir)).eval()

    sequences: list[tuple[list[int], list[int]]] = []
    for row in dpo_rows(pairs, tokenizer):
        prompt, chosen, rejected = tokenize_pair(tokenizer, row)
        sequences += [(prompt, chosen), (prompt, rejected)]

    policy, reference = [], []
    with torch.no_grad():
        for start in range(0, len(sequences), BATCH_SEQUENCES):
            batch = sequences[start : start + BATCH_SEQUENCES]
            policy.append(_completion_logps(model, batch, pad_id))
            with model.disable_adapter():
                reference.append(_completion_logps(model, batch, pad_id))
    ratio = torch.cat(policy) - torch.cat(reference)
    chosen_ratio, rejected_ratio = ratio[0::2], ratio[1::2]
    return (beta * (chosen_ratio - rejected_ratio)).tolist()
