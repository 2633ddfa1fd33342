"""Render chat messages to the exact text a model reads (its own chat template)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from anchor_service.config import ModelSpec
from anchor_service.engines.tokens import render_prompt


@lru_cache(maxsize=8)
def _tokenizer(name: str):
    from transformers import AutoTokenizer

    from anchor_service.engines.registry import resolve_model

    path = Path(name) if Path(name).is_dir() else resolve_model(name, weights=False)
    return AutoTokenizer.from_pretrained(str(path))


def render_chat(spec: ModelSpec, messages: list[dict] | str) -> str:
    """The prompt text of `messages` with the generation prompt added (plain text as is)."""
    return render_prompt(_tokenizer(spec.tokenizer or spec.name), messages, spec.name)
