"""A randomly initialised model of a real architecture, for throughput figures without weights.

    python -m bench.random_model --arch llama-3-8b --out /tmp/llama-3-8b-random
        [--tokenizer smollm2-135m-instruct] [--device cuda] [--dtype bfloat16]

No weights larger than the embedded model exist offline, but speed depends on the shapes, not
on the values: a Llama-3-8B-shaped model with random weights runs the same kernels at the same
sizes. The tokenizer (and chat template) is the embedded model's, so the vocabulary is
SmolLM2's 49,152 tokens instead of Llama-3's 128,256 (the output projection is ~6% of the 8B
model's FLOPs per token, so throughput is within a few percent of the real model's). Random
weights rarely emit EOS, so every sample runs to its token cap: count generated tokens, not
samples. Prints the parameter count; writes safetensors + tokenizer to `--out`.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

# Shapes of the published configs (hidden, layers, heads, kv heads, MLP, rope theta, context).
ARCHS: dict[str, dict] = {
    "llama-3-8b": dict(
        hidden_size=4096,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        intermediate_size=14336,
        rope_theta=500000.0,
        max_position_embeddings=8192,
    ),
    "llama-3-70b": dict(
        hidden_size=8192,
        num_hidden_layers=80,
        num_attention_heads=64,
        num_key_value_heads=8,
        intermediate_size=28672,
        rope_theta=500000.0,
        max_position_embeddings=8192,
    ),
    # For smoke runs of the GPU scripts on a CPU.
    "tiny": dict(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=128,
        rope_theta=10000.0,
        max_position_embeddings=2048,
    ),
    "llama-3.2-1b": dict(
        hidden_size=2048,
        num_hidden_layers=16,
        num_attention_heads=32,
        num_key_value_heads=8,
        intermediate_size=8192,
        rope_theta=500000.0,
        max_position_embeddings=8192,
        tie_word_embeddings=True,
    ),
}

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
    "generation_config.json",
    "special_tokens_map.json",
)


def build(arch: str, tokenizer: str, out: Path, device: str, dtype: str) -> int:
    """Write a random `arch` model with `tokenizer`'s files to `out`; returns its parameters."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from anchor_service.engines.registry import resolve_model

    if arch not in ARCHS:
        raise SystemExit(f"unknown --arch {arch!r}; known: {', '.join(ARCHS)}")
    tok_dir = Path(resolve_model(tokenizer))
    tok = AutoTokenizer.from_pretrained(tok_dir)
    config = LlamaConfig(
        vocab_size=len(tok),
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        torch_dtype=dtype,
        **ARCHS[arch],
    )
    torch.manual_seed(0)
    torch_dtype = getattr(torch, dtype)
    with torch.device(device):
        model = LlamaForCausalLM(config).to(torch_dtype)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    for name in TOKENIZER_FILES:
        if (tok_dir / name).is_file() and name != "generation_config.json":
            shutil.copy(tok_dir / name, out / name)
    return sum(p.numel() for p in model.parameters())


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default="llama-3-8b", choices=sorted(ARCHS))
    p.add_argument("--tokenizer", default="smollm2-135m-instruct", help="registry key or dir")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--device", default="cuda", help="where to initialise (cuda is fast)")
    p.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    n = build(args.arch, args.tokenizer, args.out, args.device, args.dtype)
    print(
        f"{args.arch}: {n / 1e9:.2f}B parameters, random, {args.dtype}, written to {args.out} "
        f"in {time.perf_counter() - t0:.0f}s"
    )


if __name__ == "__main__":
    main()
