"""Tests of anchor_service.evaluation.stats: Wilson, win/tie/loss, Delta W-L, bootstrap, sign test, Holm."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from anchor_service.evaluation.stats import (
    accuracy,
    aggregate_seeds,
    criterion_means,
    delta_vs,
    delta_wl,
    holm,
    paired_bootstrap_ci,
    pairwise_rows,
    sign_test,
    wilson_interval,
    win_tie_loss,
    written_both_rows,
)

# --- Wilson -------------------------------------------------------------------------------

# Newcombe RG (1998), "Two-sided confidence intervals for the single proportion: comparison
# of seven methods", Statistics in Medicine 17:857-872, Table II, method 3 (Wilson score,
# no continuity correction), published to 4 decimals.
NEWCOMBE_1998_WILSON = [
    (81, 263, 0.2553, 0.3662),
    (15, 148, 0.0624, 0.1605),
    (0, 20, 0.0000, 0.1611),
    (1, 29, 0.0061, 0.1718),
]


@pytest.mark.parametrize(("x", "n", "low", "high"), NEWCOMBE_1998_WILSON)
def test_wilson_matches_newcombe_1998_table(x, n, low, high):
    got = wilson_interval(x, n)
    assert got == pytest.approx((low, high), abs=5e-5)


def test_wilson_at_zero_and_all_successes_has_closed_form_bounds():
    # At x = 0 the Wilson interval is [0, z^2 / (n + z^2)]; at x = n it is the mirror image.
    # n = 10: z^2 = 3.841459, upper = 3.841459 / 13.841459 = 0.27753 (Brown, Cai & DasGupta
    # 2001, Statist. Sci. 16:101, give the same closed form for the boundary case).
    z2 = 1.959963984540054**2
    assert wilson_interval(0, 10) == pytest.approx((0.0, z2 / (10 + z2)), abs=1e-12)
    assert wilson_interval(0, 10)[1] == pytest.approx(0.2775, abs=5e-5)
    assert wilson_interval(10, 10) == pytest.approx((10 / (10 + z2), 1.0), abs=1e-12)
    assert wilson_interval(10, 10)[0] == pytest.approx(0.7225, abs=5e-5)


def test_wilson_rejects_no_trials_and_impossible_counts():
    with pytest.raises(ValueError, match="n=0"):
        wilson_interval(0, 0)
    with pytest.raises(ValueError, match="successes=11"):
        wilson_interval(11, 10)


def test_accuracy_entry_is_fraction_with_wilson_interval():
    entry = accuracy([True] * 81 + [False] * 182)
    assert entry["n"] == 263
    assert entry["value"] == pytest.approx(81 / 263)
    assert (entry["ci_low"], entry["ci_high"]) == pytest.approx((0.2553, 0.3662), abs=5e-5)


# --- win / tie / loss and Delta W-L ---------------------------------------------------------


def test_win_tie_loss_counts_unscored_as_losing_to_scored_and_tying_with_unscored():
    a = [10, 5, 7, None, None, 3, 0]
    b = [9, 5, 8, 4, None, None, 1]
    wtl = win_tie_loss(a, b)
    # win, tie, loss, loss (unscored vs scored), tie (both unscored), win (scored vs unscored), loss
    assert wtl.outcomes.tolist() == [1, 0, -1, -1, 0, 1, -1]
    assert (wtl.wins, wtl.ties, wtl.losses) == (2, 2, 3)


def test_win_tie_loss_is_antisymmetric():
    a = [3, None, 8, 8, None]
    b = [None, 2, 8, 1, None]
    assert win_tie_loss(b, a).outcomes.tolist() == (-win_tie_loss(a, b).outcomes).tolist()


def test_win_tie_loss_rejects_different_question_counts():
    with pytest.raises(ValueError, match="same questions"):
        win_tie_loss([1, 2], [1])


def test_delta_wl_is_win_percent_minus_loss_percent():
    # 5 wins, 2 ties, 3 losses of 10: 50% - 30% = 20 points
    assert delta_wl([1] * 5 + [0] * 2 + [-1] * 3) == pytest.approx(20.0)
    assert delta_wl([1, 1]) == 100.0
    assert delta_wl([-1, -1, 0]) == pytest.approx(-200 / 3)


def test_delta_wl_rejects_no_questions():
    with pytest.raises(ValueError, match="no questions"):
        delta_wl([])


# --- paired bootstrap -------------------------------------------------------------------------


def test_bootstrap_ci_is_reproducible_from_seed_and_changes_with_it():
    outcomes = np.random.default_rng(3).choice([-1, 0, 1], size=150)
    assert paired_bootstrap_ci(outcomes, seed=11) == paired_bootstrap_ci(outcomes, seed=11)
    assert paired_bootstrap_ci(outcomes, seed=11) != paired_bootstrap_ci(outcomes, seed=12)


def test_bootstrap_ci_brackets_the_estimate_and_collapses_when_all_outcomes_equal():
    outcomes = np.random.default_rng(4).choice([-1, 0, 1], size=120, p=[0.2, 0.3, 0.5])
    low, high = paired_bootstrap_ci(outcomes, seed=0)
    assert low < delta_wl(outcomes) < high
    assert paired_bootstrap_ci([1] * 30, seed=0) == (100.0, 100.0)


def test_bootstrap_ci_covers_true_delta_wl_about_95_percent_of_the_time():
    # 500 synthetic evaluations of 200 questions, with known outcome probabilities, so the
    # true Delta W-L = 100 * (p_win - p_loss) is known; the percentile CI should cover it
    # close to 95% of the time (binomial sd over 500 runs is ~1 point).
    settings = [(0.35, 0.25, 0.40), (0.50, 0.30, 0.20), (0.20, 0.70, 0.10), (0.45, 0.10, 0.45)]
    covered = 0
    runs = 500
    for run in range(runs):
        p_win, p_tie, p_loss = settings[run % len(settings)]
        true_delta = 100.0 * (p_win - p_loss)
        rng = np.random.default_rng(10_000 + run)
        outcomes = rng.choice([1, 0, -1], size=200, p=[p_win, p_tie, p_loss])
        low, high = paired_bootstrap_ci(outcomes, seed=run)
        covered += low <= true_delta <= high
    assert 0.92 <= covered / runs <= 0.975


# --- sign test and Holm ---------------------------------------------------------------------


def test_sign_test_equals_hand_computed_binomial_tails():
    # wins=8, losses=2, n=10: P(X <= 2) = (C(10,0)+C(10,1)+C(10,2)) / 2^10 = (1+10+45)/1024
    # = 56/1024 = 0.0546875; two-sided p = 2 * 0.0546875 = 0.109375.
    assert sign_test(8, 2) == 0.109375
    # wins=0, losses=6: P(X <= 0) = 1/64, two-sided 2/64 = 0.03125.
    assert sign_test(0, 6) == 0.03125
    # wins=10, losses=0: 2 * 1/1024 = 0.001953125.
    assert sign_test(10, 0) == 0.001953125
    # wins=7, losses=3: (1+10+45+120)/1024 = 176/1024, two-sided 352/1024 = 0.34375.
    assert sign_test(7, 3) == 0.34375
    # R: binom.test(60, 100)$p.value = 0.05688793 (n=100, exact two-sided).
    assert sign_test(60, 40) == pytest.approx(0.05688793, abs=5e-9)


def test_sign_test_is_one_when_balanced_or_nothing_untied():
    # wins=5, losses=5: 2 * (1+10+45+120+210+252)/1024 = 1276/1024 > 1, capped at 1.
    assert sign_test(5, 5) == 1.0
    assert sign_test(0, 0) == 1.0


def test_sign_test_is_symmetric_and_stays_positive_for_large_counts():
    assert sign_test(3, 9) == sign_test(9, 3)
    p = sign_test(6000, 4000)  # ~20 standard deviations from n/2
    assert 0.0 < p < 1e-80


def test_holm_equals_hand_computed_adjustment():
    # m = 4; sorted raw p: 0.005, 0.01, 0.03, 0.04
    # step-down: 4*0.005 = 0.02; 3*0.01 = 0.03; 2*0.03 = 0.06; 1*0.04 = 0.04 -> max(0.06, 0.04)
    # = 0.06 (monotone). Back in input order [0.01, 0.04, 0.03, 0.005]:
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])


def test_holm_caps_at_one():
    # 2*0.5 = 1.0; 1*0.6 = 0.6 -> max(1.0, 0.6) = 1.0
    assert holm([0.5, 0.6]) == [1.0, 1.0]
    assert holm([]) == []


def test_holm_rejects_values_outside_unit_interval():
    with pytest.raises(ValueError, match="#1"):
        holm([0.2, 1.5])


@given(st.lists(st.floats(min_value=0.0, max_value=1.0), max_size=30))
def test_holm_never_lowers_a_pvalue_and_keeps_their_order(pvalues):
    adjusted = holm(pvalues)
    assert all(p <= a <= 1.0 for p, a in zip(pvalues, adjusted, strict=True))
    for i, pi in enumerate(pvalues):
        for j, pj in enumerate(pvalues):
            if pi < pj:
                assert adjusted[i] <= adjusted[j]


# --- pairwise rows and delta_vs ---------------------------------------------------------------


def _scores(seed: int, n: int, shift: int) -> list[int | None]:
    rng = np.random.default_rng(seed)
    values = np.clip(rng.integers(4, 12, size=n) + shift, 0, 15)
    return [None if rng.random() < 0.05 else int(v) for v in values]


def test_pairwise_rows_compare_each_model_with_those_listed_before_it_with_holm_over_rows():
    scores = {"base": _scores(1, 80, 0), "sft": _scores(2, 80, -3), "anchor": _scores(3, 80, 1)}
    rows = pairwise_rows(scores, seed=5)
    assert [(r["a"], r["b"]) for r in rows] == [("sft", "base"), ("anchor", "base"),
                                                 ("anchor", "sft")]  # fmt: skip
    assert [r["p_holm"] for r in rows] == holm([r["p_sign"] for r in rows])
    for row in rows:
        wtl = win_tie_loss(scores[row["a"]], scores[row["b"]])
        assert (row["wins"], row["ties"], row["losses"]) == (wtl.wins, wtl.ties, wtl.losses)
        assert row["value"] == pytest.approx(100 * (wtl.wins - wtl.losses) / 80)
        assert row["p_sign"] == sign_test(wtl.wins, wtl.losses)
        assert row["significant"] == (row["p_holm"] < 0.05)
        assert row["ci_low"] <= row["value"] <= row["ci_high"]
    sft_vs_base = rows[0]
    assert sft_vs_base["value"] < 0 and sft_vs_base["significant"]


def test_pairwise_row_does_not_change_when_a_model_is_added_and_mirrors_when_reversed():
    scores = {"base": _scores(1, 60, 0), "sft": _scores(2, 60, -1)}
    alone = pairwise_rows(scores, seed=9)[0]
    with_rank = pairwise_rows({**scores, "rank": _scores(4, 60, 0)}, seed=9)[0]
    assert (alone["value"], alone["ci_low"], alone["ci_high"]) == (
        with_rank["value"],
        with_rank["ci_low"],
        with_rank["ci_high"],
    )
    reversed_row = pairwise_rows({"sft": scores["sft"], "base": scores["base"]}, seed=9)[0]
    assert reversed_row["value"] == pytest.approx(-alone["value"])
    assert (reversed_row["ci_low"], reversed_row["ci_high"]) == pytest.approx(
        (-alone["ci_high"], -alone["ci_low"])
    )


def test_written_both_rows_are_pairwise_rows_on_the_questions_both_wrote():
    n = 90
    scores = {"base": _scores(1, n, 0), "sft": _scores(2, n, -2), "anchor": _scores(3, n, 1)}
    rng = np.random.default_rng(7)
    written = {m: list(rng.random(n) < 0.7) for m in scores}
    for m in scores:  # an empty explanation scores 0, as the judge stage writes it
        scores[m] = [s if w else 0 for s, w in zip(scores[m], written[m], strict=True)]
    rows = written_both_rows(scores, written, seed=4)
    assert [(r["a"], r["b"]) for r in rows] == [(r["a"], r["b"]) for r in pairwise_rows(scores, 4)]
    assert [r["p_holm"] for r in rows] == holm([r["p_sign"] for r in rows])
    for row in rows:
        a, b = row["a"], row["b"]
        keep = [i for i in range(n) if written[a][i] and written[b][i]]
        assert row["n"] == len(keep) and 0 < len(keep) < n
        alone = pairwise_rows({m: [scores[m][i] for i in keep] for m in (b, a)}, seed=4)[0]
        assert {k: row[k] for k in alone if k not in ("p_holm", "significant")} == {
            k: alone[k] for k in alone if k not in ("p_holm", "significant")
        }


def test_written_both_pair_without_common_questions_is_kept_out_of_holm():
    scores = {"base": [5, 6, 7, 8], "sft": [0, 0, 0, 0], "anchor": [9, 9, 9, 9]}
    written = {"base": [True] * 4, "sft": [False] * 4, "anchor": [True] * 4}
    rows = written_both_rows(scores, written, seed=0)
    assert rows[0] == {"a": "sft", "b": "base", "n": 0}
    assert rows[2] == {"a": "anchor", "b": "sft", "n": 0}
    only = rows[1]
    assert (only["a"], only["b"], only["n"], only["wins"]) == ("anchor", "base", 4, 4)
    assert only["p_holm"] == only["p_sign"]  # a family of one row


def test_delta_vs_gives_the_summary_entry_matching_its_pairwise_row():
    scores = {"base": _scores(1, 70, 0), "sft": _scores(2, 70, -2), "anchor": _scores(3, 70, 0)}
    row = next(r for r in pairwise_rows(scores, seed=2) if (r["a"], r["b"]) == ("anchor", "base"))
    entry = delta_vs(scores, "anchor", seed=2)
    assert set(entry) == {"vs", "value", "ci_low", "ci_high", "p_sign", "wins", "ties", "losses"}
    assert entry["vs"] == "base"
    assert {k: entry[k] for k in entry if k != "vs"} == {k: row[k] for k in entry if k != "vs"}


def test_delta_vs_names_a_missing_model():
    with pytest.raises(KeyError, match="rank"):
        delta_vs({"base": [1], "sft": [2]}, "rank", seed=0)


# --- criterion means ------------------------------------------------------------------------


def test_criterion_means_average_scored_values_with_a_bracketing_ci():
    values = {
        "clarity": [3, 2, None, 1, 2, 3, 3, 0, 2, 2] * 5,
        "relevance": [3] * 50,
    }
    means = criterion_means(values, seed=1)
    # clarity: scored values 3,2,1,2,3,3,0,2,2 per block of 10 -> 18/9 = 2.0
    assert means["clarity"]["mean"] == pytest.approx(2.0)
    assert means["clarity"]["ci_low"] < 2.0 < means["clarity"]["ci_high"]
    assert means["relevance"] == {"mean": 3.0, "ci_low": 3.0, "ci_high": 3.0}
    assert criterion_means(values, seed=1) == means


def test_criterion_means_without_scored_values_are_none():
    assert criterion_means({"clarity": [None, None]}) == {
        "clarity": {"mean": None, "ci_low": None, "ci_high": None}
    }


# --- aggregate over seeds -------------------------------------------------------------------


def _summary(run_seed: int, acc: float, dwl: float, verdict: str, skipped: list[str]) -> dict:
    return {
        "run_seed": run_seed,
        "dataset": "demo",
        "dpo_skipped": skipped,
        "accuracy": {"sft": {"value": acc, "ci_low": acc - 0.1, "ci_high": acc + 0.1, "n": 50}},
        "pairwise": [{"a": "sft", "b": "base", "value": dwl, "significant": dwl < -10}],
        "criteria": {"sft": {"clarity": {"mean": None, "ci_low": None, "ci_high": None}}},
        "claims": {
            "sft_tradeoff": {
                "verdict": verdict,
                "conditions": [{"what": "delta_wl(sft vs base) < 0", "value": dwl}],
            }
        },
    }


def test_aggregate_seeds_gives_mean_std_and_seeds_per_numeric_leaf():
    summaries = [
        _summary(1, 0.6, -20.0, "supported", ["rank"]),
        _summary(2, 0.7, -10.0, "inconclusive", []),
        _summary(3, 0.8, -30.0, "supported", ["rank"]),
    ]
    exp = aggregate_seeds(summaries)
    assert exp["run_seeds"] == [1, 2, 3]
    acc = exp["accuracy"]["sft"]["value"]
    assert acc["mean"] == pytest.approx(0.7)
    assert acc["std"] == pytest.approx(0.1)  # sample sd of 0.6, 0.7, 0.8
    assert acc["seeds"] == [1, 2, 3]
    assert exp["accuracy"]["sft"]["n"]["mean"] == 50
    row = exp["pairwise"]["sft vs base"]
    assert row["value"]["mean"] == pytest.approx(-20.0)
    assert row["value"]["std"] == pytest.approx(10.0)
    assert row["significant"]["counts"] == {"true": 2, "false": 1}
    claim = exp["claims"]["sft_tradeoff"]
    assert claim["verdict"]["counts"] == {"supported": 2, "inconclusive": 1}
    assert claim["conditions"]["delta_wl(sft vs base) < 0"]["value"]["values"] == [-20, -10, -30]
    assert exp["dpo_skipped"]["counts"] == {"rank": 2}
    assert exp["dataset"]["counts"] == {"demo": 3}
    assert "criteria" not in exp  # only None leaves there: nothing to aggregate


def test_aggregate_seeds_uses_only_the_seeds_that_have_a_key():
    one = _summary(1, 0.5, -5.0, "supported", [])
    two = _summary(2, 0.9, -5.0, "supported", [])
    two["accuracy"]["anchor"] = {"value": 0.4, "n": 50}
    exp = aggregate_seeds([one, two])
    assert exp["accuracy"]["anchor"]["value"] == {
        "mean": 0.4,
        "std": None,
        "seeds": [2],
        "values": [0.4],
    }


def test_aggregate_seeds_rejects_no_runs_and_repeated_seeds():
    with pytest.raises(ValueError, match="at least one run"):
        aggregate_seeds([])
    with pytest.raises(ValueError, match="repeated run_seed"):
        aggregate_seeds([_summary(1, 0.5, 0, "supported", []), _summary(1, 0.6, 0, "", [])])
