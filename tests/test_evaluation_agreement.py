"""Judge agreement (evaluation/agreement.py) against hand-computed values.

scipy is not installed here, so the Spearman references are worked out by hand in comments.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from anchor_service.core.keys import key_seed
from anchor_service.evaluation.agreement import (
    PairCounts,
    average_ranks,
    judge_agreement,
    pairwise_counts,
    spearman,
)
from anchor_service.evaluation.stats import bootstrap_indices, percentile_ci


def test_average_ranks_give_tied_values_the_mean_of_their_ranks():
    # sorted: 5 (rank 1), 10 (rank 2), 20 20 20 (ranks 3, 4, 5 -> 4 each)
    assert average_ranks([10, 20, 20, 20, 5]).tolist() == [2, 4, 4, 4, 1]


def test_spearman_with_ties_on_one_side_equals_hand_value():
    # ranks x = [1, 2.5, 2.5, 4], y = [1, 3, 2, 4]; deviations from 2.5:
    # dx = [-1.5, 0, 0, 1.5], dy = [-1.5, .5, -.5, 1.5]; sum dx*dy = 4.5,
    # sum dx^2 = 4.5, sum dy^2 = 5 -> rho = 4.5 / sqrt(22.5) = sqrt(0.9)
    assert spearman([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(math.sqrt(0.9))


def test_spearman_with_ties_on_both_sides_equals_hand_value():
    # ranks x = [1.5, 1.5, 3, 4.5, 4.5], y = [3, 1.5, 1.5, 4.5, 4.5], mean 3:
    # sum dx*dy = 0 + 2.25 + 0 + 2.25 + 2.25 = 6.75; sum dx^2 = sum dy^2 = 9 -> 0.75
    assert spearman([1, 1, 2, 3, 3], [2, 1, 1, 3, 3]) == pytest.approx(0.75)


def test_spearman_is_one_for_any_increasing_map_and_minus_one_reversed():
    x = [0.3, 1.0, 2.5, 7.0, 9.9]
    assert spearman(x, [v**3 + 1 for v in x]) == pytest.approx(1.0)
    assert spearman(x, [-v for v in x]) == pytest.approx(-1.0)


def test_spearman_is_undefined_for_a_constant_judge():
    assert spearman([1, 2, 3], [5, 5, 5]) is None
    assert spearman([1], [2]) is None


def test_pairwise_counts_split_strict_reference_pairs_into_agree_disagree_ties():
    # pairs (i<j) of ref [1,2,2,3] / other [2,2,1,3]:
    # (0,1) ref <, other tie -> tie; (0,2) ref <, other > -> disagree; (0,3) agree;
    # (1,2) ref tie -> not counted; (1,3) agree; (2,3) agree
    counts = pairwise_counts([1, 2, 2, 3], [2, 2, 1, 3])
    assert counts == PairCounts(agree=3, disagree=1, ties=1)
    assert counts.pairs == 5
    assert counts.value == pytest.approx(0.6)


def test_pairwise_counts_within_groups_only_compare_responses_of_one_question():
    # q1 holds (0,1): ref strict, other tie -> tie; q2 holds (2,3): agree
    counts = pairwise_counts([1, 2, 2, 3], [2, 2, 1, 3], groups=["q1", "q1", "q2", "q2"])
    assert counts == PairCounts(agree=1, disagree=0, ties=1)


def test_pairwise_agreement_is_undefined_without_strictly_ordered_pairs():
    assert pairwise_counts([4, 4, 4], [1, 2, 3]).value is None


def test_judge_agreement_leaves_out_responses_either_judge_left_unscored():
    result = judge_agreement([1, None, 2, 3, 4], [1, 2, None, 3, 4], n_resamples=200)
    assert result["n"] == 3 and result["excluded"] == 2
    assert result["spearman"]["value"] == pytest.approx(1.0)
    assert result["pairwise"]["agree"] == 3 and result["pairwise"]["value"] == 1.0


def test_judge_agreement_orders_tuples_lexicographically():
    # (score, score_expected): the expected value breaks ties of the integer score
    ref = [(3, 3.0), (3, 3.0), (10, 10.0), (12, 12.0)]
    judge = [(5, 4.1), (5, 4.9), (2, 2.2), (9, 9.0)]
    as_numbers = [5.041, 5.049, 2.022, 9.09]
    got = judge_agreement(ref, judge, n_resamples=200)
    want = judge_agreement([3, 3, 10, 12], as_numbers, n_resamples=200)
    assert got["spearman"] == want["spearman"]
    assert got["pairwise"] == want["pairwise"]


def test_judge_agreement_point_values_equal_the_plain_functions():
    rng = np.random.default_rng(3)
    ref = rng.integers(0, 16, 40).tolist()
    other = [r + float(e) for r, e in zip(ref, rng.normal(0, 4, 40), strict=True)]
    groups = [f"q{i // 4}" for i in range(40)]
    result = judge_agreement(ref, other, groups, seed=1, n_resamples=200)
    assert result["questions"] == 10
    assert result["spearman"]["value"] == pytest.approx(spearman(ref, other))
    all_pairs = pairwise_counts(ref, other)
    within = pairwise_counts(ref, other, groups)
    assert result["pairwise"]["value"] == pytest.approx(all_pairs.value)
    assert result["pairwise"]["pairs"] == all_pairs.pairs
    assert result["pairwise_within_question"]["agree"] == within.agree
    assert result["pairwise_within_question"]["ties"] == within.ties


def test_bootstrap_cis_equal_brute_force_over_the_resampled_questions():
    """The CIs resample whole questions; recount every replicate by expanding the data."""
    rng = np.random.default_rng(5)
    n_q, per_q, n_res, seed = 6, 3, 150, 4
    ref = rng.integers(0, 4, n_q * per_q).tolist()  # few values: many reference ties
    other = rng.integers(0, 4, n_q * per_q).tolist()
    groups = [i // per_q for i in range(n_q * per_q)]
    result = judge_agreement(ref, other, groups, seed=seed, n_resamples=n_res)

    idx = bootstrap_indices(n_q, key_seed((seed, "judge_agreement")), n_res)
    rho, all_pairs, within = [], [], []
    for row in idx:
        take = [q * per_q + k for q in row for k in range(per_q)]
        r, o = [ref[i] for i in take], [other[i] for i in take]
        copy = [c for c in range(len(row)) for _ in range(per_q)]  # which drawn copy
        if (value := spearman(r, o)) is not None:
            rho.append(value)
        if (value := pairwise_counts(r, o).value) is not None:
            all_pairs.append(value)
        if (value := pairwise_counts(r, o, groups=copy).value) is not None:
            within.append(value)
    for name, reps in (
        ("spearman", rho),
        ("pairwise", all_pairs),
        ("pairwise_within_question", within),
    ):
        low, high = percentile_ci(np.array(reps))
        assert result[name]["ci_low"] == pytest.approx(low), name
        assert result[name]["ci_high"] == pytest.approx(high), name


def test_bootstrap_is_seeded_and_brackets_the_point_value():
    rng = np.random.default_rng(9)
    ref = rng.integers(0, 16, 60).tolist()
    other = [r + float(e) for r, e in zip(ref, rng.normal(0, 3, 60), strict=True)]
    a = judge_agreement(ref, other, seed=1, n_resamples=300)
    assert a == judge_agreement(ref, other, seed=1, n_resamples=300)
    assert a != judge_agreement(ref, other, seed=2, n_resamples=300)
    for name in ("spearman", "pairwise"):
        assert a[name]["ci_low"] <= a[name]["value"] <= a[name]["ci_high"]


def test_judge_agreement_rejects_lists_of_different_lengths():
    with pytest.raises(ValueError, match="same responses"):
        judge_agreement([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="one question id per response"):
        judge_agreement([1, 2, 3], [1, 2, 3], groups=["a", "b"])
