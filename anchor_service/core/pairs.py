"""Step 5 of METHOD.md: one preference pair per prompt, by strategy, with drop statistics.

Strategies: `anchor` (the method), `rank` (M_Rank), `maxmin` (label-blind best vs worst)
and `label_filter` (`anchor` without the debater).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from anchor_service.core.categorize import categorize
from anchor_service.core.keys import keyed_rng
from anchor_service.core.types import (
    CATEGORIES,
    CONSISTENTLY_CORRECT,
    CONSISTENTLY_INCORRECT,
    DEBATER_FAILED,
    DROP_REASONS,
    DROP_UNSCORED,
    EMPTY,
    EMPTY_CHOSEN,
    EXCLUDED,
    IDENTICAL,
    SCORED,
    TIE,
    UNSCORED,
    VARIABLE,
    Drop,
    Pair,
    PairChoice,
    Pairing,
    PromptResponses,
    Rejected,
    Response,
    check_pair_options,
    check_prompt_samples,
    check_unique_prompts,
)


def rank_value(score: int, score_expected: float | None) -> tuple[int, int, float]:
    """How a judged response ranks, higher = better: its score, then score_expected, a
    missing score_expected below any value. The one ordering rule of the project: the pair
    builder, the judges' sanity figure and their agreement with the oracle all use it."""
    return (score, 0, 0.0) if score_expected is None else (score, 1, score_expected)


def participates(r: Response) -> bool:
    """Whether it takes part in the ordering (`scored` or `empty`, never `unscored`)."""
    return r.status in (SCORED, EMPTY)


def can_be_chosen(r: Response) -> bool:
    """A chosen response is scored and has a non-empty explanation."""
    return r.status == SCORED and bool(r.explanation.strip())


def ordering_score(r: Response) -> int:
    """The score used for ordering: an empty explanation scores 0 without the judge."""
    if r.status == EMPTY:
        return r.score if r.score is not None else 0
    if r.status == UNSCORED or r.score is None:
        raise ValueError(
            f"response {r.ref}: an unscored response has no place in the ordering; "
            "filter it out first (order_responses does)"
        )
    return r.score


def order_key(r: Response) -> tuple:
    """Sort key, ascending = best first: rank_value descending, then the shorter
    explanation, the lower sample index (the ref last, so the order is total)."""
    worse_first = tuple(-v for v in rank_value(ordering_score(r), r.score_expected))
    return (*worse_first, len(r.explanation), r.sample_idx, r.ref)


def order_responses(rs: Iterable[Response]) -> list[Response]:
    """The participating responses (`scored`/`empty`), best first; `unscored` ones left out."""
    return sorted((r for r in rs if participates(r)), key=order_key)


_BLIND = Pairing("samples", "samples", "lowest", anchored=False)
_VARIABLE = Pairing("correct", "incorrect", "variable_rejected", anchored=True)
_DEBATE = Pairing("debate", "samples", "incorrect_rejected", anchored=True)
_RANK = Pairing("samples", "samples", "random", anchored=False)

# strategy -> category -> pairing; None: the category gives no pair (`excluded`).
PAIRINGS: dict[str, dict[str, Pairing | None]] = {
    "anchor": {CONSISTENTLY_CORRECT: _BLIND, VARIABLE: _VARIABLE, CONSISTENTLY_INCORRECT: _DEBATE},
    "label_filter": {
        CONSISTENTLY_CORRECT: _BLIND,
        VARIABLE: _VARIABLE,
        CONSISTENTLY_INCORRECT: None,
    },
    "maxmin": dict.fromkeys(CATEGORIES, _BLIND),
    "rank": dict.fromkeys(CATEGORIES, _RANK),
}


def _pool(name: str, samples: list[Response], debate: Response | None) -> list[Response]:
    if name == "debate":
        return [debate] if debate is not None else []
    if name == "correct":
        return [s for s in samples if s.correct]
    if name == "incorrect":
        return [s for s in samples if not s.correct]
    return list(samples)


def select_pair(
    strategy: str,
    prompt_id: str,
    category: str,
    samples: list[Response],
    debate: Response | None,
    *,
    run_seed: int,
    variable_rejected: Rejected = "lowest",
    incorrect_rejected: Rejected = "lowest",
) -> PairChoice | Drop:
    """Pick at most one (chosen, rejected) pair for a prompt, exactly as METHOD.md step 5.

    The pools and the rejected end come from PAIRINGS. Chosen is the best-ordered response
    of its pool that may be chosen (`scored`, non-empty explanation); rejected is any other
    participating response of its pool (`scored` or `empty`), at the pairing's end; `rank`
    draws it uniformly from the others (listed by sample index) with
    keyed_rng((run_seed, "rank", prompt_id)).

    Drop rule, checked in this order (first match wins):
    1. `excluded`: the pairing is None (label_filter on a consistently-incorrect prompt).
    2. `debater_failed`: the chosen pool is the debate and there is no accepted debate.
    3. chosen slot: `unscored` if no candidate of the slot takes part (all `unscored`, e.g. a
       variable prompt whose correct samples all failed the judge, or an unscored debate);
       `empty_chosen` if candidates take part but none is `scored` with a non-empty
       explanation (all `empty`).
    4. rejected slot: `unscored` if no participating candidate other than the chosen one.
    5. `identical`: chosen and rejected texts are equal (exact string comparison).
    6. `tie`: a pairing not label-anchored, equal score and score_expected (None == None).
    """
    check_pair_options(strategy, variable_rejected, incorrect_rejected)
    check_prompt_samples(prompt_id, category, [s.sample_idx for s in samples])
    pairing = PAIRINGS[strategy][category]
    if pairing is None:
        return Drop(prompt_id, category, EXCLUDED)
    if pairing.chosen == "debate":
        if debate is None:
            return Drop(prompt_id, category, DEBATER_FAILED)
        if not debate.correct:
            raise ValueError(
                f"prompt {prompt_id}: the debate {debate.ref} is not correct; only an accepted "
                "debate (which parses to the gold letter) may be passed"
            )
    chosen_ordered = order_responses(_pool(pairing.chosen, samples, debate))
    if not chosen_ordered:
        return Drop(prompt_id, category, DROP_UNSCORED)
    eligible = [r for r in chosen_ordered if can_be_chosen(r)]
    if not eligible:
        return Drop(prompt_id, category, EMPTY_CHOSEN)
    chosen = eligible[0]

    others = [
        r for r in order_responses(_pool(pairing.rejected, samples, debate)) if r is not chosen
    ]
    if not others:
        return Drop(prompt_id, category, DROP_UNSCORED)
    end = {"variable_rejected": variable_rejected, "incorrect_rejected": incorrect_rejected}.get(
        pairing.end, pairing.end
    )
    if end == "random":
        # Listed by sample index so the draw depends only on the key, not on input order.
        rng = keyed_rng((run_seed, "rank", prompt_id))
        rejected = rng.choice(sorted(others, key=lambda r: (r.sample_idx, r.ref)))
    else:
        rejected = others[0] if end == "highest" else others[-1]

    if chosen.text == rejected.text:
        return Drop(prompt_id, category, IDENTICAL)
    if not pairing.anchored and _rank(chosen) == _rank(rejected):
        return Drop(prompt_id, category, TIE)
    return PairChoice(prompt_id=prompt_id, category=category, chosen=chosen, rejected=rejected)


def _rank(r: Response) -> tuple[int, int, float]:
    return rank_value(ordering_score(r), r.score_expected)


def build_pairs(
    strategy: str,
    prompts: list[PromptResponses],
    *,
    run_seed: int,
    min_pairs: int = 8,
    variable_rejected: Rejected = "lowest",
    incorrect_rejected: Rejected = "lowest",
) -> tuple[list[Pair], dict[str, Any]]:
    """All pairs of one strategy (sorted by prompt_id) and its `stats-<strategy>.json`."""
    check_pair_options(strategy, variable_rejected, incorrect_rejected)
    check_unique_prompts(strategy, [p.prompt_id for p in prompts])
    pairs: list[Pair] = []
    outcomes: list[tuple[str, str | None]] = []  # (category, drop reason or None)
    for p in sorted(prompts, key=lambda p: p.prompt_id):
        samples = sorted(p.samples, key=lambda s: s.sample_idx)
        category = categorize([s.correct for s in samples])
        result = select_pair(
            strategy,
            p.prompt_id,
            category,
            samples,
            p.debate,
            run_seed=run_seed,
            variable_rejected=variable_rejected,
            incorrect_rejected=incorrect_rejected,
        )
        if isinstance(result, Drop):
            outcomes.append((category, result.reason))
            continue
        outcomes.append((category, None))
        chosen, rejected = result.chosen, result.rejected
        pairs.append(
            Pair(
                prompt_id=p.prompt_id,
                category=category,
                prompt=p.prompt,
                chosen=chosen.text,
                rejected=rejected.text,
                chosen_ref=chosen.ref,
                rejected_ref=rejected.ref,
                chosen_score=ordering_score(chosen),
                rejected_score=ordering_score(rejected),
            )
        )
    return pairs, pair_stats(strategy, outcomes, min_pairs)


def pair_stats(
    strategy: str, outcomes: list[tuple[str, str | None]], min_pairs: int
) -> dict[str, Any]:
    """`stats-<strategy>.json` from each prompt's (category, drop reason or None for a pair):
    prompts and pairs per category, drops per reason (all six, zeros included) overall and
    per category (prompts = pairs + drops in every category), lambda = share of pairs from
    variable + consistently incorrect prompts (None with no pairs), dpo_skipped = fewer
    pairs than min_pairs."""
    n_pairs = {c: sum(1 for cat, r in outcomes if cat == c and r is None) for c in CATEGORIES}
    by_category = {
        c: {d: sum(1 for cat, r in outcomes if (cat, r) == (c, d)) for d in DROP_REASONS}
        for c in CATEGORIES
    }
    total = sum(n_pairs.values())
    anchored = n_pairs[VARIABLE] + n_pairs[CONSISTENTLY_INCORRECT]
    return {
        "strategy": strategy,
        "prompts": {c: sum(1 for cat, _ in outcomes if cat == c) for c in CATEGORIES},
        "pairs": n_pairs,
        "drops": {d: sum(by_category[c][d] for c in CATEGORIES) for d in DROP_REASONS},
        "drops_by_category": by_category,
        "lambda": anchored / total if total else None,
        "dpo_skipped": total < min_pairs,
    }
