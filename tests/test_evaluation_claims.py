"""Tests of anchor_service.evaluation.claims: conditions, verdicts and the joint paired bootstrap."""

from __future__ import annotations

import pytest

from anchor_service.evaluation.claims import (
    CONTRADICTED,
    INCONCLUSIVE,
    NOT_APPLICABLE,
    SUPPORTED,
    combine_verdicts,
    condition_verdict,
    evaluate_claims,
)

N = 100
BASE_SCORE = 8


def against_base(wins: int, ties: int, losses: int) -> list[int | None]:
    """Scores that win/tie/lose against a base scoring BASE_SCORE on every question."""
    assert wins + ties + losses == N
    return [BASE_SCORE + 2] * wins + [BASE_SCORE] * ties + [BASE_SCORE - 3] * losses


def correct_on(k: int) -> list[bool]:
    """Correct on the first k questions."""
    return [True] * k + [False] * (N - k)


BASE_SCORES = [BASE_SCORE] * N


def test_condition_verdict_reads_the_ci_against_the_claimed_side():
    assert condition_verdict(0.5, 3.0, ">", 0.0) == SUPPORTED
    assert condition_verdict(-3.0, -0.5, ">", 0.0) == CONTRADICTED
    assert condition_verdict(-1.0, 2.0, ">", 0.0) == INCONCLUSIVE
    # The threshold belongs to the other side: a CI of [0, 0] cannot support "> 0".
    assert condition_verdict(0.0, 0.0, ">", 0.0) == CONTRADICTED
    assert condition_verdict(-9.0, -1.0, "<", 0.0) == SUPPORTED
    assert condition_verdict(0.0, 4.0, "<", 0.0) == CONTRADICTED
    assert condition_verdict(-1.0, 0.0, ">", -2.0) == SUPPORTED


def test_combine_verdicts_treats_a_claim_as_a_conjunction():
    assert combine_verdicts([SUPPORTED, SUPPORTED]) == SUPPORTED
    assert combine_verdicts([SUPPORTED, INCONCLUSIVE]) == INCONCLUSIVE
    assert combine_verdicts([SUPPORTED, CONTRADICTED]) == CONTRADICTED
    assert combine_verdicts([INCONCLUSIVE, CONTRADICTED]) == CONTRADICTED
    assert combine_verdicts([]) == NOT_APPLICABLE


def test_sft_tradeoff_supported_when_accuracy_rises_and_explanations_lose():
    claims = evaluate_claims(
        {"base": correct_on(50), "sft": correct_on(80)},
        {"base": BASE_SCORES, "sft": against_base(10, 30, 60)},
        seed=1,
    )
    claim = claims["sft_tradeoff"]
    assert claim["verdict"] == SUPPORTED
    acc, dwl = claim["conditions"]
    assert acc["value"] == pytest.approx(30.0)  # points
    assert dwl["value"] == pytest.approx(-50.0)
    assert acc["ci_low"] > 0 and dwl["ci_high"] < 0
    for condition in claim["conditions"]:
        assert set(condition) == {"what", "value", "ci_low", "ci_high", "verdict"}
        assert condition["ci_low"] <= condition["value"] <= condition["ci_high"]


def test_sft_tradeoff_contradicted_when_accuracy_falls_even_though_explanations_lose():
    claim = evaluate_claims(
        {"base": correct_on(80), "sft": correct_on(50)},
        {"base": BASE_SCORES, "sft": against_base(10, 30, 60)},
        seed=1,
    )["sft_tradeoff"]
    assert [c["verdict"] for c in claim["conditions"]] == [CONTRADICTED, SUPPORTED]
    assert claim["verdict"] == CONTRADICTED


def test_sft_tradeoff_inconclusive_when_accuracy_gain_is_within_noise():
    base = correct_on(50)
    sft = correct_on(50)
    for i in (60, 61, 62):  # sft right where base was wrong
        sft[i] = True
    for i in (0, 1):  # and wrong where base was right: +1 point net
        sft[i] = False
    claim = evaluate_claims(
        {"base": base, "sft": sft},
        {"base": BASE_SCORES, "sft": against_base(10, 30, 60)},
        seed=1,
    )["sft_tradeoff"]
    acc = claim["conditions"][0]
    assert acc["value"] == pytest.approx(1.0)
    assert acc["ci_low"] < 0 < acc["ci_high"]
    assert claim["verdict"] == INCONCLUSIVE


def test_accuracy_difference_is_paired_so_identical_answers_give_a_zero_width_ci():
    # anchor is right exactly where sft is: an unpaired bootstrap of two 50% accuracies
    # would give a CI about +-14 points wide; paired, the difference is 0 in every resample.
    scores = {"anchor": against_base(60, 30, 10), "rank": against_base(20, 30, 50)}
    claim = evaluate_claims({"anchor": correct_on(50), "sft": correct_on(50)}, scores, seed=3)[
        "anchor_beats_rank"
    ]
    dwl, acc = claim["conditions"]
    assert (acc["value"], acc["ci_low"], acc["ci_high"]) == (0.0, 0.0, 0.0)
    assert acc["verdict"] == SUPPORTED  # 0 > -2 points
    assert dwl["verdict"] == SUPPORTED
    assert claim["verdict"] == SUPPORTED


def test_anchor_beats_rank_not_applicable_without_a_rank_model():
    claims = evaluate_claims(
        {"base": correct_on(50), "sft": correct_on(60), "anchor": correct_on(60)},
        {"base": BASE_SCORES, "sft": against_base(10, 30, 60), "anchor": against_base(20, 60, 20)},
        seed=0,
    )
    claim = claims["anchor_beats_rank"]
    assert claim["verdict"] == NOT_APPLICABLE
    assert claim["conditions"] == []
    assert "rank" in claim["reason"]
    assert claims["sft_tradeoff"]["verdict"] != NOT_APPLICABLE


def test_recovery_supported_when_most_of_the_loss_comes_back():
    # delta_wl(sft) = -100, delta_wl(anchor) = -20: (-20 + 100) / 100 = 0.8 > 0.5
    claim = evaluate_claims(
        {},
        {"base": BASE_SCORES, "sft": against_base(0, 0, 100), "anchor": against_base(0, 80, 20)},
        seed=4,
    )["recovery"]
    (condition,) = claim["conditions"]
    assert condition["value"] == pytest.approx(0.8)
    assert condition["ci_low"] > 0.5
    assert claim["verdict"] == SUPPORTED


def test_recovery_contradicted_when_little_of_the_loss_comes_back():
    # delta_wl(sft) = -100, delta_wl(anchor) = -90: 10 / 100 = 0.1
    claim = evaluate_claims(
        {},
        {"base": BASE_SCORES, "sft": against_base(0, 0, 100), "anchor": against_base(0, 10, 90)},
        seed=4,
    )["recovery"]
    assert claim["conditions"][0]["value"] == pytest.approx(0.1)
    assert claim["verdict"] == CONTRADICTED


def test_recovery_inconclusive_when_sfts_loss_is_not_established():
    # sft loses only 2 of 100 questions: about 13% of resamples draw neither, so the ratio is
    # undefined there and the condition cannot be decided, though anchor recovers everything.
    claim = evaluate_claims(
        {},
        {"base": BASE_SCORES, "sft": against_base(0, 98, 2), "anchor": BASE_SCORES},
        seed=4,
    )["recovery"]
    (condition,) = claim["conditions"]
    assert condition["value"] == pytest.approx(1.0)
    assert condition["undefined_resamples"] > 25
    assert claim["verdict"] == INCONCLUSIVE


def test_recovery_not_applicable_when_sft_lost_nothing():
    claim = evaluate_claims(
        {},
        {"base": BASE_SCORES, "sft": against_base(30, 50, 20), "anchor": BASE_SCORES},
        seed=4,
    )["recovery"]
    assert claim["verdict"] == NOT_APPLICABLE
    assert claim["conditions"] == []


def test_unscored_responses_lose_in_the_claims_delta_wl():
    sft = against_base(0, N, 0)
    sft[:40] = [None] * 40  # unscored: each loses to base's scored response
    claim = evaluate_claims(
        {"base": correct_on(20), "sft": correct_on(90)}, {"base": BASE_SCORES, "sft": sft}, seed=2
    )["sft_tradeoff"]
    assert claim["conditions"][1]["value"] == pytest.approx(-40.0)
    assert claim["verdict"] == SUPPORTED


def test_claims_are_reproducible_from_the_seed():
    correct = {"base": correct_on(50), "sft": correct_on(56)}
    scores = {"base": BASE_SCORES, "sft": against_base(30, 35, 35)}
    assert evaluate_claims(correct, scores, seed=7) == evaluate_claims(correct, scores, seed=7)
    # CIs of 100 questions sit on a coarse grid, so a few seeds are needed to see one move.
    cis = {
        tuple((c["ci_low"], c["ci_high"]) for c in claim["conditions"])
        for seed in range(7, 12)
        for claim in [evaluate_claims(correct, scores, seed=seed)["sft_tradeoff"]]
    }
    assert len(cis) > 1


def test_claims_reject_models_evaluated_on_different_questions():
    with pytest.raises(ValueError, match="different numbers of questions"):
        evaluate_claims({"base": correct_on(50)}, {"base": BASE_SCORES[:-1]}, seed=0)
