"""Prompt text to token ids, the same way in every local-tokenizer engine (hf, vllm).

Imports nothing but the package's engines.base, so `engines.hf` keeps importing with only
torch and transformers.
"""

from __future__ import annotations

import logging
from typing import Any

from anchor_service.engines.base import EngineError, Prompt

log = logging.getLogger(__name__)


def render_prompt(tokenizer: Any, prompt: Prompt, model_id: str) -> str:
    """Chat messages through the tokenizer's chat template (generation prompt added).

    A last message from the assistant is a reply started for the model: the template leaves it
    open and the completion continues it (the debater's `Answer: <gold>` line).
    """
    if isinstance(prompt, str):
        return prompt
    if not getattr(tokenizer, "chat_template", None):
        raise EngineError(
            f"{model_id} has no chat template, so chat messages cannot be rendered; "
            "use a chat model or pass an already rendered string prompt"
        )
    if prompt and prompt[-1].get("role") == "assistant":
        return tokenizer.apply_chat_template(
            prompt, tokenize=False, add_generation_prompt=False, continue_final_message=True
        )
    return tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)


class TokenizedPrompts:
    """Mixin for engines holding `tokenizer`, `model_id` and `spec` (a ModelSpec)."""

    tokenizer: Any
    model_id: str
    spec: Any

    def render(self, prompt: Prompt) -> str:
        """Chat messages through the tokenizer's chat template (generation prompt added)."""
        return render_prompt(self.tokenizer, prompt, self.model_id)

    def prompt_tokens(self, prompt: Prompt) -> int:
        """How many tokens the prompt is, rendered (before any cut to max_model_len)."""
        return len(self._encode(self.render(prompt)))

    def _encode(self, text: str) -> list[int]:
        # Rendered prompts already carry their special tokens (the template writes them).
        return self.tokenizer.encode(text, add_special_tokens=False)

    def _cut_left(self, ids: list[int], keep: int, what: str) -> list[int]:
        if len(ids) <= keep:
            return ids
        log.warning(
            "%s: %s of %d tokens is cut from the left to %d (model.max_model_len=%d)",
            self.model_id,
            what,
            len(ids),
            keep,
            self.spec.max_model_len,
        )
        return ids[-keep:]

    def _single_token_ids(self, tokens: list[str]) -> list[int]:
        """The id of each token; EngineError naming every token that is not a single id."""
        bad, ids = [], []
        for token in tokens:
            enc = self._encode(token)
            if len(enc) != 1:
                bad.append(f"{token!r} -> {len(enc)} ids {enc}")
            else:
                ids.append(enc[0])
        if bad:
            raise EngineError(
                f"{self.model_id}: these tokens are not single tokens for its tokenizer: "
                f"{'; '.join(bad)}. Probability mode reads one next token per choice: pick "
                "choice tokens that encode to exactly one id, or use generative mode"
            )
        return ids


def cut_judge_prompts(
    full: list[list[int]], limit: int, model_id: str, max_model_len: int
) -> list[list[int]]:
    """Cut every slot's token ids from the left by the same amount so the longest fits `limit`.

    The same cut for every slot keeps their shared prefix shared; the warning says what was lost.
    """
    longest = max(len(f) for f in full)
    if longest <= limit:
        return full
    drop = longest - limit
    log.warning(
        "%s: judge prompt of %d tokens is cut from the left by %d (max_model_len=%d)",
        model_id,
        longest,
        drop,
        max_model_len,
    )
    return [f[drop:] for f in full]
