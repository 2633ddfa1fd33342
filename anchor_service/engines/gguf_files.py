"""Local GGUF files: their sha256 (hashed once per file version) and conversion to safetensors.

A `.gguf` path given as a model name is converted once into the anchor cache under a key
derived from the file's sha256, so a renamed or copied file reuses the conversion and a
changed file gets a new one. Hashing a gigabyte takes seconds, so digests are kept in a small
JSON index keyed by resolved path, size and mtime: a lookup of an unchanged file costs one
`stat`.

Conversion uses transformers' GGUF loader (the `gguf` package), which dequantizes every
tensor to float32; the result is saved as safetensors in the requested dtype together with
the tokenizer, whose chat template must survive the save (every prompt is rendered with it).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from anchor_service.engines.base import EngineError
from anchor_service.engines.packaged import file_sha256

log = logging.getLogger(__name__)

# At or below this many parameters a local GGUF is stored in float32 (exactly the
# dequantized values, at most ~1 GiB); above it in bfloat16, half the disk and RAM.
FLOAT32_MAX_PARAMS = 300_000_000


def cached_sha256(path: Path, index: Path) -> str:
    """The file's sha256, from `index` when path, size and mtime are unchanged."""
    from filelock import FileLock

    resolved = path.resolve()
    st = resolved.stat()
    stamp = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
    entry = _read_index(index).get(str(resolved))
    if entry and {k: entry.get(k) for k in stamp} == stamp and entry.get("sha256"):
        return entry["sha256"]
    log.info("hashing %s (once per file version)", resolved)
    digest = file_sha256(resolved)
    index.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(index) + ".lock"):
        table = _read_index(index)
        table[str(resolved)] = {**stamp, "sha256": digest}
        tmp = index.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(table, indent=1, sort_keys=True))
        os.replace(tmp, index)
    return digest


def _read_index(index: Path) -> dict:
    """The hash index, empty when absent or unreadable (it is only a cache)."""
    try:
        table = json.loads(index.read_text())
    except (OSError, ValueError):
        return {}
    return table if isinstance(table, dict) else {}


def gguf_architecture_and_params(path: Path) -> tuple[str, int]:
    """`general.architecture` and the parameter count of a GGUF, read from its header."""
    from gguf import GGUFReader

    try:
        reader = GGUFReader(path)
        field = reader.fields["general.architecture"]
        arch = bytes(field.parts[field.data[0]]).decode()
    except (ValueError, KeyError, OSError) as exc:
        raise EngineError(f"{path} is not a readable GGUF file ({exc})") from None
    return arch, sum(int(t.n_elements) for t in reader.tensors)


def default_dtype(path: Path) -> str:
    """float32 for small models (exact), bfloat16 above FLOAT32_MAX_PARAMS parameters."""
    _, params = gguf_architecture_and_params(path)
    return "float32" if params <= FLOAT32_MAX_PARAMS else "bfloat16"


def convert_gguf(gguf: Path, out: Path, dtype: str, name: str) -> None:
    """Dequantize `gguf` and save it as `dtype` safetensors + tokenizer in `out` (new dir)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    arch, params = gguf_architecture_and_params(gguf)
    log.info("converting %s (%s, %.0fM parameters) to %s", gguf, arch, params / 1e6, dtype)
    folder, file = str(gguf.parent), gguf.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=file)
        model = AutoModelForCausalLM.from_pretrained(
            folder,
            gguf_file=file,
            dtype=getattr(torch, dtype),
            # Plain dense weights: packed GGUF blocks could not be saved as safetensors.
            quantization_config=GgufConfig(dequantize=True),
        )
    except (ValueError, KeyError, NotImplementedError) as exc:
        raise EngineError(
            f"transformers cannot load {gguf} (architecture {arch}): {exc}. Use a GGUF of an "
            "architecture transformers' GGUF loader supports (llama, qwen2, ...)"
        ) from None
    # The loader dequantized on load; the quantizer left behind only blocks saving.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    out.mkdir(parents=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    del model
    reloaded = AutoTokenizer.from_pretrained(out)
    if not reloaded.chat_template:
        raise EngineError(
            f"the converted {name} tokenizer in {out} has no chat template (the GGUF {gguf} "
            "carries none, or this transformers version dropped it); use an instruct GGUF "
            "with tokenizer.chat_template"
        )
