"""The claims to reproduce (METHOD.md), each condition with a CI from ONE joint paired bootstrap.

Every condition is computed on the same resampled questions for every model, so accuracy
differences and Delta W-L are paired across models, and conditions of one claim are
resampled together.

Verdicts:
- a condition is `supported` when its CI lies wholly on the claimed side of its threshold
  (strictly), `contradicted` when it lies wholly on the other side (the threshold itself
  counts as the other side: a CI of [0, 0] contradicts "> 0"), else `inconclusive`;
- a claim is a conjunction: `contradicted` if any condition is contradicted (one false part
  falsifies it), `supported` if every condition is supported, else `inconclusive`;
  `not_applicable` when a model it needs is missing (e.g. no `rank`), or for `recovery`
  when SFT lost nothing (Delta W-L(sft vs base) >= 0 on the full data).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from anchor_service.core.keys import key_seed
from anchor_service.evaluation.stats import (
    LEVEL,
    N_RESAMPLES,
    bootstrap_indices,
    percentile_ci,
    win_tie_loss,
)

logger = logging.getLogger(__name__)

SUPPORTED = "supported"
CONTRADICTED = "contradicted"
INCONCLUSIVE = "inconclusive"
NOT_APPLICABLE = "not_applicable"
VERDICTS: tuple[str, ...] = (SUPPORTED, CONTRADICTED, INCONCLUSIVE, NOT_APPLICABLE)

CLAIMS: tuple[str, ...] = ("sft_tradeoff", "anchor_beats_rank", "recovery")

# accuracy(anchor) - accuracy(sft) may fall by at most this many points.
ACCURACY_TOLERANCE = -2.0
# More than this fraction of the Delta W-L lost to SFT must come back.
RECOVERY_THRESHOLD = 0.5

Side = Literal[">", "<"]


@dataclass(frozen=True)
class Statistic:
    """A statistic on the full data and its bootstrap replicates (one per resample)."""

    value: float
    replicates: np.ndarray


def condition_verdict(ci_low: float, ci_high: float, side: Side, threshold: float) -> str:
    """`supported` / `contradicted` / `inconclusive` for "statistic <side> threshold"."""
    if side == ">":
        if ci_low > threshold:
            return SUPPORTED
        return CONTRADICTED if ci_high <= threshold else INCONCLUSIVE
    if ci_high < threshold:
        return SUPPORTED
    return CONTRADICTED if ci_low >= threshold else INCONCLUSIVE


def combine_verdicts(verdicts: Sequence[str]) -> str:
    """A claim's verdict from its conditions' (a conjunction; see the module docstring)."""
    if not verdicts:
        return NOT_APPLICABLE
    if CONTRADICTED in verdicts:
        return CONTRADICTED
    if all(v == SUPPORTED for v in verdicts):
        return SUPPORTED
    return INCONCLUSIVE


class _JointBootstrap:
    """All statistics of the claims on one set of resampled question indices."""

    def __init__(
        self,
        correct_by_model: Mapping[str, Sequence[bool]],
        scores_by_model: Mapping[str, Sequence[int | None]],
        seed: int,
        n_resamples: int,
    ) -> None:
        lengths = {
            f"{kind}[{model!r}]": len(column)
            for kind, columns in (("correct", correct_by_model), ("scores", scores_by_model))
            for model, column in columns.items()
        }
        if len(set(lengths.values())) > 1:
            raise ValueError(
                f"claims: models were evaluated on different numbers of questions {lengths}; "
                "pass per-question values of every model on the same questions, same order"
            )
        self.n = next(iter(lengths.values()), 0)
        if self.n == 0:
            raise ValueError("claims: no evaluated questions; the claims need the test split")
        self.correct = {m: np.asarray(c, dtype=bool) for m, c in correct_by_model.items()}
        self.scores = scores_by_model
        self.idx = bootstrap_indices(self.n, key_seed((seed, "claims")), n_resamples)

    def accuracy_diff(self, a: str, b: str) -> Statistic:
        """accuracy(a) - accuracy(b), in points, paired by question."""
        diff = self.correct[a].astype(np.int8) - self.correct[b].astype(np.int8)
        return Statistic(float(100.0 * diff.mean()), 100.0 * diff[self.idx].mean(axis=1))

    def delta_wl(self, a: str, b: str) -> Statistic:
        """Delta W-L of a against b, in points."""
        outcomes = win_tie_loss(self.scores[a], self.scores[b]).outcomes
        return Statistic(float(100.0 * outcomes.mean()), 100.0 * outcomes[self.idx].mean(axis=1))


def _condition(what: str, stat: Statistic, side: Side, threshold: float, level: float) -> dict:
    low, high = percentile_ci(stat.replicates, level)
    return {
        "what": what,
        "value": stat.value,
        "ci_low": low,
        "ci_high": high,
        "verdict": condition_verdict(low, high, side, threshold),
    }


def _sft_tradeoff(boot: _JointBootstrap, level: float) -> list[dict]:
    return [
        _condition(
            "accuracy(sft) - accuracy(base) > 0 (points)",
            boot.accuracy_diff("sft", "base"),
            ">",
            0.0,
            level,
        ),
        _condition("delta_wl(sft vs base) < 0", boot.delta_wl("sft", "base"), "<", 0.0, level),
    ]


def _anchor_beats_rank(boot: _JointBootstrap, level: float) -> list[dict]:
    return [
        _condition(
            "delta_wl(anchor vs rank) > 0", boot.delta_wl("anchor", "rank"), ">", 0.0, level
        ),
        _condition(
            f"accuracy(anchor) - accuracy(sft) > {ACCURACY_TOLERANCE:g} (points)",
            boot.accuracy_diff("anchor", "sft"),
            ">",
            ACCURACY_TOLERANCE,
            level,
        ),
    ]


def _recovery(boot: _JointBootstrap, level: float) -> list[dict]:
    """(ΔWL(anchor) - ΔWL(sft)) / -ΔWL(sft) > 0.5, both vs base.

    The ratio is undefined in a resample where SFT lost nothing; its CI is taken over the
    other resamples, and when more than (1 - level)/2 of them are undefined, SFT's loss is
    itself not established, so the condition is `inconclusive` whatever that CI says.
    """
    sft = boot.delta_wl("sft", "base")
    anchor = boot.delta_wl("anchor", "base")
    defined = sft.replicates < 0
    ratios = (anchor.replicates[defined] - sft.replicates[defined]) / -sft.replicates[defined]
    undefined = int((~defined).sum())
    what = (
        "recovery = (delta_wl(anchor vs base) - delta_wl(sft vs base)) / -delta_wl(sft vs base)"
        f" > {RECOVERY_THRESHOLD:g}"
    )
    value = (anchor.value - sft.value) / -sft.value
    if ratios.size == 0:
        low = high = None
        verdict = INCONCLUSIVE
    else:
        low, high = percentile_ci(ratios, level)
        verdict = condition_verdict(low, high, ">", RECOVERY_THRESHOLD)
        if undefined > (1.0 - level) / 2.0 * len(sft.replicates):
            verdict = INCONCLUSIVE
    condition: dict[str, Any] = {
        "what": what,
        "value": value,
        "ci_low": low,
        "ci_high": high,
        "verdict": verdict,
    }
    if undefined:
        condition["undefined_resamples"] = undefined
    return [condition]


# Per claim: the models whose correctness and whose scores it needs, and its conditions.
_CLAIM_SPECS: dict[
    str, tuple[tuple[str, ...], tuple[str, ...], Callable[[_JointBootstrap, float], list[dict]]]
] = {
    "sft_tradeoff": (("sft", "base"), ("sft", "base"), _sft_tradeoff),
    "anchor_beats_rank": (("anchor", "sft"), ("anchor", "rank"), _anchor_beats_rank),
    "recovery": ((), ("sft", "anchor", "base"), _recovery),
}


def evaluate_claims(
    correct_by_model: Mapping[str, Sequence[bool]],
    scores_by_model: Mapping[str, Sequence[int | None]],
    seed: int,
    n_resamples: int = N_RESAMPLES,
    level: float = LEVEL,
) -> dict[str, dict[str, Any]]:
    """summary.json `claims`: {name: {verdict, conditions: [{what, value, ci_low, ci_high,
    verdict}]}}, plus `reason` when not applicable.

    `correct_by_model`: per-question correctness (unparseable = False); `scores_by_model`:
    per-question integer scores (None = unscored); every list on the same questions in the
    same order. Accuracy differences are in points; Delta W-L in points.
    """
    boot = _JointBootstrap(correct_by_model, scores_by_model, seed, n_resamples)
    claims: dict[str, dict[str, Any]] = {}
    for name, (need_correct, need_scores, conditions_of) in _CLAIM_SPECS.items():
        missing = {m for m in need_correct if m not in correct_by_model}
        missing |= {m for m in need_scores if m not in scores_by_model}
        if missing:
            claims[name] = {
                "verdict": NOT_APPLICABLE,
                "conditions": [],
                "reason": f"no evaluation of {', '.join(sorted(missing))}",
            }
            continue
        if name == "recovery":
            sft_loss = boot.delta_wl("sft", "base").value
            if sft_loss >= 0:
                claims[name] = {
                    "verdict": NOT_APPLICABLE,
                    "conditions": [],
                    "reason": f"delta_wl(sft vs base) = {sft_loss:g} >= 0: SFT lost nothing",
                }
                continue
        conditions = conditions_of(boot, level)
        claims[name] = {
            "verdict": combine_verdicts([c["verdict"] for c in conditions]),
            "conditions": conditions,
        }
        logger.info("claim %s: %s", name, claims[name]["verdict"])
    return claims
