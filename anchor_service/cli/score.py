"""`anchor-align score`: rate one explanation, or a JSONL file of them, with the judge."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from anchor_service.cli.common import (
    UsageError,
    add_command,
    add_config_args,
    add_model_args,
    add_question_args,
    model_overrides,
    resolve_config,
)
from anchor_service.core.types import CRITERIA
from anchor_service.scoring.item import JudgeItem
from anchor_service.scoring.validate import ItemError, make_item

HELP = "score self-explanations on the five rubric criteria"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub,
        "score",
        run,
        HELP,
        (
            "Score an explanation of a multiple-choice answer on logical coherence, clarity, "
            "relevance, depth of argumentation and factual accuracy (0-3 each, 0-15 in all). "
            "Give one item with --question/--option/--answer/--explanation, or a JSONL file of "
            '{"question", "options", "answer", "explanation"} objects with --input.'
        ),
    )
    add_question_args(p, required=False)
    p.add_argument("--answer", help="the letter the response chose (A, B, ...)")
    p.add_argument("--explanation", help="the explanation to score ('' scores 0, status empty)")
    p.add_argument("--input", help="JSONL file of items to score (one result per line)")
    p.add_argument("--output", help="write results here instead of standard output")
    p.add_argument(
        "--mode",
        choices=["auto", "probability", "generative"],
        help="probability: read digit-token probabilities (default where available); "
        "generative: the judge writes JSON verdicts",
    )
    p.add_argument("--json", action="store_true", help="print JSON results")
    add_model_args(p, "judge")
    add_config_args(p)


def read_items(path: Path) -> list[JudgeItem]:
    """All items of a JSONL file, or UsageError listing every bad line (before any model load)."""
    if not path.is_file():
        raise UsageError(f"--input {path}: file not found")
    items, errors = [], []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            if not isinstance(obj, dict):
                raise ItemError("each line must be a JSON object")
            items.append(
                make_item(
                    obj.get("question"),
                    obj.get("options"),
                    obj.get("answer"),
                    obj.get("explanation"),
                )
            )
        except (json.JSONDecodeError, ItemError) as exc:
            errors.append(f"{path}:{lineno}: {exc}")
    if errors:
        raise UsageError("malformed input, nothing scored:\n  " + "\n  ".join(errors))
    if not items:
        raise UsageError(f"--input {path}: no items")
    return items


def format_text(result: dict) -> str:
    if result["status"] != "scored":
        return f"status: {result['status']}  score: {result['score']}"
    lines = [f"score: {result['score']}/15  (expected {result['score_expected']})"]
    for c in CRITERIA:
        lines.append(f"  {c:<24} {result['verdicts'][c]}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    if args.input:
        if args.question or args.option or args.explanation is not None:
            raise UsageError("give either --input or --question/--option/--explanation, not both")
        items = read_items(Path(args.input))
    else:
        if not args.question or not args.option:
            raise UsageError(
                "give --question, at least two --option, --answer and --explanation (or --input)"
            )
        try:
            items = [make_item(args.question, args.option, args.answer, args.explanation)]
        except ItemError as exc:
            raise UsageError(str(exc)) from None
    extra = model_overrides(args, "judge.model")
    if args.mode:
        extra.append(f"judge.mode={args.mode}")
    cfg = resolve_config(args, extra)

    from anchor_service.compute import resolve_threads, start_threads
    from anchor_service.scoring.scorer import make_judge

    start_threads(resolve_threads(None, cfg.judge.model), "anchor-align score")
    judge = make_judge(cfg.judge)
    t0 = time.perf_counter()
    results = [j.to_dict() for j in judge.score(items)]
    elapsed = time.perf_counter() - t0
    out = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout
    try:
        for r in results:
            out.write((json.dumps(r) if args.json else format_text(r)) + "\n")
    finally:
        if args.output:
            out.close()
    print(f"scored {len(results)} item(s) in {elapsed:.1f}s", file=sys.stderr)
    return 0
