"""`anchor-align explain`: answer and explain one question with the policy model."""

from __future__ import annotations

import argparse
import json

from anchor_service.cli.common import (
    UsageError,
    add_command,
    add_config_args,
    add_model_args,
    add_question_args,
    model_overrides,
    resolve_config,
)
from anchor_service.scoring.validate import ItemError, make_item

HELP = "answer and explain one multiple-choice question"


def add_parser(sub: argparse._SubParsersAction) -> None:
    description = (
        "Answer a multiple-choice question with the explain prompt "
        "(Answer: <letter> / Explanation: ...), optionally scoring each explanation."
    )
    p = add_command(sub, "explain", run, HELP, description)
    add_question_args(p, required=True)
    p.add_argument("-n", "--n", type=int, default=1, help="number of completions (default 1)")
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    p.add_argument("--top-p", type=float, default=0.95)
    p.add_argument("--max-tokens", type=int, default=256)
    p.add_argument("--seed", type=int, default=0, help="keys the sampling of each completion")
    p.add_argument("--adapter", help="PEFT adapter directory (e.g. a run's models/anchor)")
    p.add_argument("--score", action="store_true", help="also score each explanation")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    add_model_args(p, "policy")
    add_config_args(p)


def run(args: argparse.Namespace) -> int:
    try:
        make_item(args.question, args.option, None, "")
    except ItemError as exc:
        raise UsageError(str(exc)) from None
    if not 1 <= args.n <= 16:
        raise UsageError("--n must be between 1 and 16")
    if args.max_tokens < 1 or args.temperature < 0 or not 0 < args.top_p <= 1:
        raise UsageError("--max-tokens >= 1, --temperature >= 0 and 0 < --top-p <= 1")
    extra = model_overrides(args, "policy")
    if args.adapter:
        extra.append(f"policy.adapter={args.adapter}")
    cfg = resolve_config(args, extra)

    from anchor_service.compute import resolve_threads, start_threads
    from anchor_service.engines.base import SamplingParams
    from anchor_service.engines.factory import make_engine
    from anchor_service.scoring.explain import explain

    # One process, one thread count: the policy's (the judge, if any, shares it).
    start_threads(resolve_threads(None, cfg.policy), "anchor-align explain")
    engine = make_engine(cfg.policy)
    params = SamplingParams(
        temperature=args.temperature, top_p=args.top_p, max_tokens=args.max_tokens
    )
    keys = [(args.seed, "explain", i) for i in range(args.n)]
    outputs = explain(engine, args.question, args.option, args.n, params, keys)
    completions = [
        {"answer": parsed.answer, "explanation": parsed.explanation, "text": comp.text}
        for comp, parsed in outputs
    ]
    if args.score:
        from anchor_service.scoring.scorer import make_judge

        judge = make_judge(cfg.judge)
        items = [
            make_item(args.question, args.option, c["answer"], c["explanation"])
            for c in completions
        ]
        for c, j in zip(completions, judge.score(items), strict=True):
            c["score"] = j.to_dict()
    if args.json:
        print(json.dumps({"completions": completions, "policy": engine.model_id}))
    else:
        for i, c in enumerate(completions):
            head = f"[{i}] Answer: {c['answer'] or '(unparseable)'}"
            if "score" in c:
                head += f"   score: {c['score']['score']}/15"
            print(head)
            print(f"    Explanation: {c['explanation']}")
    return 0
