"""Render chat messages to the exact text a model reads (its own chat template)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from anchor_service.config import ModelSpec


@lru_cache(maxsize=8)
def _tokenizer(name: str):
    from transformers import AutoTokenizer

    from anchor_service.engines.registry import resolve_model

    path = Path(name) if Path(name).is_dir() else resolve_model(name)
    return AutoTokenizer.from_pretrained(str(path))


def render_chat(spec: ModelSpec, messages: list[dict] | str) -> str:
    """The prompt text of `messages` with the generation prompt added (plain text as is)."""
    if isinstance(messages, str):
        return messages
    tok = _tokenizer(spec.tokenizer or spec.name)
    return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
