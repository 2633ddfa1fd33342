"""How well a judge agrees with a reference judge (the demo oracle) on the same responses.

Two figures (issue 5, item 5b), each with a percentile bootstrap CI:
- **Spearman** rank correlation: Pearson's r of the two judges' ranks, tied values given the
  average of the ranks they span.
- **Pairwise agreement**: over the pairs of responses the reference orders strictly, the
  share the other judge orders the same way. A pair the other judge ties is counted apart
  (`ties`) and is not an agreement (as in METHOD.md step 7, where a tie fails the sanity
  check): a judge that ties everything agrees on nothing. Counted twice: over all pairs, and
  over pairs of responses to the same question (`within_question`), the comparison the pair
  builder actually makes (METHOD.md step 5 picks chosen and rejected within one prompt).

Scores may be numbers or tuples (compared in order, e.g. (score, score_expected), the pair
builder's ordering); only their order is used. None means unscored: the response is left
out and counted in `excluded`. The bootstrap resamples questions (all responses of a
question together, since they are not independent), or responses when no groups are given.
Pure numpy: no scipy, no Ray.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from anchor_service.core.keys import key_seed
from anchor_service.evaluation.stats import LEVEL, N_RESAMPLES, bootstrap_indices, percentile_ci


def average_ranks(values: Sequence[float] | np.ndarray) -> np.ndarray:
    """1-based ranks; tied values share the average of the ranks they span."""
    values = np.asarray(values)
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    starts = np.cumsum(counts) - counts  # rank - 1 of the first member of each tie group
    return starts[inverse] + (counts[inverse] + 1) / 2.0


def spearman(reference: Sequence[float], other: Sequence[float]) -> float | None:
    """Spearman's rho with average ranks for ties; None when either side is constant."""
    if len(reference) != len(other):
        raise ValueError(
            f"spearman: {len(reference)} reference values against {len(other)}; both judges "
            "must score the same responses in the same order"
        )
    if len(reference) < 2:
        return None
    rx = average_ranks(reference)
    ry = average_ranks(other)
    dx, dy = rx - rx.mean(), ry - ry.mean()
    denom = float(np.sqrt((dx * dx).sum() * (dy * dy).sum()))
    if denom == 0.0:
        return None  # one judge gave every response the same value: no ranking to correlate
    return float((dx * dy).sum() / denom)


@dataclass(frozen=True)
class PairCounts:
    """Pairs the reference orders strictly, split by what the other judge does with them."""

    agree: int
    disagree: int
    ties: int

    @property
    def pairs(self) -> int:
        return self.agree + self.disagree + self.ties

    @property
    def value(self) -> float | None:
        """Share of the reference's strictly ordered pairs the other judge orders the same way."""
        return self.agree / self.pairs if self.pairs else None


def _order_signs(values: np.ndarray) -> np.ndarray:
    """sign(v_i - v_j) for every pair, as an int8 matrix."""
    return np.sign(values[:, None] - values[None, :]).astype(np.int8)


def _pair_matrices(ref: np.ndarray, oth: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boolean matrices over ordered pairs (i, j): agree, disagree, other ties (ref strict)."""
    s_ref, s_oth = _order_signs(ref), _order_signs(oth)
    strict = s_ref != 0
    agree = strict & (s_ref == s_oth)
    ties = strict & (s_oth == 0)
    return agree, strict & ~agree & ~ties, ties


def pairwise_counts(
    reference: Sequence[float],
    other: Sequence[float],
    groups: Sequence[Hashable] | None = None,
) -> PairCounts:
    """Agree / disagree / tie counts over unordered pairs the reference orders strictly.

    With `groups`, only pairs of responses in the same group (question) count.
    """
    if len(reference) != len(other):
        raise ValueError(
            f"pairwise_counts: {len(reference)} reference values against {len(other)}; both "
            "judges must score the same responses in the same order"
        )
    ref = average_ranks(reference) if len(reference) else np.zeros(0)
    oth = average_ranks(other) if len(other) else np.zeros(0)
    agree, disagree, ties = _pair_matrices(ref, oth)
    if groups is not None:
        g = _group_codes(groups, len(ref))
        same = g[:, None] == g[None, :]
        agree, disagree, ties = agree & same, disagree & same, ties & same
    # Each unordered pair appears twice (i, j) and (j, i) in the matrices.
    return PairCounts(int(agree.sum()) // 2, int(disagree.sum()) // 2, int(ties.sum()) // 2)


def _group_codes(groups: Sequence[Hashable], n: int) -> np.ndarray:
    if len(groups) != n:
        raise ValueError(
            f"judge agreement: {len(groups)} group labels for {n} responses; give one question "
            "id per response"
        )
    codes: dict[Hashable, int] = {}
    return np.array([codes.setdefault(g, len(codes)) for g in groups], dtype=np.int64)


def _interval(replicates: list[float], level: float) -> dict[str, Any]:
    if not replicates:
        return {"ci_low": None, "ci_high": None}
    low, high = percentile_ci(np.asarray(replicates), level)
    return {"ci_low": low, "ci_high": high}


def judge_agreement(
    reference: Sequence[Any],
    other: Sequence[Any],
    groups: Sequence[Hashable] | None = None,
    seed: int = 0,
    n_resamples: int = N_RESAMPLES,
    level: float = LEVEL,
) -> dict[str, Any]:
    """summary.json `judge_agreement` entry of one judge against the reference.

    `reference`, `other`: one value per response (number or tuple; None = unscored), same
    order; `groups`: the question of each response (resampled together). Returns
    {n, questions, excluded, spearman: {value, ci_low, ci_high}, pairwise: {value, ci_low,
    ci_high, pairs, agree, disagree, ties}, pairwise_within_question: {same}}; a resample where
    a figure is undefined (a constant judge, no strictly ordered pair) is left out of its CI
    and counted in `undefined_resamples`.
    """
    if len(reference) != len(other):
        raise ValueError(
            f"judge_agreement: {len(reference)} reference scores against {len(other)}; both "
            "judges must score the same responses in the same order"
        )
    keep = [
        i
        for i, (a, b) in enumerate(zip(reference, other, strict=True))
        if _scored(a) and _scored(b)
    ]
    labels = list(range(len(reference))) if groups is None else list(groups)
    codes = _group_codes(labels, len(reference))[keep]
    # Dense ranks turn tuples (score, score_expected) into numbers with the same order.
    ref = _dense_ranks([reference[i] for i in keep])
    oth = _dense_ranks([other[i] for i in keep])
    result: dict[str, Any] = {
        "n": len(keep),
        "questions": len(set(codes.tolist())),
        "excluded": len(reference) - len(keep),
    }

    agree, disagree, ties = _pair_matrices(ref, oth)
    same = codes[:, None] == codes[None, :]
    point_all = PairCounts(*(int(m.sum()) // 2 for m in (agree, disagree, ties)))
    point_within = PairCounts(*(int((m & same).sum()) // 2 for m in (agree, disagree, ties)))

    rho_reps, all_reps, within_reps = _bootstrap(
        ref, oth, codes, (agree, disagree, ties), seed, n_resamples
    )
    result["spearman"] = {"value": spearman(ref, oth) if len(keep) else None}
    result["spearman"] |= _interval(rho_reps, level)
    for name, point, reps in (
        ("pairwise", point_all, all_reps),
        ("pairwise_within_question", point_within, within_reps),
    ):
        result[name] = {"value": point.value, **_interval(reps, level)}
        result[name] |= {
            "pairs": point.pairs,
            "agree": point.agree,
            "disagree": point.disagree,
            "ties": point.ties,
        }
    for name, reps in (
        ("spearman", rho_reps),
        ("pairwise", all_reps),
        ("pairwise_within_question", within_reps),
    ):
        if len(keep) and len(reps) < n_resamples:
            result[name]["undefined_resamples"] = n_resamples - len(reps)
    return result


def _scored(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and np.isnan(value))


def _dense_ranks(values: list[Any]) -> np.ndarray:
    order = {v: i for i, v in enumerate(sorted(set(values)))}
    return np.array([order[v] for v in values], dtype=float)


def _bootstrap(
    ref: np.ndarray,
    oth: np.ndarray,
    codes: np.ndarray,
    matrices: tuple[np.ndarray, np.ndarray, np.ndarray],
    seed: int,
    n_resamples: int,
) -> tuple[list[float], list[float], list[float]]:
    """Replicates of rho, all-pairs agreement and within-question agreement, resampling
    questions. A question drawn k times contributes k copies of each of its responses."""
    if len(ref) == 0:
        return [], [], []
    _, codes = np.unique(codes, return_inverse=True)
    n_groups = int(codes.max()) + 1
    idx = bootstrap_indices(n_groups, key_seed((seed, "judge_agreement")), n_resamples)
    weights = np.stack([np.bincount(row, minlength=n_groups) for row in idx]).astype(float)

    # Pair counts per pair of questions: with question weights w, the resampled data holds
    # w_g * w_h copies of each pair between questions g and h (copies of one response tie).
    onehot = np.zeros((len(ref), n_groups))
    onehot[np.arange(len(ref)), codes] = 1.0
    by_group = [onehot.T @ m.astype(float) @ onehot for m in matrices]
    cross = [0.5 * ((weights @ m) * weights).sum(axis=1) for m in by_group]
    # Within one question: the pairs inside each copy (the diagonal), k times for k copies.
    within = [weights @ np.diag(m) / 2.0 for m in by_group]

    rho_reps, all_reps, within_reps = [], [], []
    members = [np.flatnonzero(codes == g) for g in range(n_groups)]
    for r in range(n_resamples):
        take = np.concatenate([members[g] for g in idx[r]])
        rho = spearman(ref[take], oth[take])
        if rho is not None:
            rho_reps.append(rho)
        for counts, out in ((cross, all_reps), (within, within_reps)):
            total = counts[0][r] + counts[1][r] + counts[2][r]
            if total > 0:
                out.append(float(counts[0][r] / total))
    return rho_reps, all_reps, within_reps
