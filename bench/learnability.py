"""Is the demo task learnable by label-only SFT? Base vs SFT accuracy on the answer prompt.

Trains the embedded model (or --model) with TRL's SFTTrainer exactly as step 0 does (answer
prompt, `Answer: <letter>`, completion-only loss; LoRA merged, or full fine-tuning), in
process (no Ray: this measures the model, not the system), then compares greedy accuracy per
demo family on the test split, answer prompt and optionally the explain prompt. `--family
copy` replaces the task with "Which option is the number N?", the easiest possible binding
of an option's content to its letter: if that is not learned, no demo variant will be.

    python -m bench.learnability --n-train 200 --epochs 1 --lr 2e-4
    python -m bench.learnability --family copy --full --lr 1e-4 --epochs 2
    python -m bench.learnability --n-train 200 --curve 10,25,50,100,200 --json curve.json

`--curve` trains one run for the largest step count and evaluates checkpoints taken at each
listed step (a learning curve: accuracy vs SFT steps), `--plot FILE` draws it from one or more
such JSON files.
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

from transformers import TrainerCallback

from anchor_service.config import ModelSpec, SFTConfig, TrainScaling
from anchor_service.core.parsing import parse_response
from anchor_service.core.prompts import answer_prompt, explain_prompt
from anchor_service.core.types import LETTERS
from anchor_service.demo import task as demo
from anchor_service.engines.base import GenRequest, SamplingParams
from anchor_service.engines.hf import HFEngine
from anchor_service.engines.registry import resolve_model
from anchor_service.training.sft import build_sft_trainer, sft_rows


def _copy_task(rng):
    values = rng.sample(range(10, 100), 4)
    draft = demo._extreme(
        "max", values, [str(v) for v in values], "compare", "", None
    )  # reuse the shape, then make the first value the answer
    draft.update(
        family="copy",
        question=f"Which option is the number {values[0]}?",
        result=values[0],
        result_text=str(values[0]),
        distractors=[
            {"text": str(v), "value": v, "why": "another number", "kind": "other"}
            for v in values[1:]
        ],
    )
    return draft


def _bare_letter(text: str, n_options: int) -> str | None:
    """A reply that is only an option letter ("B", "B)", "B."): the answer prompt's letter.

    The pipeline's parser wants an `Answer:` line, which SFT teaches; a base model such as the
    Qwen 0.5B replies with the bare letter, and counting that as unparseable would put its
    base point at 0% instead of what it knows.
    """
    m = re.fullmatch(r"\s*\(?([A-Z])[).:]?\s*", text)
    return m.group(1) if m and m.group(1) in LETTERS[:n_options] else None


def accuracy(model_dir: Path, test, explain: bool) -> dict:
    """Greedy accuracy per family (answer prompt; explain prompt too if asked)."""
    engine = HFEngine(
        ModelSpec(name=str(model_dir), dtype="bfloat16", batch_size=50, max_model_len=1024)
    )
    out = {}
    for kind, prompt, max_tokens in (("answer", answer_prompt, 6), ("explain", explain_prompt, 96)):
        if kind == "explain" and not explain:
            continue
        requests = [
            GenRequest(prompt=prompt(e.question, e.options), key=(0, e.prompt_id, 0)) for e in test
        ]
        completions = engine.generate(
            requests, SamplingParams(temperature=0.0, max_tokens=max_tokens)
        )
        per_family: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        letters: Counter = Counter()
        bare = 0
        for example, completion in zip(test, completions, strict=True):
            answer = parse_response(completion.text, example.options).answer
            if answer is None and kind == "answer":
                answer = _bare_letter(completion.text, len(example.options))
                bare += answer is not None
            family = example.meta["family"]
            per_family[family][1] += 1
            per_family[family][0] += answer == LETTERS[example.gold]
            letters[answer or "unparseable"] += 1
        right = sum(v[0] for v in per_family.values())
        out[kind] = {
            "accuracy": right / len(test),
            "per_family": {k: f"{v[0]}/{v[1]}" for k, v in sorted(per_family.items())},
            "answers": dict(letters.most_common()),
            "bare_letter": bare,
        }
    return out


class _SaveAtSteps(TrainerCallback):
    """Saves the model (the LoRA adapter, or all weights) at the given steps."""

    def __init__(self, steps: set[int], out: Path) -> None:
        self.steps, self.out = steps, out

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step in self.steps and model is not None:
            model.save_pretrained(self.out / f"step-{state.global_step}")
        return control


def _merged(ckpt: Path, base: Path, use_lora: bool, tokenizer, out: Path) -> Path:
    """A loadable model directory for a checkpoint: the adapter merged into the base."""
    if not use_lora:
        tokenizer.save_pretrained(ckpt)
        return ckpt
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    model = PeftModel.from_pretrained(model, ckpt).merge_and_unload()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def learning_curve(train, test, base: Path, cfg: SFTConfig, steps: list[int]) -> list[dict]:
    """Answer-prompt accuracy at each SFT step count, from checkpoints of one run."""
    points = [{"step": 0, **accuracy(base, test, False)["answer"]}]
    print("curve", json.dumps(points[-1]), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        saver = _SaveAtSteps(set(steps), Path(tmp))
        trainer = build_sft_trainer(
            sft_rows(train), base, cfg, 0, str(Path(tmp) / "ckpt"), callbacks=[saver]
        )
        trainer.args.save_strategy = "no"
        trainer.args.max_steps = max(steps)
        t0 = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - t0
        losses = {h["step"]: h["loss"] for h in trainer.state.log_history if "loss" in h}
        for step in sorted(steps):
            model_dir = _merged(
                Path(tmp) / f"step-{step}",
                base,
                cfg.use_lora,
                trainer.processing_class,
                Path(tmp) / f"merged-{step}",
            )
            near = [v for k, v in losses.items() if k <= step][-5:]
            loss = round(sum(near) / len(near), 4) if near else None
            point = {"step": step, "loss": loss, **accuracy(model_dir, test, False)["answer"]}
            points.append(point)
            print("curve", json.dumps(point), flush=True)
    points[0]["train_seconds_total"] = round(seconds, 1)
    return points


def plot(files: list[str], out: str) -> None:
    """Accuracy vs SFT steps, one line per curve JSON (label: model, lr, LoRA/full, n)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for f in files:
        data = json.loads(Path(f).read_text())
        a = data["args"]
        label = (
            f"{Path(a['model']).name} lr {a['lr']:g} {'full' if a['full'] else 'LoRA'} "
            f"n={a['n_train']}"
        )
        pts = data["curve"]
        ax.plot([p["step"] for p in pts], [100 * p["accuracy"] for p in pts], "o-", label=label)
    ax.axhline(25, color="grey", linestyle=":", label="chance (25%)")
    ax.set_xlabel("SFT optimizer steps (batch 8)")
    ax.set_ylabel("test accuracy, answer prompt (%)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=7)
    ax.set_title("Label-only SFT on the demo task: accuracy vs steps")
    fig.tight_layout()
    fig.savefig(out, dpi=120)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--family", choices=[*demo.FAMILIES, "copy", "mixed"], default="mixed")
    ap.add_argument("--n-train", type=int, default=100)
    ap.add_argument("--n-test", type=int, default=100)
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--full", action="store_true", help="full fine-tuning instead of LoRA")
    ap.add_argument("--explain", action="store_true", help="also the explain prompt")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--curve", default=None, help="comma-separated step counts: a learning curve")
    ap.add_argument("--json", default=None, help="write the result (and curve) to this file")
    ap.add_argument("--plot", nargs="+", default=None, help="curve JSON files to draw")
    ap.add_argument("--plot-out", default="learning-curve.png")
    args = ap.parse_args(argv)
    if args.plot:
        plot(args.plot, args.plot_out)
        return

    if args.family == "copy":
        demo._DRAFTERS["arithmetic"] = _copy_task
    if args.family != "mixed":
        demo._FAMILY_WEIGHTS = tuple(
            1.0 if f == (args.family if args.family != "copy" else "arithmetic") else 0.0
            for f in demo.FAMILIES
        )
    train = demo.generate_demo(args.n_train, 1234, "train")
    test = demo.generate_demo(args.n_test, 1234, "test")
    base = resolve_model(args.model)
    cfg = SFTConfig(
        use_lora=not args.full,
        learning_rate=args.lr,
        epochs=args.epochs,
        batch_size=8,
        max_length=384,
        scaling=TrainScaling(num_workers=1, cpus_per_worker=1, torch_threads=args.threads),
    )
    if args.curve:
        steps = sorted({int(x) for x in args.curve.split(",")})
        result = {"args": vars(args), "curve": learning_curve(train, test, base, cfg, steps)}
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=1))
        return
    result = {"args": vars(args), "base": accuracy(base, test, args.explain)}
    print("base", json.dumps(result["base"]), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        trainer = build_sft_trainer(sft_rows(train), base, cfg, 0, str(Path(tmp) / "ckpt"))
        trainer.args.save_strategy = "no"
        trainer.train()
        model = trainer.model.merge_and_unload() if cfg.use_lora else trainer.model
        model.save_pretrained(Path(tmp) / "sft")
        trainer.processing_class.save_pretrained(Path(tmp) / "sft")
        result["sft_seconds"] = round(time.perf_counter() - t0, 1)
        losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
        result["final_loss"] = round(sum(losses[-5:]) / max(1, len(losses[-5:])), 4)
        result["sft"] = accuracy(Path(tmp) / "sft", test, args.explain)
    print("sft", json.dumps(result["sft"]), flush=True)
    base_acc, sft_acc = result["base"]["answer"]["accuracy"], result["sft"]["answer"]["accuracy"]
    print(
        f"answer-prompt accuracy: base {base_acc:.2f} -> sft {sft_acc:.2f} "
        f"(chance 0.25); last-5-steps loss {result['final_loss']} "
        f"(ln 4 / tokens per target = chance on the letter); SFT {result['sft_seconds']} s"
    )


if __name__ == "__main__":
    main()
