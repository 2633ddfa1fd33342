"""Step 5 of METHOD.md: one preference pair per prompt, by strategy, with drop statistics.

Strategies: `anchor` (the method), `rank` (M_Rank), `maxmin` (label-blind best vs worst)
and `label_filter` (`anchor` without the debater).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from anchor_service.core.categorize import categorize
from anchor_service.core.keys import keyed_rng
from anchor_service.core.types import (
    CATEGORIES,
    CONSISTENTLY_CORRECT,
    CONSISTENTLY_INCORRECT,
    EMPTY,
    SCORED,
    UNSCORED,
    VARIABLE,
)

logger = logging.getLogger(__name__)

STRATEGIES: tuple[str, ...] = ("anchor", "rank", "maxmin", "label_filter")
REJECTED_CHOICES: tuple[str, ...] = ("lowest", "highest")

# Drop reasons, in the order select_pair checks them.
EXCLUDED = "excluded"
DEBATER_FAILED = "debater_failed"
DROP_UNSCORED = "unscored"
EMPTY_CHOSEN = "empty_chosen"
IDENTICAL = "identical"
TIE = "tie"
DROP_REASONS: tuple[str, ...] = (
    IDENTICAL,
    TIE,
    DROP_UNSCORED,
    EMPTY_CHOSEN,
    DEBATER_FAILED,
    EXCLUDED,
)

DEBATE_REF = "debate"
# Statuses that take part in the ordering (an empty explanation takes part with score 0).
PARTICIPATING = (SCORED, EMPTY)
STATUSES = (SCORED, UNSCORED, EMPTY)

Rejected = Literal["lowest", "highest"]


def sample_ref(sample_idx: int) -> str:
    """The `chosen_ref`/`rejected_ref` spelling of a sample (`sample:<idx>`)."""
    return f"sample:{sample_idx}"


@dataclass(frozen=True)
class Response:
    """One judged response of a prompt: a sample (`sample:<idx>`) or the accepted debate."""

    ref: str
    sample_idx: int  # the attempt for a debate
    text: str
    answer: str | None
    explanation: str
    correct: bool
    status: str  # SCORED | UNSCORED | EMPTY
    score: int | None
    score_expected: float | None

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(
                f"response {self.ref}: status {self.status!r} is not one of {STATUSES}"
            )
        if self.status == SCORED and self.score is None:
            raise ValueError(
                f"response {self.ref}: status 'scored' needs an integer score; "
                "a response the judge could not score has status 'unscored'"
            )

    @property
    def participates(self) -> bool:
        """Whether it takes part in the ordering (`scored` or `empty`, never `unscored`)."""
        return self.status in PARTICIPATING

    @property
    def can_be_chosen(self) -> bool:
        """A chosen response is scored and has a non-empty explanation."""
        return self.status == SCORED and bool(self.explanation.strip())

    @property
    def ordering_score(self) -> int:
        """The score used for ordering: an empty explanation scores 0 without the judge."""
        if self.status == EMPTY:
            return self.score if self.score is not None else 0
        if self.status == UNSCORED or self.score is None:
            raise ValueError(
                f"response {self.ref}: an unscored response has no place in the ordering; "
                "filter it out first (order_responses does)"
            )
        return self.score


@dataclass(frozen=True)
class PairChoice:
    """The chosen and rejected responses picked for one prompt."""

    prompt_id: str
    category: str
    chosen: Response
    rejected: Response


@dataclass(frozen=True)
class Drop:
    """A prompt that gives no pair, and why (one of DROP_REASONS)."""

    prompt_id: str
    category: str
    reason: str


@dataclass(frozen=True)
class PromptResponses:
    """Everything step 5 needs about one prompt: its samples and, if accepted, its debate."""

    prompt_id: str
    prompt: str  # the rendered explain prompt
    samples: list[Response]
    debate: Response | None = None


@dataclass(frozen=True)
class Pair:
    """One row of `pairs-<strategy>.parquet` (texts are the full responses)."""

    prompt_id: str
    category: str
    prompt: str
    chosen: str
    rejected: str
    chosen_ref: str
    rejected_ref: str
    chosen_score: int
    rejected_score: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def order_key(r: Response) -> tuple:
    """Sort key, ascending = best first: score, score_expected (None lowest), shorter
    explanation, lower sample index (the ref last, so the order is total)."""
    expected_rank = (0, -r.score_expected) if r.score_expected is not None else (1, 0.0)
    return (-r.ordering_score, expected_rank, len(r.explanation), r.sample_idx, r.ref)


def order_responses(rs: Iterable[Response]) -> list[Response]:
    """The participating responses (`scored`/`empty`), best first; `unscored` ones left out."""
    return sorted((r for r in rs if r.participates), key=order_key)


def _check_options(strategy: str, variable_rejected: str, incorrect_rejected: str) -> None:
    if strategy not in STRATEGIES:
        raise ValueError(f"pair strategy {strategy!r} is unknown; use one of {STRATEGIES}")
    for name, value in (
        ("variable_rejected", variable_rejected),
        ("incorrect_rejected", incorrect_rejected),
    ):
        if value not in REJECTED_CHOICES:
            raise ValueError(f"pairs.{name} = {value!r}; use one of {REJECTED_CHOICES}")


@dataclass(frozen=True)
class Pairing:
    """How a strategy pairs the prompts of one category (METHOD.md step 5).

    `chosen` and `rejected` name the candidate pools (`debate`: the accepted debate;
    `correct` / `incorrect`: the samples with that label; `samples`: all samples); `end` is
    the rejected response's end of the ordering (`lowest`, `highest`, `random`: drawn with
    the prompt's key, or the name of the option that decides it); `anchored`: the label
    decides the preference, so the pair can never be a tie.
    """

    chosen: str
    rejected: str
    end: str
    anchored: bool


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


def _check_samples(prompt_id: str, category: str, samples: list[Response]) -> None:
    if category not in CATEGORIES:
        raise ValueError(f"prompt {prompt_id}: category {category!r} is not one of {CATEGORIES}")
    seen = [s.sample_idx for s in samples]
    if len(set(seen)) != len(seen):
        raise ValueError(
            f"prompt {prompt_id}: duplicate sample_idx in {sorted(seen)}; "
            "each sample must appear once (check samples.parquet / scores.parquet joins)"
        )


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
    _check_options(strategy, variable_rejected, incorrect_rejected)
    _check_samples(prompt_id, category, samples)

    def drop(reason: str) -> Drop:
        logger.debug("prompt %s (%s, %s): dropped as %s", prompt_id, category, strategy, reason)
        return Drop(prompt_id=prompt_id, category=category, reason=reason)

    pairing = PAIRINGS[strategy][category]
    if pairing is None:
        return drop(EXCLUDED)
    if pairing.chosen == "debate":
        if debate is None:
            return drop(DEBATER_FAILED)
        if not debate.correct:
            raise ValueError(
                f"prompt {prompt_id}: the debate {debate.ref} is not correct; only an accepted "
                "debate (which parses to the gold letter) may be passed"
            )
    chosen_ordered = order_responses(_pool(pairing.chosen, samples, debate))
    if not chosen_ordered:
        return drop(DROP_UNSCORED)
    eligible = [r for r in chosen_ordered if r.can_be_chosen]
    if not eligible:
        return drop(EMPTY_CHOSEN)
    chosen = eligible[0]

    others = [
        r for r in order_responses(_pool(pairing.rejected, samples, debate)) if r is not chosen
    ]
    if not others:
        return drop(DROP_UNSCORED)
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
        return drop(IDENTICAL)
    if (
        not pairing.anchored
        and chosen.ordering_score == rejected.ordering_score
        and chosen.score_expected == rejected.score_expected
    ):
        return drop(TIE)
    return PairChoice(prompt_id=prompt_id, category=category, chosen=chosen, rejected=rejected)


def _empty_counts(keys: Sequence[str]) -> dict[str, int]:
    return {k: 0 for k in keys}


def build_pairs(
    strategy: str,
    prompts: list[PromptResponses],
    *,
    run_seed: int,
    min_pairs: int = 8,
    variable_rejected: Rejected = "lowest",
    incorrect_rejected: Rejected = "lowest",
) -> tuple[list[Pair], dict[str, Any]]:
    """All pairs of one strategy (sorted by prompt_id) and its `stats-<strategy>.json`.

    stats: strategy, prompts/pairs per category, drops per reason (all six, zeros included),
    drops_by_category, lambda = share of pairs from variable + consistently incorrect (None
    with no pairs), dpo_skipped = fewer pairs than min_pairs. Prompts = pairs + drops in
    every category.
    """
    _check_options(strategy, variable_rejected, incorrect_rejected)
    ids = [p.prompt_id for p in prompts]
    if len(set(ids)) != len(ids):
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        raise ValueError(
            f"build_pairs({strategy}): prompt ids {dupes[:5]} appear more than once; "
            "each prompt must be given once with all its samples"
        )

    n_prompts = _empty_counts(CATEGORIES)
    n_pairs = _empty_counts(CATEGORIES)
    drops = _empty_counts(DROP_REASONS)
    drops_by_category = {c: _empty_counts(DROP_REASONS) for c in CATEGORIES}
    pairs: list[Pair] = []
    for p in sorted(prompts, key=lambda p: p.prompt_id):
        samples = sorted(p.samples, key=lambda s: s.sample_idx)
        category = categorize([s.correct for s in samples])
        n_prompts[category] += 1
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
            drops[result.reason] += 1
            drops_by_category[category][result.reason] += 1
            continue
        n_pairs[category] += 1
        pairs.append(
            Pair(
                prompt_id=p.prompt_id,
                category=category,
                prompt=p.prompt,
                chosen=result.chosen.text,
                rejected=result.rejected.text,
                chosen_ref=result.chosen.ref,
                rejected_ref=result.rejected.ref,
                chosen_score=result.chosen.ordering_score,
                rejected_score=result.rejected.ordering_score,
            )
        )

    stats = pair_stats(strategy, n_prompts, n_pairs, drops, drops_by_category, min_pairs)
    logger.info(
        "pairs %s: %d pairs from %d prompts, drops %s, lambda %s%s",
        strategy,
        len(pairs),
        len(prompts),
        {k: v for k, v in drops.items() if v},
        stats["lambda"],
        f" (fewer than min_pairs={min_pairs}: DPO skipped)" if stats["dpo_skipped"] else "",
    )
    return pairs, stats


def pair_stats(
    strategy: str,
    n_prompts: dict[str, int],
    n_pairs: dict[str, int],
    drops: dict[str, int],
    drops_by_category: dict[str, dict[str, int]],
    min_pairs: int,
) -> dict[str, Any]:
    """`stats-<strategy>.json`: lambda = share of pairs from variable + consistently
    incorrect prompts (None with no pairs); dpo_skipped = fewer pairs than min_pairs."""
    total = sum(n_pairs.values())
    anchored = n_pairs[VARIABLE] + n_pairs[CONSISTENTLY_INCORRECT]
    return {
        "strategy": strategy,
        "prompts": n_prompts,
        "pairs": n_pairs,
        "drops": drops,
        "drops_by_category": drops_by_category,
        "lambda": anchored / total if total else None,
        "dpo_skipped": total < min_pairs,
    }
