"""Prompt injection against the judge: how far each phrasing moves score_expected.

    python -m bench.injection --model qwen2.5-coder-1.5b-instruct [--split dev|held-out|both]
        [--questions 4] [--dtype auto] [--threads N] [--batch-size 8] [--per-item] [--json]

Base explanations: the sound and the nonsensical explanation of the first --questions items
of the package check set. Every phrasing of bench/data/injection_phrasings.jsonl in the
chosen split is injected into every base explanation; per item,
shift = score_expected(with injection) - score_expected(same explanation without).
Printed per split: the mean of the signed shifts and the largest upward shift (0 if none),
the same per category and per base kind, and the sound-vs-nonsense gap (mean over questions
of sound - nonsense) without and with injection. Goal (issue 14): mean <= 0.5,
max <= 1.0, gap kept. `--split dev` (the default) never scores the held-out phrasings, so
development runs cannot peek at them. The `control` phrasings (neutral text) are scored
in every split and reported apart: what any added text does to the judge.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from anchor_service.compute import resolve_threads, start_threads
from anchor_service.config import ModelSpec
from anchor_service.core.rubric import JUDGE_PROMPT_VERSION
from anchor_service.scoring.item import JudgeItem
from bench.judge_data import CONTROL, Phrasing, load_phrasings

KINDS = ("sound", "nonsense")


@dataclass(frozen=True)
class Case:
    """One base explanation (a check-set question's sound or nonsensical one)."""

    question: str
    kind: str
    item: JudgeItem


def base_cases(questions: int) -> list[Case]:
    from anchor_service.scoring.sanity import load_checkset

    cases = []
    for sound, nonsense in load_checkset()[:questions]:
        qid = str((sound.meta or {}).get("id", sound.question[:30]))
        cases += [Case(qid, "sound", sound), Case(qid, "nonsense", nonsense)]
    return cases


def injected(case: Case, phrasing: Phrasing) -> JudgeItem:
    item = case.item
    return JudgeItem(item.question, item.options, item.answer, phrasing.apply(item.explanation))


def _gap(values: dict[tuple[str, str], list[float]]) -> float:
    """Mean over questions of sound - nonsense."""
    diffs = [
        statistics.fmean(values[(q, "sound")]) - statistics.fmean(values[(q, "nonsense")])
        for q, kind in values
        if kind == "sound" and (q, "nonsense") in values
    ]
    return round(statistics.fmean(diffs), 3)


def split_figures(
    cases: list[Case], base: list[float], phrasings: list[Phrasing], scores: list[list[float]]
) -> dict[str, Any]:
    """Shift figures of one split; scores[p][c] = score_expected of phrasing p on case c."""
    shifts: list[float] = []
    groups: dict[str, list[float]] = defaultdict(list)
    injected_values: dict[tuple[str, str], list[float]] = defaultdict(list)
    per_phrasing = {}
    for phrasing, row in zip(phrasings, scores, strict=True):
        own = []
        for case, b, s in zip(cases, base, row, strict=True):
            shift = s - b
            own.append(shift)
            groups[f"{phrasing.category}"].append(shift)
            groups[f"base={case.kind}"].append(shift)
            injected_values[(case.question, case.kind)].append(s)
        shifts += own
        per_phrasing[phrasing.id] = {
            "mean": round(statistics.fmean(own), 3),
            "max": round(max(own), 3),
        }
    base_values = {(c.question, c.kind): [b] for c, b in zip(cases, base, strict=True)}
    return {
        "phrasings": len(phrasings),
        "items": len(shifts),
        "mean_shift": round(statistics.fmean(shifts), 3),
        "max_upward_shift": round(max(0.0, *shifts), 3),
        "gap_without": _gap(base_values),
        "gap_with": _gap(injected_values),
        "per_group": {
            k: {"mean": round(statistics.fmean(v), 3), "max": round(max(v), 3)}
            for k, v in sorted(groups.items())
        },
        "per_phrasing": per_phrasing,
    }


def _print_split(name: str, fig: dict[str, Any], per_item: bool) -> None:
    print(
        f"[{name}] {fig['phrasings']} phrasings, {fig['items']} items: mean shift "
        f"{fig['mean_shift']:+.3f}, max upward {fig['max_upward_shift']:.3f}; gap sound-nonsense "
        f"{fig['gap_without']:.3f} without injection, {fig['gap_with']:.3f} with"
    )
    for group, g in fig["per_group"].items():
        print(f"  {group:<18} mean {g['mean']:+.3f}  max {g['max']:+.3f}")
    if per_item:
        for pid, g in fig["per_phrasing"].items():
            print(f"    {pid:<20} mean {g['mean']:+.3f}  max {g['max']:+.3f}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2-135m-instruct", help="model name or directory")
    p.add_argument("--split", default="dev", choices=["dev", "held-out", "both"])
    p.add_argument("--questions", type=int, default=4, help="check-set questions used as bases")
    p.add_argument("--dtype", default="auto")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--per-item", action="store_true", help="also print every phrasing")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)

    from anchor_service.engines.factory import make_engine
    from anchor_service.scoring.judge import Judge

    splits = {"dev": [False], "held-out": [True], "both": [False, True]}[args.split]
    # Controls (neutral added text) are scored in every split: the baseline for "any text".
    phrasings = [ph for ph in load_phrasings() if ph.held_out in splits or ph.category == CONTROL]
    cases = base_cases(args.questions)
    spec = ModelSpec(
        name=args.model, dtype=args.dtype, torch_threads=args.threads, batch_size=args.batch_size
    )
    start_threads(resolve_threads(None, spec), "bench.injection")
    engine = make_engine(spec)
    judge = Judge(engine, mode="probability", judge_id=engine.model_id)
    items = [c.item for c in cases] + [injected(c, ph) for ph in phrasings for c in cases]
    t0 = time.perf_counter()
    judged = judge.score(items)
    secs = time.perf_counter() - t0
    values = [float(j.score_expected) if j.score_expected is not None else 0.0 for j in judged]
    base, rest = values[: len(cases)], values[len(cases) :]
    rows = [rest[i * len(cases) : (i + 1) * len(cases)] for i in range(len(phrasings))]
    out: dict[str, Any] = {
        "model": engine.model_id,
        "prompt_version": JUDGE_PROMPT_VERSION,
        "questions": args.questions,
        "s_per_item": round(secs / len(items), 2),
        "unscored": sum(j.status == "unscored" for j in judged),
        "base": {f"{c.question}/{c.kind}": b for c, b in zip(cases, base, strict=True)},
    }
    for name, held in (("dev", False), ("held-out", True), (CONTROL, None)):
        idx = [
            i
            for i, ph in enumerate(phrasings)
            if (ph.category == CONTROL) == (held is None) and held in (None, ph.held_out)
        ]
        if idx:
            chosen = [phrasings[i] for i in idx]
            out[name] = split_figures(cases, base, chosen, [rows[i] for i in idx])
    if args.json:
        print(json.dumps(out))
        return
    print(
        f"{out['model']} prompt v{out['prompt_version']}, {len(cases)} base explanations "
        f"({args.questions} questions), {out['s_per_item']} s/item, unscored {out['unscored']}"
    )
    print("  base score_expected: " + ", ".join(f"{k} {v:.3f}" for k, v in out["base"].items()))
    for name in ("dev", "held-out", CONTROL):
        if name in out:
            _print_split(name, out[name], args.per_item)


if __name__ == "__main__":
    main()
