"""Tiny test models with the embedded tokenizer: a random one, and a briefly trained one.

The trained model is what fast tests run the pipeline on (ARCHITECTURE.md "Testing"): a
random-initialised Llama trained for a few seconds on demo-task text in the explain format
and on debater prompts, so its outputs parse, some answers are right and some wrong, and the
debater can be accepted. It is cached under `$ANCHOR_CACHE_DIR/test-models/<hash>`, the hash
covering this file's source and the settings, so a change to either builds a new one.
"""

from __future__ import annotations

from pathlib import Path


def build_random_model(
    out: Path, seed: int = 0, hidden: int = 64, layers: int = 2, init_std: float = 0.1
) -> Path:
    """Save a random-initialised fp32 Llama with the embedded tokenizer into `out`.

    `init_std` is above Llama's 0.02 so that next-token logits are not all near-equal: with
    near-ties, argmax is decided by float rounding and tests of exact equality get fragile.
    """
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from anchor_service.engines.registry import EMBEDDED_MODEL, resolve_model

    tokenizer = AutoTokenizer.from_pretrained(resolve_model(EMBEDDED_MODEL))
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=4 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        initializer_range=init_std,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).to(torch.float32)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


# --- the trained tiny model -------------------------------------------------------------------

# Every knob of the trained model; part of its cache key.
SETTINGS: dict = {
    "seed": 0,
    "hidden": 64,
    "layers": 2,
    "train_examples": 256,  # demo questions (seed below, train split) seen in training
    "data_seed": 77,  # not the demo task's default 1234, so pipeline questions stay unseen
    "batch_size": 8,
    "steps": 120,
    "extra_steps": 60,  # trained on in rounds of this many more if the checks fail
    "max_rounds": 3,
    "lr": 1e-2,
    "warmup_steps": 10,
    "check_examples": 16,
    "check_seed": 1234,  # the demo task's default seed: what pipeline tests run on
}

# Explanation quality of the explain-format targets, cycled over the training questions: mostly
# sound, some wrong or defective, so samples differ in correctness and in judged quality.
VARIANTS: tuple[tuple[str, ...], ...] = (
    (),
    (),
    (),
    ("wrong_result",),
    ("no_distractors",),
    ("repetition",),
    ("wrong_result", "no_numbers"),
    ("false_equation",),
)


def _training_rows(settings: dict) -> list[tuple[list[dict], str]]:
    """(chat messages, target) pairs: explain prompts and debater prompts of demo questions."""
    from anchor_service.core.prompts import debater_prompt, explain_prompt
    from anchor_service.demo.task import demo_response, generate_demo

    rows = []
    examples = generate_demo(settings["train_examples"], settings["data_seed"], "train")
    for i, ex in enumerate(examples):
        answer, explanation = demo_response(ex, VARIANTS[i % len(VARIANTS)])
        rows.append(
            (
                explain_prompt(ex.question, ex.options),
                f"Answer: {answer}\nExplanation: {explanation}",
            )
        )
        answer, explanation = demo_response(ex)
        rows.append(
            (
                debater_prompt(ex.question, ex.options, ex.gold),
                f"Answer: {answer}\nExplanation: {explanation}",
            )
        )
    return rows


def _cache_key(settings: dict, rows: list[tuple[list[dict], str]]) -> str:
    """Hash of this file's source, the settings and a sample of the training text.

    The text sample makes a change of prompt wording (core/prompts.py) or of the demo task
    build a new model, without hashing unrelated code.
    """
    import hashlib
    import json

    digest = hashlib.sha256(Path(__file__).read_bytes())
    digest.update(json.dumps(settings, sort_keys=True).encode())
    digest.update(json.dumps(rows[:4], sort_keys=True).encode())
    return digest.hexdigest()[:16]


def _train(out: Path, rows: list[tuple[list[dict], str]], settings: dict) -> None:
    """Train a random-initialised Llama on the rows (loss on the targets only) and save it."""
    import logging
    import random
    import time

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log = logging.getLogger("tiny_model")
    build_random_model(
        out,
        seed=settings["seed"],
        hidden=settings["hidden"],
        layers=settings["layers"],
        init_std=0.02,
    )
    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    data = []
    for messages, target in rows:
        prompt = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        p = tok.encode(prompt, add_special_tokens=False)
        c = tok.encode(target, add_special_tokens=False) + [tok.eos_token_id]
        data.append((p, c))
    opt = torch.optim.AdamW(model.parameters(), lr=settings["lr"], weight_decay=0.0)
    warmup = settings["warmup_steps"]
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup))
    rng = random.Random(settings["seed"])
    torch.manual_seed(settings["seed"])
    total = settings["steps"] + settings["extra_steps"] * (settings["max_rounds"] - 1)
    model.train()
    started = time.perf_counter()
    step = 0
    for round_no in range(settings["max_rounds"]):
        n_steps = settings["steps"] if round_no == 0 else settings["extra_steps"]
        for _ in range(n_steps):
            batch = rng.sample(data, settings["batch_size"])
            width = max(len(p) + len(c) for p, c in batch)
            ids = torch.full((len(batch), width), tok.pad_token_id, dtype=torch.long)
            target = torch.zeros((len(batch), width), dtype=torch.bool)
            for row, (p, c) in enumerate(batch):
                ids[row, : len(p) + len(c)] = torch.tensor(p + c)
                target[row, len(p) : len(p) + len(c)] = True
            # Right padding under a causal mask: no real token sees a pad, so no padding mask
            # (which would also force the slow attention path). fp32: at this size, bf16
            # autocast spends more on casts than it saves.
            hidden = model.model(input_ids=ids).last_hidden_state
            # Logits only where a target token is predicted: the 49k-word head dominates.
            predicts = target[:, 1:]
            logits = model.lm_head(hidden[:, :-1][predicts])
            loss = torch.nn.functional.cross_entropy(logits, ids[:, 1:][predicts])
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            step += 1
            if step % 20 == 0:
                log.info("tiny model step %d/%d loss %.3f", step, total, loss.item())
        model.eval()
        model.save_pretrained(out)
        failures = check_tiny_model(out, settings)
        log.info(
            "tiny model round %d: %d steps in %.0fs, checks: %s",
            round_no,
            step,
            time.perf_counter() - started,
            failures or "passed",
        )
        if not failures:
            return
        model.train()
    raise AssertionError(f"the tiny test model fails its checks after {step} steps: {failures}")


def check_tiny_model(model_dir: Path, settings: dict = SETTINGS) -> list[str]:
    """What the tiny model gets wrong (empty: fit for the pipeline tests).

    Greedy answers to demo test questions: all parse, some right and some wrong; greedy
    debater responses: at least one accepted (gold letter, an explanation, no leak phrase).
    """
    from anchor_service.config import ModelSpec
    from anchor_service.core.parsing import parse_response
    from anchor_service.core.prompts import debater_prompt, explain_prompt
    from anchor_service.demo.task import generate_demo
    from anchor_service.engines.base import GenRequest, SamplingParams
    from anchor_service.engines.hf import HFEngine
    from anchor_service.scoring.debate import ACCEPTED, judge_attempt

    engine = HFEngine(ModelSpec(name=str(model_dir), dtype="float32", device="cpu", batch_size=16))
    n, seed = settings["check_examples"], settings["check_seed"]
    params = SamplingParams(temperature=0.0, max_tokens=48)
    failures = []
    tests = generate_demo(n, seed, "test")
    answers = engine.generate(
        [GenRequest(explain_prompt(e.question, e.options), key=(0, e.prompt_id, 0)) for e in tests],
        params,
    )
    parsed = [parse_response(c.text, e.options) for e, c in zip(tests, answers, strict=True)]
    right = sum(p.answer == e.gold_letter for p, e in zip(parsed, tests, strict=True))
    unparsed = sum(p.answer is None for p in parsed)
    if unparsed:
        failures.append(f"{unparsed}/{n} greedy answers do not parse, e.g. {answers[0].text!r}")
    if not 0 < right < n:
        failures.append(f"{right}/{n} greedy answers right: need some right and some wrong")
    trains = generate_demo(n, seed, "train")
    debates = engine.generate(
        [
            GenRequest(debater_prompt(e.question, e.options, e.gold), key=(0, e.prompt_id, "d"))
            for e in trains
        ],
        params,
    )
    verdicts = [
        judge_attempt(c.text, parse_response(c.text, e.options), e.gold_letter)
        for e, c in zip(trains, debates, strict=True)
    ]
    if ACCEPTED not in verdicts:
        failures.append(f"no debater response accepted: {verdicts}")
    return failures


def tiny_model(settings: dict = SETTINGS) -> Path:
    """The trained tiny model's directory, built once per (source, settings) and cached.

    Safe when several test sessions ask at once: one builds under a file lock into a staging
    directory that is renamed into place only after it passed its checks.
    """
    import os
    import shutil
    import tempfile

    from filelock import FileLock

    from anchor_service.engines.registry import cache_root

    rows = _training_rows(settings)
    root = cache_root() / "test-models"
    final = root / _cache_key(settings, rows)
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / f".{final.name}.lock")):
        if not (final / "config.json").is_file():
            staging = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=root))
            try:
                _train(staging / "model", rows, settings)
                os.replace(staging / "model", final)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
            return final
    failures = check_tiny_model(final, settings)
    assert not failures, f"cached tiny model {final} fails its checks: {failures}"
    return final
