"""The HF engine's keyed sampling vs plain `model.generate` (top-p), same model, same prompts.

    python -m bench.hf_generate --model /tmp/random-llama-3-8b [--device cuda] [--batch 128]
        [--max-tokens 128] [--top-p 0.95] [--temperature 0.8] [--bandwidth-tbs 4.8] [--json F]

Both sides run the same weights in the same process: the engine (`engines/hf.HFEngine`, keyed
counter-based noise, the project's stop handling) and transformers' own sampling loop
(`do_sample=True`, `top_p`, no key), on one batch of `--batch` demo explain prompts, each
to `--max-tokens` new tokens (random weights rarely emit EOS; generated tokens are counted
either way). Best of `--repeats` after a warm-up on each side. Prints generated tok/s of each,
the ratio engine / generate (goal >= 0.9 on a GPU), and each side's fraction of the
weight-read bound: a decoding step must read every weight once, so at most
bandwidth / weight bytes steps per second, times the batch in tokens (`--bandwidth-tbs`: the
device's memory bandwidth in TB/s; 4.8 for an H200, 3.35 for an H100 SXM). On a CPU it is a
smoke run of the same code (the tiny random model), not a figure.
"""

from __future__ import annotations

import argparse
import datetime
import json
import time

import torch

from anchor_service.config import ModelSpec
from anchor_service.engines.base import GenRequest, SamplingParams
from anchor_service.engines.hf import HFEngine
from bench.engines import sampling_requests


def weight_bytes(model: torch.nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_engine(engine: HFEngine, requests: list[GenRequest], params: SamplingParams) -> tuple:
    _sync(engine.device)
    t0 = time.perf_counter()
    out = engine.generate(requests, params)
    _sync(engine.device)
    return time.perf_counter() - t0, sum(c.num_tokens for c in out)


def time_generate(engine: HFEngine, requests: list[GenRequest], params: SamplingParams) -> tuple:
    """transformers' own sampling on the engine's model and tokenised prompts (left-padded)."""
    tok = engine.tokenizer
    tok.padding_side = "left"
    texts = [engine.render(r.prompt) for r in requests]
    enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(engine.device)
    _sync(engine.device)
    t0 = time.perf_counter()
    with torch.inference_mode():
        out = engine.model.generate(
            **enc,
            do_sample=True,
            top_p=params.top_p,
            top_k=0,
            temperature=params.temperature,
            max_new_tokens=params.max_tokens,
            pad_token_id=engine.pad_id,
            eos_token_id=engine.eos_ids or None,
        )
    _sync(engine.device)
    secs = time.perf_counter() - t0
    new = out[:, enc["input_ids"].shape[1] :]
    # A row's tokens end at its first EOS (the rest is padding generate adds after it).
    eos = torch.tensor(engine.eos_ids or [-1], device=new.device)
    done = torch.isin(new, eos).int().cumsum(-1)
    generated = int(((done == 0) | ((done == 1) & torch.isin(new, eos))).sum())
    return secs, generated


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--top-p", type=float, default=0.95)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--bandwidth-tbs", type=float, default=4.8)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)

    spec = ModelSpec(name=args.model, device=args.device, dtype=args.dtype, batch_size=args.batch)
    engine = HFEngine(spec)
    requests = sampling_requests(args.batch, 1, seed=0)
    params = SamplingParams(
        temperature=args.temperature, top_p=args.top_p, max_tokens=args.max_tokens
    )
    warm = SamplingParams(temperature=args.temperature, top_p=args.top_p, max_tokens=4)
    time_engine(engine, requests, warm)
    time_generate(engine, requests, warm)
    best: dict[str, tuple[float, int]] = {}
    for _ in range(args.repeats):
        for name, fn in (("engine", time_engine), ("generate", time_generate)):
            secs, tokens = fn(engine, requests, params)
            if name not in best or tokens / secs > best[name][1] / best[name][0]:
                best[name] = (secs, tokens)
    wbytes = weight_bytes(engine.model)
    bound = args.batch * args.bandwidth_tbs * 1e12 / wbytes  # tok/s if only weight reads cost
    rows = {
        name: {
            "seconds": round(s, 3),
            "tokens": t,
            "tok_s": round(t / s, 1),
            "fraction_of_weight_read_bound": round(t / s / bound, 3),
        }
        for name, (s, t) in best.items()
    }
    ratio = rows["engine"]["tok_s"] / rows["generate"]["tok_s"]
    device = torch.cuda.get_device_name() if engine.device == "cuda" else "cpu"
    print(f"# bench.hf_generate  {datetime.date.today()}  {device}  {args.model}")
    print(
        f"batch {args.batch}, {args.max_tokens} new tokens, T {args.temperature}, top-p "
        f"{args.top_p}, {engine.dtype}, weights {wbytes / 1e9:.2f} GB, weight-read bound "
        f"{bound:.0f} tok/s at {args.bandwidth_tbs} TB/s"
    )
    for name, r in rows.items():
        print(
            f"{name:<9} {r['tok_s']:>9.1f} tok/s  ({r['tokens']} tokens in {r['seconds']:.2f}s, "
            f"{100 * r['fraction_of_weight_read_bound']:.0f}% of the bound)"
        )
    print(f"engine / generate: {ratio:.2f}x (goal >= 0.9 on a GPU)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "rows": rows, "ratio": ratio, "device": device}, f)


if __name__ == "__main__":
    main()
