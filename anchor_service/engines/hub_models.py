"""Hub model ids -> local snapshot directories, downloaded on first use (as transformers, vLLM).

Only what `from_pretrained` needs is fetched: config, generation config, tokenizer files,
chat template, and the weights, as safetensors when the repository has them (the shards its
index names, so a second copy such as Mistral's `consolidated.safetensors` is skipped), else
PyTorch `.bin` files. `weights=False` fetches config and tokenizer only (a tokenizer for the
`openai` engine's probability mode). Locking, the cache, offline mode, the token and the
errors are `anchor_service.hub_download`'s.
"""

from __future__ import annotations

import json
from pathlib import Path

from anchor_service.engines.base import EngineError
from anchor_service.hub_download import HubAccessError, is_repo_id, snapshot

# Small files a causal LM's from_pretrained reads (top level of the repository only).
META_FILES = [
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "tokenizer.model",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "chat_template.jinja",
    "chat_template.json",
    "model.safetensors.index.json",
    "pytorch_model.bin.index.json",
]


class HubModelError(EngineError):
    """A hub model could not be had (offline, gated, not found, unreachable); says what to do.

    `kind` is HubAccessError's (`offline`, `auth`, `not_found`, `unreachable`, ...)."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


def _shards(snap: Path, index: str) -> list[str]:
    """The weight files a `*.index.json` names."""
    try:
        weight_map = json.loads((snap / index).read_text(encoding="utf-8"))["weight_map"]
        return sorted(set(weight_map.values()))
    except (KeyError, TypeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{index} is not a weight index ({type(exc).__name__}: {exc})") from exc


def weight_files(snap: Path, files: list[str]) -> list[str]:
    """The weight files to load: safetensors shards (or the single file), else `.bin`."""
    top = [f for f in files if "/" not in f]
    for index, single, suffix in (
        ("model.safetensors.index.json", "model.safetensors", ".safetensors"),
        ("pytorch_model.bin.index.json", "pytorch_model.bin", ".bin"),
    ):
        if index in top:
            return _shards(snap, index)
        if single in top:
            return [single]
        others = sorted(f for f in top if f.endswith(suffix))
        if others:
            return others
    raise ValueError(
        "the repository has no weights that transformers loads (model*.safetensors or "
        f"pytorch_model*.bin at its top level; files: {', '.join(top[:12]) or 'none'})"
    )


def _selector(weights: bool):
    def select(snap: Path, files: list[str]) -> list[str]:
        if "config.json" not in files:
            raise ValueError("the repository has no config.json: not a transformers model")
        meta = [f for f in META_FILES if f in files]
        return meta + (weight_files(snap, files) if weights else [])

    return select


def resolve_hub_model(name: str, *, weights: bool = True) -> Path:
    """The snapshot directory of hub model `name`, downloaded on first use. HubModelError."""
    if not is_repo_id(name):
        raise HubModelError(f"'{name}' is not a valid hub id", "not_found")
    try:
        return snapshot(name, _selector(weights), META_FILES, repo_type="model")
    except HubAccessError as exc:
        raise HubModelError(str(exc), exc.kind) from exc
