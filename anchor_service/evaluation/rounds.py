"""The rounds' stop rule (METHOD.md "Rounds"), in plain functions over plain data.

Round r is compared with round r-1 (round 0 is `sft`) on the validation split: Delta W-L of
r against r-1 with its paired bootstrap CI, and the change of accuracy. Round r+1 runs only
while the CI lies wholly above `min_delta_ci_low` and accuracy fell by at most
`max_accuracy_drop` points.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from anchor_service.evaluation.stats import N_RESAMPLES, accuracy, delta_vs


def round_label(strategy: str, r: int) -> str:
    """The name of a strategy's round-r model in comparisons: `sft` for round 0, the
    strategy's own name for round 1 (as in the rest of the summary), `<strategy>@<r>` after."""
    return "sft" if r == 0 else strategy if r == 1 else f"{strategy}@{r}"


def stop_rule(
    previous: tuple[Sequence[bool], Sequence[int | None]],
    current: tuple[Sequence[bool], Sequence[int | None]],
    *,
    strategy: str,
    r: int,
    seed: int,
    min_delta_ci_low: float = 0.0,
    max_accuracy_drop: float = 2.0,
    n_resamples: int = N_RESAMPLES,
) -> dict[str, Any]:
    """The decision on round r of `strategy`: (correct, score) per validation question of
    round r-1 (`previous`) and of round r (`current`), in the same question order.

    Returns the record kept in rounds.json: Delta W-L with CI, both accuracies (fractions),
    `passed`, and `reason` (why it failed; None when it passed).
    """
    (prev_correct, prev_scores), (cur_correct, cur_scores) = previous, current
    if len(prev_correct) != len(cur_correct) or not cur_correct:
        raise ValueError(
            f"stop rule of {strategy} round {r}: {len(cur_correct)} validation answers "
            f"against {len(prev_correct)}; both rounds must answer the same questions"
        )
    a, b = round_label(strategy, r), round_label(strategy, r - 1)
    delta = delta_vs({a: cur_scores, b: prev_scores}, a, seed, reference=b, n_resamples=n_resamples)
    acc_prev, acc_cur = accuracy(prev_correct)["value"], accuracy(cur_correct)["value"]
    change = 100.0 * (acc_cur - acc_prev)
    reasons = []
    if not delta["ci_low"] > min_delta_ci_low:
        reasons.append(
            f"Delta W-L vs round {r - 1} is {delta['value']:+.1f} "
            f"[{delta['ci_low']:+.1f}, {delta['ci_high']:+.1f}]: CI not wholly above "
            f"{min_delta_ci_low:+.1f}"
        )
    if change < -max_accuracy_drop:
        reasons.append(
            f"accuracy fell {-change:.1f} points (from {100 * acc_prev:.1f}% to "
            f"{100 * acc_cur:.1f}%), more than {max_accuracy_drop:.1f}"
        )
    return {
        "round": r,
        "n": len(cur_correct),
        "delta_wl_vs_previous": delta,
        "accuracy": acc_cur,
        "accuracy_previous": acc_prev,
        "accuracy_change_pts": change,
        "passed": not reasons,
        "reason": "; ".join(reasons) or None,
    }
