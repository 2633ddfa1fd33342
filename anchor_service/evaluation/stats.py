"""Step 7 of METHOD.md: the evaluation statistics, in plain functions over plain data.

Accuracy with a Wilson interval; Delta W-L (win% - loss%, in points) with a paired
bootstrap CI and an exact two-sided sign test; Holm over all pairwise rows of a run;
per-criterion means with bootstrap CIs; and the mean and spread of a summary over seeds.
Pure numpy: no scipy, no Ray, no torch.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from anchor_service.core.keys import key_seed

# The 0.975 quantile of the standard normal (two-sided 95%).
Z_95 = 1.959963984540054
N_RESAMPLES = 1000
LEVEL = 0.95
SIGNIFICANCE = 0.05

# Outcomes of one question, from the first model's side.
WIN, TIE, LOSS = 1, 0, -1


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval (no continuity correction) for a binomial proportion."""
    if n <= 0:
        raise ValueError(f"wilson_interval: n={n}; an interval needs at least one trial")
    if not 0 <= successes <= n:
        raise ValueError(f"wilson_interval: successes={successes} is outside 0..n={n}")
    p = successes / n
    z2 = z * z
    denom = 1.0 + z2 / n
    center = (p + z2 / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1.0 - p) / n + z2 / (4 * n * n))
    # Clamped because rounding can push the bound at 0/n or n/n a hair outside [0, 1].
    return max(0.0, center - half), min(1.0, center + half)


def accuracy(correct: Sequence[bool]) -> dict[str, float | int]:
    """The summary.json `accuracy` entry: {value, ci_low, ci_high, n}, as fractions in [0, 1]."""
    n = len(correct)
    successes = sum(bool(c) for c in correct)
    low, high = wilson_interval(successes, n)
    return {"value": successes / n, "ci_low": low, "ci_high": high, "n": n}


@dataclass(frozen=True)
class WinTieLoss:
    """Per-question outcomes of model a against model b (+1 win, 0 tie, -1 loss) and counts."""

    wins: int
    ties: int
    losses: int
    outcomes: np.ndarray  # int8, one per question, in question order


def win_tie_loss(scores_a: Sequence[int | None], scores_b: Sequence[int | None]) -> WinTieLoss:
    """Compare integer scores question by question; None (unscored) loses to any score."""
    if len(scores_a) != len(scores_b):
        raise ValueError(
            f"win_tie_loss: {len(scores_a)} scores against {len(scores_b)}; both models must "
            "be scored on the same questions in the same order"
        )
    outcomes = np.zeros(len(scores_a), dtype=np.int8)
    for i, (a, b) in enumerate(zip(scores_a, scores_b, strict=True)):
        if a is None and b is None:
            continue
        if b is None or (a is not None and a > b):
            outcomes[i] = WIN
        elif a is None or a < b:
            outcomes[i] = LOSS
    wins = int(np.count_nonzero(outcomes == WIN))
    losses = int(np.count_nonzero(outcomes == LOSS))
    return WinTieLoss(wins, len(outcomes) - wins - losses, losses, outcomes)


def delta_wl(outcomes: Sequence[int] | np.ndarray) -> float:
    """Delta W-L = win% - loss%, in percentage points (-100..100)."""
    outcomes = np.asarray(outcomes)
    if outcomes.size == 0:
        raise ValueError("delta_wl: no questions; Delta W-L needs at least one compared question")
    return float(100.0 * outcomes.mean())


def bootstrap_indices(n: int, seed: int, n_resamples: int = N_RESAMPLES) -> np.ndarray:
    """Resampled question indices, shape (n_resamples, n), from a numpy Generator on `seed`."""
    if n <= 0:
        raise ValueError(f"bootstrap_indices: n={n}; resampling needs at least one question")
    rng = np.random.default_rng(seed)
    return rng.integers(0, n, size=(n_resamples, n), dtype=np.int32)


def percentile_ci(replicates: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """Percentile interval of bootstrap replicates (numpy's linear interpolation)."""
    alpha = 100.0 * (1.0 - level) / 2.0
    low, high = np.percentile(np.asarray(replicates, dtype=float), [alpha, 100.0 - alpha])
    return float(low), float(high)


def paired_bootstrap_ci(
    outcomes: Sequence[int] | np.ndarray,
    seed: int,
    n_resamples: int = N_RESAMPLES,
    level: float = LEVEL,
) -> tuple[float, float]:
    """Percentile CI of Delta W-L, resampling questions (each keeps both models' responses)."""
    outcomes = np.asarray(outcomes, dtype=np.int8)
    idx = bootstrap_indices(len(outcomes), seed, n_resamples)
    replicates = 100.0 * outcomes[idx].mean(axis=1)
    return percentile_ci(replicates, level)


def sign_test(wins: int, losses: int) -> float:
    """Exact two-sided binomial (p=1/2) test on the non-tied questions; 1.0 when there are none."""
    if wins < 0 or losses < 0:
        raise ValueError(f"sign_test: wins={wins}, losses={losses}; counts cannot be negative")
    n = wins + losses
    if n == 0:
        return 1.0
    # Exact integer arithmetic: sum of C(n, i) for i <= min(wins, losses), each term from the
    # previous one, then one correctly rounded big-int division (no float underflow on the way).
    term = tail = 1
    for i in range(1, min(wins, losses) + 1):
        term = term * (n - i + 1) // i
        tail += term
    return min(1.0, 2 * tail / (1 << n))


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm step-down adjusted p-values, in input order: monotone, capped at 1."""
    for i, p in enumerate(pvalues):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"holm: p-value #{i} is {p}; p-values must lie in [0, 1]")
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        # The running max keeps the adjusted values in the same order as the raw ones.
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def comparison_seed(seed: int, a: str, b: str) -> int:
    """Bootstrap seed of one pair of models: independent of the other models and of orientation.

    Keyed on the sorted pair, so a-vs-b and b-vs-a resample the same questions and their CIs
    are exact mirror images, and a row does not change when a model is added to the run.
    """
    return key_seed((seed, "delta_wl", *sorted((a, b))))


def _compare(
    scores_by_model: Mapping[str, Sequence[int | None]],
    a: str,
    b: str,
    seed: int,
    n_resamples: int,
) -> dict[str, Any]:
    for name in (a, b):
        if name not in scores_by_model:
            raise KeyError(
                f"no scores for model {name!r}; scored models are {sorted(scores_by_model)}"
            )
    wtl = win_tie_loss(scores_by_model[a], scores_by_model[b])
    low, high = paired_bootstrap_ci(wtl.outcomes, comparison_seed(seed, a, b), n_resamples)
    return {
        "value": delta_wl(wtl.outcomes),
        "ci_low": low,
        "ci_high": high,
        "p_sign": sign_test(wtl.wins, wtl.losses),
        "wins": wtl.wins,
        "ties": wtl.ties,
        "losses": wtl.losses,
    }


def pairwise_rows(
    scores_by_model: Mapping[str, Sequence[int | None]],
    seed: int,
    n_resamples: int = N_RESAMPLES,
) -> list[dict[str, Any]]:
    """Delta W-L of every pair of models, Holm-adjusted over all rows of the run.

    Each model is compared (as `a`) with every model listed before it (as `b`), so listing
    `base` first makes the rows against `base` read "X vs base". `value` is a's Delta W-L
    against b; `significant` means p_holm < 0.05 (CIs are not adjusted).
    """
    models = list(scores_by_model)
    rows = [
        {"a": a, "b": b, **_compare(scores_by_model, a, b, seed, n_resamples)}
        for j, a in enumerate(models)
        for b in models[:j]
    ]
    return _with_holm(rows)


def written_both_rows(
    scores_by_model: Mapping[str, Sequence[int | None]],
    written_by_model: Mapping[str, Sequence[bool]],
    seed: int,
    n_resamples: int = N_RESAMPLES,
) -> list[dict[str, Any]]:
    """`pairwise_rows` restricted, pair by pair, to the questions where both models wrote an
    explanation that the judge scored.

    An empty explanation scores 0 under any judge, so a model that stops writing loses on
    every row of `pairwise_rows` whatever the judge thinks of writing; these rows separate
    "writes explanations again" from "writes better ones". `n` is the questions kept; a pair
    with none has only `a`, `b` and `n` and is left out of the Holm family (over these rows
    alone, since they re-use the questions of `pairwise_rows`).
    """
    models = list(scores_by_model)
    rows = []
    for j, a in enumerate(models):
        for b in models[:j]:
            keep = [
                i
                for i, (wa, wb) in enumerate(
                    zip(written_by_model[a], written_by_model[b], strict=True)
                )
                if wa and wb
            ]
            row: dict[str, Any] = {"a": a, "b": b, "n": len(keep)}
            if keep:
                kept = {m: [scores_by_model[m][i] for i in keep] for m in (a, b)}
                row |= _compare(kept, a, b, seed, n_resamples)
            rows.append(row)
    _with_holm([r for r in rows if r["n"]])
    return rows


def _with_holm(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Add `p_holm` (over these rows) and `significant` (p_holm < 0.05) to each row."""
    for row, p_holm in zip(rows, holm([r["p_sign"] for r in rows]), strict=True):
        row["p_holm"] = p_holm
        row["significant"] = p_holm < SIGNIFICANCE
    return rows


def delta_vs(
    scores_by_model: Mapping[str, Sequence[int | None]],
    model: str,
    seed: int,
    reference: str = "base",
    n_resamples: int = N_RESAMPLES,
) -> dict[str, Any]:
    """The summary.json `delta_wl` entry of `model` against `reference` (same CI as its row)."""
    return {"vs": reference, **_compare(scores_by_model, model, reference, seed, n_resamples)}


def criterion_means(
    values: Mapping[str, Sequence[int | None]],
    seed: int = 0,
    n_resamples: int = N_RESAMPLES,
    level: float = LEVEL,
) -> dict[str, dict[str, float | None]]:
    """Mean value of each criterion over scored responses, with a percentile bootstrap CI.

    A bootstrap (not a t-interval) because values are bounded 0..3 and pile up at the ends.
    Questions are resampled, unscored (None) ones included, so each replicate is a ratio
    (sum over scored / number scored). Indices are keyed by (seed, criterion), so every
    model is resampled on the same questions. A criterion with no scored value gets None.
    """
    result: dict[str, dict[str, float | None]] = {}
    for criterion, column in values.items():
        scored = np.array([v is not None for v in column], dtype=bool)
        if not scored.any():
            result[criterion] = {"mean": None, "ci_low": None, "ci_high": None}
            continue
        vals = np.array([0 if v is None else v for v in column], dtype=float)
        idx = bootstrap_indices(
            len(vals), key_seed((seed, "criterion_means", criterion)), n_resamples
        )
        counts = scored[idx].sum(axis=1)
        sums = vals[idx].sum(axis=1)
        # A replicate that drew only unscored questions has no mean; it is left out.
        replicates = sums[counts > 0] / counts[counts > 0]
        low, high = percentile_ci(replicates, level)
        result[criterion] = {"mean": float(vals[scored].mean()), "ci_low": low, "ci_high": high}
    return result


# Fields that name a row of a list in summary.json (pairwise rows, claim conditions).
_ROW_KEYS: tuple[tuple[str, ...], ...] = (("a", "b"), ("what",), ("vs",))


def _row_name(item: Any, position: int) -> tuple[str, tuple[str, ...]]:
    """A list row's name and the fields that make it (those are not aggregated)."""
    if isinstance(item, Mapping):
        for keys in _ROW_KEYS:
            if all(isinstance(item.get(k), str) for k in keys):
                return " vs ".join(item[k] for k in keys), keys
    return str(position), ()


def _leaves(node: Any, path: tuple[str, ...], out: dict[tuple[str, ...], Any]) -> None:
    if isinstance(node, Mapping):
        for key, child in node.items():
            _leaves(child, (*path, str(key)), out)
    elif isinstance(node, list) and node and all(isinstance(x, Mapping) for x in node):
        for position, item in enumerate(node):
            name, keys = _row_name(item, position)
            _leaves({k: v for k, v in item.items() if k not in keys}, (*path, name), out)
    else:
        out[path] = node


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def aggregate_seeds(summaries: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """experiment.json: summary.json over seeds, with the same nesting.

    Numeric leaf -> {mean, std, seeds, values} over the seeds that have it (std: sample
    standard deviation, None with one seed). A string or bool leaf (a verdict, `significant`)
    -> {counts: {value: n}, seeds}; a list of strings (`dpo_skipped`) -> {counts: {item: n
    seeds listing it}, seeds}. List rows are keyed by name ("sft vs base", a condition's
    `what`). `run_seeds` lists every summary's seed; None and non-finite leaves are skipped.
    """
    if not summaries:
        raise ValueError("aggregate_seeds: no summaries; an experiment needs at least one run")
    run_seeds = [s.get("run_seed", i) for i, s in enumerate(summaries)]
    if len(set(map(repr, run_seeds))) != len(run_seeds):
        raise ValueError(f"aggregate_seeds: repeated run_seed in {run_seeds}; one run per seed")
    collected: dict[tuple[str, ...], list[tuple[Any, Any]]] = {}
    for run_seed, summary in zip(run_seeds, summaries, strict=True):
        leaves: dict[tuple[str, ...], Any] = {}
        _leaves({k: v for k, v in summary.items() if k != "run_seed"}, (), leaves)
        for path, value in leaves.items():
            collected.setdefault(path, []).append((run_seed, value))

    experiment: dict[str, Any] = {"run_seeds": run_seeds}
    for path, pairs in collected.items():
        entry = _aggregate_leaf(pairs)
        if entry is None:
            continue
        node = experiment
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = entry
    return experiment


def _aggregate_leaf(pairs: list[tuple[Any, Any]]) -> dict[str, Any] | None:
    numeric = [(s, float(v)) for s, v in pairs if _is_number(v)]
    if numeric:
        values = [v for _, v in numeric]
        return {
            "mean": statistics.fmean(values),
            "std": statistics.stdev(values) if len(values) > 1 else None,
            "seeds": [s for s, _ in numeric],
            "values": values,
        }
    counts: dict[str, int] = {}
    seeds = []
    for seed, value in pairs:
        if isinstance(value, str | bool):
            items = [value]
        elif isinstance(value, list) and all(isinstance(x, str) for x in value):
            items = list(dict.fromkeys(value))
        else:
            continue
        seeds.append(seed)
        for item in items:
            label = str(item).lower() if isinstance(item, bool) else item
            counts[label] = counts.get(label, 0) + 1
    return {"counts": counts, "seeds": seeds} if seeds else None
