"""Step 5 pairs: ordering, the four strategies, every drop reason, and build statistics."""

from __future__ import annotations

import dataclasses
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anchor_service.core.keys import keyed_rng
from anchor_service.core.pairs import (
    DROP_REASONS,
    Drop,
    PairChoice,
    PromptResponses,
    Response,
    build_pairs,
    order_key,
    order_responses,
    select_pair,
)
from anchor_service.core.types import (
    CATEGORIES,
    CONSISTENTLY_CORRECT,
    CONSISTENTLY_INCORRECT,
    DEBATE_REF,
    VARIABLE,
    sample_ref,
)

GOLD, WRONG = "A", "B"


def sample(
    idx: int,
    *,
    correct: bool = True,
    score: int | None = 10,
    expected: float | None = None,
    explanation: str | None = None,
    status: str = "scored",
    text: str | None = None,
) -> Response:
    """A judged sample; its text is unique per index unless given."""
    if explanation is None:
        explanation = f"reason {idx}"
    if status == "empty":
        score = 0 if score == 10 else score
    if status == "unscored":
        score = None
    answer = GOLD if correct else WRONG
    return Response(
        ref=sample_ref(idx),
        sample_idx=idx,
        text=text if text is not None else f"Answer: {answer}\nExplanation: {explanation} #{idx}",
        answer=answer,
        explanation=explanation,
        correct=correct,
        status=status,
        score=score,
        score_expected=expected,
    )


def empty_sample(idx: int, *, correct: bool = True) -> Response:
    return sample(idx, correct=correct, explanation="", status="empty", score=0)


def debate(*, score: int | None = 12, status: str = "scored", text: str = "") -> Response:
    return Response(
        ref=DEBATE_REF,
        sample_idx=0,
        text=text or f"Answer: {GOLD}\nExplanation: the debater's case",
        answer=GOLD,
        explanation="the debater's case",
        correct=True,
        status=status,
        score=score if status != "unscored" else None,
        score_expected=None,
    )


def pick(
    strategy: str,
    category: str,
    samples: list[Response],
    deb: Response | None = None,
    *,
    run_seed: int = 0,
    prompt_id: str = "demo/train/1",
    **options: str,
) -> PairChoice | Drop:
    return select_pair(strategy, prompt_id, category, samples, deb, run_seed=run_seed, **options)


def refs(result: PairChoice | Drop) -> tuple[str, str]:
    assert isinstance(result, PairChoice), f"expected a pair, got {result}"
    return result.chosen.ref, result.rejected.ref


def reason(result: PairChoice | Drop) -> str:
    assert isinstance(result, Drop), f"expected a drop, got {result}"
    return result.reason


# ---------------------------------------------------------------- ordering


def test_order_ranks_higher_score_first() -> None:
    rs = [sample(0, score=5), sample(1, score=12), sample(2, score=8)]
    assert [r.sample_idx for r in order_responses(rs)] == [1, 2, 0]


def test_order_breaks_score_tie_by_higher_expected() -> None:
    rs = [sample(0, score=9, expected=8.7), sample(1, score=9, expected=9.2)]
    assert [r.sample_idx for r in order_responses(rs)] == [1, 0]


def test_order_puts_missing_expected_below_any_number() -> None:
    rs = [sample(0, score=9, expected=None), sample(1, score=9, expected=0.0)]
    assert [r.sample_idx for r in order_responses(rs)] == [1, 0]


def test_order_breaks_expected_tie_by_shorter_explanation() -> None:
    rs = [
        sample(0, score=9, expected=9.0, explanation="a much longer explanation"),
        sample(1, score=9, expected=9.0, explanation="short"),
    ]
    assert [r.sample_idx for r in order_responses(rs)] == [1, 0]


def test_order_breaks_length_tie_by_lower_sample_index() -> None:
    rs = [sample(3, explanation="same"), sample(1, explanation="same")]
    assert [r.sample_idx for r in order_responses(rs)] == [1, 3]


def test_order_score_outranks_expected_and_length() -> None:
    rs = [
        sample(0, score=9, expected=14.9, explanation="x"),
        sample(1, score=10, expected=0.1, explanation="a long explanation"),
    ]
    assert [r.sample_idx for r in order_responses(rs)] == [1, 0]


def test_order_leaves_out_unscored_responses() -> None:
    rs = [sample(0, status="unscored"), sample(1, score=3), empty_sample(2)]
    assert [r.sample_idx for r in order_responses(rs)] == [1, 2]


def test_order_counts_empty_explanation_as_score_zero() -> None:
    rs = [empty_sample(0), sample(1, score=1)]
    assert [r.sample_idx for r in order_responses(rs)] == [1, 0]


def test_order_key_refuses_an_unscored_response() -> None:
    with pytest.raises(ValueError, match="unscored"):
        order_key(sample(0, status="unscored"))


def test_response_refuses_unknown_status() -> None:
    with pytest.raises(ValueError, match="status"):
        sample(0, status="judged")


def test_response_refuses_scored_status_without_score() -> None:
    with pytest.raises(ValueError, match="integer score"):
        Response("sample:0", 0, "t", "A", "e", True, "scored", None, None)


# ---------------------------------------------------------------- anchor


def test_consistently_correct_pairs_best_with_worst() -> None:
    rs = [sample(0, score=8), sample(1, score=13), sample(2, score=4), sample(3, score=10)]
    assert refs(pick("anchor", CONSISTENTLY_CORRECT, rs)) == ("sample:1", "sample:2")


def test_consistently_correct_tie_is_dropped() -> None:
    rs = [sample(0, score=9, expected=9.1), sample(1, score=9, expected=9.1)]
    assert reason(pick("anchor", CONSISTENTLY_CORRECT, rs)) == "tie"


def test_consistently_correct_equal_score_but_different_expected_is_kept() -> None:
    rs = [sample(0, score=9, expected=9.1), sample(1, score=9, expected=8.8)]
    assert refs(pick("anchor", CONSISTENTLY_CORRECT, rs)) == ("sample:0", "sample:1")


def test_variable_prompt_chooses_best_correct_and_rejects_lowest_incorrect() -> None:
    rs = [
        sample(0, correct=True, score=7),
        sample(1, correct=False, score=14),
        sample(2, correct=True, score=11),
        sample(3, correct=False, score=3),
    ]
    assert refs(pick("anchor", VARIABLE, rs)) == ("sample:2", "sample:3")


def test_variable_prompt_rejects_highest_incorrect_when_asked() -> None:
    rs = [
        sample(0, correct=True, score=7),
        sample(1, correct=False, score=14),
        sample(2, correct=True, score=11),
        sample(3, correct=False, score=3),
    ]
    result = pick("anchor", VARIABLE, rs, variable_rejected="highest")
    assert refs(result) == ("sample:2", "sample:1")


def test_variable_pair_is_kept_despite_inverted_scores() -> None:
    rs = [sample(0, correct=True, score=2), sample(1, correct=False, score=15)]
    result = pick("anchor", VARIABLE, rs)
    assert refs(result) == ("sample:0", "sample:1")
    assert result.chosen.score < result.rejected.score


def test_variable_pair_is_kept_when_scores_are_equal() -> None:
    rs = [sample(0, correct=True, score=9), sample(1, correct=False, score=9)]
    assert refs(pick("anchor", VARIABLE, rs)) == ("sample:0", "sample:1")


def test_consistently_incorrect_chooses_debate_and_rejects_lowest_sample() -> None:
    rs = [sample(i, correct=False, score=s) for i, s in enumerate([6, 2, 9, 4])]
    assert refs(pick("anchor", CONSISTENTLY_INCORRECT, rs, debate())) == ("debate", "sample:1")


def test_consistently_incorrect_rejects_highest_sample_when_asked() -> None:
    rs = [sample(i, correct=False, score=s) for i, s in enumerate([6, 2, 9, 4])]
    result = pick("anchor", CONSISTENTLY_INCORRECT, rs, debate(), incorrect_rejected="highest")
    assert refs(result) == ("debate", "sample:2")


def test_consistently_incorrect_pair_is_kept_when_debate_scores_lower() -> None:
    rs = [sample(0, correct=False, score=14), sample(1, correct=False, score=13)]
    assert refs(pick("anchor", CONSISTENTLY_INCORRECT, rs, debate(score=1))) == (
        "debate",
        "sample:1",
    )


def test_consistently_incorrect_without_debate_is_dropped_as_debater_failed() -> None:
    rs = [sample(i, correct=False) for i in range(4)]
    assert reason(pick("anchor", CONSISTENTLY_INCORRECT, rs, None)) == "debater_failed"


def test_unscored_debate_is_dropped_as_unscored() -> None:
    rs = [sample(i, correct=False) for i in range(4)]
    result = pick("anchor", CONSISTENTLY_INCORRECT, rs, debate(status="unscored"))
    assert reason(result) == "unscored"


def test_consistently_incorrect_with_all_samples_unscored_is_dropped_as_unscored() -> None:
    rs = [sample(i, correct=False, status="unscored") for i in range(4)]
    assert reason(pick("anchor", CONSISTENTLY_INCORRECT, rs, debate())) == "unscored"


def test_incorrect_debate_is_refused() -> None:
    bad = Response("debate", 1, "Answer: B", "B", "x", False, "scored", 5, None)
    rs = [sample(i, correct=False) for i in range(2)]
    with pytest.raises(ValueError, match="accepted"):
        pick("anchor", CONSISTENTLY_INCORRECT, rs, bad)


def test_debate_is_ignored_outside_consistently_incorrect() -> None:
    rs = [sample(0, score=8), sample(1, score=3)]
    assert refs(pick("anchor", CONSISTENTLY_CORRECT, rs, debate(score=15))) == (
        "sample:0",
        "sample:1",
    )


# ---------------------------------------------------------------- drops shared by strategies


def test_identical_texts_are_dropped_before_tie() -> None:
    rs = [sample(0, score=9, text="Answer: A"), sample(1, score=9, text="Answer: A")]
    assert reason(pick("anchor", CONSISTENTLY_CORRECT, rs)) == "identical"


def test_identical_texts_are_dropped_in_a_label_anchored_pair() -> None:
    rs = [sample(i, correct=False, score=3 + i) for i in range(3)]
    same = debate(text=rs[0].text)
    assert reason(pick("anchor", CONSISTENTLY_INCORRECT, rs, same)) == "identical"


def test_empty_explanation_is_never_chosen_even_when_best_ordered() -> None:
    # Score 0 and no expected value: the empty one ranks first by its shorter explanation.
    rs = [
        empty_sample(0, correct=True),
        sample(1, correct=True, score=0, explanation="a real if weak reason"),
        sample(2, correct=False, score=5),
    ]
    assert order_responses(rs[:2])[0].sample_idx == 0
    assert refs(pick("anchor", VARIABLE, rs)) == ("sample:1", "sample:2")


def test_empty_explanation_can_be_rejected() -> None:
    rs = [sample(0, score=11), empty_sample(1), sample(2, score=6)]
    assert refs(pick("anchor", CONSISTENTLY_CORRECT, rs)) == ("sample:0", "sample:1")


def test_scored_status_with_blank_explanation_is_not_chosen() -> None:
    rs = [sample(0, score=15, explanation="   "), sample(1, score=4), sample(2, score=1)]
    assert refs(pick("anchor", CONSISTENTLY_CORRECT, rs)) == ("sample:1", "sample:2")


def test_variable_with_only_empty_correct_samples_is_dropped_as_empty_chosen() -> None:
    rs = [empty_sample(0, correct=True), sample(1, correct=False), sample(2, correct=False)]
    assert reason(pick("anchor", VARIABLE, rs)) == "empty_chosen"


def test_all_empty_samples_are_dropped_as_empty_chosen() -> None:
    rs = [empty_sample(i) for i in range(4)]
    assert reason(pick("anchor", CONSISTENTLY_CORRECT, rs)) == "empty_chosen"
    assert reason(pick("maxmin", CONSISTENTLY_CORRECT, rs)) == "empty_chosen"


def test_variable_with_only_unscored_correct_samples_is_dropped_as_unscored() -> None:
    rs = [sample(0, correct=True, status="unscored"), sample(1, correct=False)]
    assert reason(pick("anchor", VARIABLE, rs)) == "unscored"


def test_variable_with_only_unscored_incorrect_samples_is_dropped_as_unscored() -> None:
    rs = [sample(0, correct=True), sample(1, correct=False, status="unscored")]
    assert reason(pick("anchor", VARIABLE, rs)) == "unscored"


def test_single_participating_sample_is_dropped_as_unscored() -> None:
    rs = [sample(0, score=9)] + [sample(i, status="unscored") for i in range(1, 4)]
    assert reason(pick("anchor", CONSISTENTLY_CORRECT, rs)) == "unscored"
    assert reason(pick("rank", CONSISTENTLY_CORRECT, rs)) == "unscored"


def test_unscored_sample_is_never_paired() -> None:
    rs = [sample(0, score=9), sample(1, status="unscored"), sample(2, score=5)]
    assert refs(pick("anchor", CONSISTENTLY_CORRECT, rs)) == ("sample:0", "sample:2")


# ---------------------------------------------------------------- label_filter


def test_label_filter_excludes_consistently_incorrect_even_with_a_debate() -> None:
    rs = [sample(i, correct=False) for i in range(4)]
    assert reason(pick("label_filter", CONSISTENTLY_INCORRECT, rs, debate())) == "excluded"
    assert reason(pick("label_filter", CONSISTENTLY_INCORRECT, rs, None)) == "excluded"


@pytest.mark.parametrize("category", [CONSISTENTLY_CORRECT, VARIABLE])
def test_label_filter_matches_anchor_outside_consistently_incorrect(category: str) -> None:
    correct = [True, True, True, True] if category == CONSISTENTLY_CORRECT else [1, 0, 1, 0]
    rs = [sample(i, correct=bool(c), score=3 * i + 1) for i, c in enumerate(correct)]
    assert pick("label_filter", category, rs) == pick("anchor", category, rs)


# ---------------------------------------------------------------- rank and maxmin


def test_rank_chooses_best_sample_regardless_of_correctness() -> None:
    rs = [sample(0, correct=True, score=5), sample(1, correct=False, score=14)]
    assert refs(pick("rank", VARIABLE, rs)) == ("sample:1", "sample:0")


def test_rank_draws_rejected_with_the_run_seed_and_prompt_key() -> None:
    rs = [sample(i, score=s) for i, s in enumerate([4, 12, 7, 9])]
    for prompt_id in [f"demo/train/{i}" for i in range(20)]:
        result = pick("rank", CONSISTENTLY_CORRECT, rs, run_seed=3, prompt_id=prompt_id)
        others = [r for r in rs if r.sample_idx != 1]
        drawn = keyed_rng((3, "rank", prompt_id)).choice(others)
        assert refs(result) == ("sample:1", drawn.ref)


def test_rank_draws_every_other_participating_sample_and_never_an_unscored_one() -> None:
    rs = [sample(0, score=12), sample(1, score=3), sample(2, score=5), empty_sample(3)]
    rs.append(sample(4, status="unscored"))
    drawn = {
        refs(pick("rank", CONSISTENTLY_CORRECT, rs, prompt_id=f"p/{i}"))[1] for i in range(200)
    }
    assert drawn == {"sample:1", "sample:2", "sample:3"}


def test_rank_drops_tie_even_in_a_variable_prompt() -> None:
    rs = [sample(0, correct=True, score=9), sample(1, correct=False, score=9)]
    assert reason(pick("rank", VARIABLE, rs)) == "tie"


def test_rank_ignores_the_debate() -> None:
    rs = [sample(0, correct=False, score=9), sample(1, correct=False, score=2)]
    result = pick("rank", CONSISTENTLY_INCORRECT, rs, debate(score=15))
    assert refs(result) == ("sample:0", "sample:1")


def test_maxmin_pairs_best_with_worst_regardless_of_correctness() -> None:
    rs = [
        sample(0, correct=True, score=2),
        sample(1, correct=False, score=14),
        sample(2, correct=True, score=8),
    ]
    assert refs(pick("maxmin", VARIABLE, rs)) == ("sample:1", "sample:0")


def test_maxmin_drops_tie_in_a_variable_prompt() -> None:
    rs = [sample(0, correct=True, score=6), sample(1, correct=False, score=6)]
    assert reason(pick("maxmin", VARIABLE, rs)) == "tie"


def test_maxmin_ignores_the_debate_and_rejected_options() -> None:
    rs = [sample(i, correct=False, score=s) for i, s in enumerate([6, 2, 9])]
    result = pick("maxmin", CONSISTENTLY_INCORRECT, rs, debate(), incorrect_rejected="highest")
    assert refs(result) == ("sample:2", "sample:1")


# ---------------------------------------------------------------- argument checks


def test_unknown_strategy_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown"):
        pick("best_of_n", CONSISTENTLY_CORRECT, [sample(0), sample(1)])


def test_unknown_rejected_option_is_refused() -> None:
    with pytest.raises(ValueError, match="variable_rejected"):
        pick("anchor", VARIABLE, [sample(0), sample(1)], variable_rejected="middle")


def test_unknown_category_is_refused() -> None:
    with pytest.raises(ValueError, match="category"):
        pick("anchor", "mixed", [sample(0), sample(1)])


def test_duplicate_sample_index_is_refused() -> None:
    with pytest.raises(ValueError, match="duplicate sample_idx"):
        pick("anchor", CONSISTENTLY_CORRECT, [sample(0), sample(0, score=3)])


# ---------------------------------------------------------------- build_pairs


def prompt(pid: str, samples: list[Response], deb: Response | None = None) -> PromptResponses:
    return PromptResponses(prompt_id=pid, prompt=f"Question {pid}?", samples=samples, debate=deb)


def mixed_prompts() -> list[PromptResponses]:
    """One prompt per outcome of `anchor`: 3 pairs and each drop it can give."""
    return [
        prompt("d/t/01", [sample(0, score=12), sample(1, score=4)]),  # cc pair
        prompt("d/t/02", [sample(0, score=7), sample(1, score=7)]),  # cc tie
        prompt("d/t/03", [sample(0, text="same"), sample(1, text="same")]),  # cc identical
        prompt("d/t/04", [sample(0), sample(1, correct=False, score=2)]),  # variable pair
        prompt("d/t/05", [empty_sample(0), sample(1, correct=False)]),  # variable empty_chosen
        prompt("d/t/06", [sample(0, status="unscored"), sample(1, correct=False)]),  # unscored
        prompt("d/t/07", [sample(0, correct=False), sample(1, correct=False)], debate()),  # ci
        prompt("d/t/08", [sample(0, correct=False), sample(1, correct=False)]),  # debater_failed
    ]


def test_build_pairs_are_sorted_by_prompt_id_for_any_input_order() -> None:
    ps = mixed_prompts()
    shuffled = ps[:]
    random.Random(7).shuffle(shuffled)
    pairs, stats = build_pairs("anchor", ps, run_seed=0)
    pairs2, stats2 = build_pairs("anchor", shuffled, run_seed=0)
    assert [p.prompt_id for p in pairs] == ["d/t/01", "d/t/04", "d/t/07"]
    assert pairs == pairs2 and stats == stats2


def test_build_pairs_counts_every_drop_reason_including_zeros() -> None:
    _, stats = build_pairs("anchor", mixed_prompts(), run_seed=0)
    assert stats["strategy"] == "anchor"
    assert stats["prompts"] == {CONSISTENTLY_CORRECT: 3, VARIABLE: 3, CONSISTENTLY_INCORRECT: 2}
    assert stats["pairs"] == {CONSISTENTLY_CORRECT: 1, VARIABLE: 1, CONSISTENTLY_INCORRECT: 1}
    assert stats["drops"] == {
        "identical": 1,
        "tie": 1,
        "unscored": 1,
        "empty_chosen": 1,
        "debater_failed": 1,
        "excluded": 0,
    }
    assert stats["drops_by_category"][CONSISTENTLY_CORRECT] == dict.fromkeys(DROP_REASONS, 0) | {
        "identical": 1,
        "tie": 1,
    }
    assert stats["drops_by_category"][CONSISTENTLY_INCORRECT]["debater_failed"] == 1


def test_label_filter_stats_count_excluded_prompts() -> None:
    pairs, stats = build_pairs("label_filter", mixed_prompts(), run_seed=0)
    assert stats["drops"]["excluded"] == 2 and stats["drops"]["debater_failed"] == 0
    assert stats["pairs"][CONSISTENTLY_INCORRECT] == 0
    assert [p.prompt_id for p in pairs] == ["d/t/01", "d/t/04"]


def test_lambda_is_the_share_of_variable_and_consistently_incorrect_pairs() -> None:
    _, stats = build_pairs("anchor", mixed_prompts(), run_seed=0)
    assert stats["lambda"] == pytest.approx(2 / 3)
    _, stats = build_pairs("label_filter", mixed_prompts(), run_seed=0)
    assert stats["lambda"] == pytest.approx(1 / 2)


def test_lambda_is_none_without_pairs() -> None:
    _, stats = build_pairs(
        "anchor", [prompt("d/t/1", [sample(0, score=5), sample(1, score=5)])], run_seed=0
    )
    assert stats["lambda"] is None
    assert stats["dpo_skipped"] is True
    _, stats = build_pairs("anchor", [], run_seed=0)
    assert stats["lambda"] is None and sum(stats["prompts"].values()) == 0


def test_dpo_is_skipped_below_min_pairs_only() -> None:
    ps = mixed_prompts()  # 3 anchor pairs
    assert build_pairs("anchor", ps, run_seed=0, min_pairs=4)[1]["dpo_skipped"] is True
    assert build_pairs("anchor", ps, run_seed=0, min_pairs=3)[1]["dpo_skipped"] is False
    assert build_pairs("anchor", ps, run_seed=0)[1]["dpo_skipped"] is True  # default 8


def test_pair_row_carries_full_texts_refs_and_scores() -> None:
    ps = [
        prompt(
            "d/t/7",
            [sample(0, correct=False, score=6), empty_sample(1, correct=False)],
            debate(score=11),
        )
    ]
    pairs, _ = build_pairs("anchor", ps, run_seed=0)
    row = pairs[0].to_dict()
    assert row == {
        "prompt_id": "d/t/7",
        "category": CONSISTENTLY_INCORRECT,
        "prompt": "Question d/t/7?",
        "chosen": debate().text,
        "rejected": ps[0].samples[1].text,
        "chosen_ref": "debate",
        "rejected_ref": "sample:1",
        "chosen_score": 11,
        "rejected_score": 0,
    }


def test_build_pairs_passes_rejected_options_through() -> None:
    ps = [
        prompt(
            "d/t/1",
            [sample(0), sample(1, correct=False, score=2), sample(2, correct=False, score=9)],
        )
    ]
    low, _ = build_pairs("anchor", ps, run_seed=0)
    high, _ = build_pairs("anchor", ps, run_seed=0, variable_rejected="highest")
    assert (low[0].rejected_ref, high[0].rejected_ref) == ("sample:1", "sample:2")


def test_duplicate_prompt_id_is_refused() -> None:
    ps = [prompt("d/t/1", [sample(0), sample(1)]), prompt("d/t/1", [sample(0), sample(1)])]
    with pytest.raises(ValueError, match="more than once"):
        build_pairs("anchor", ps, run_seed=0)


def test_rank_with_another_run_seed_draws_differently() -> None:
    ps = [
        prompt(f"d/t/{i}", [sample(j, score=s) for j, s in enumerate([3, 14, 8, 5])])
        for i in range(30)
    ]
    a, _ = build_pairs("rank", ps, run_seed=0)
    b, _ = build_pairs("rank", ps, run_seed=1)
    assert [p.rejected_ref for p in a] != [p.rejected_ref for p in b]


# ---------------------------------------------------------------- properties

EXPLANATIONS = ["because", "because the others fail", "it follows", "", "   "]


@st.composite
def responses(draw: st.DrawFn, idx: int, correct: bool) -> Response:
    status = draw(st.sampled_from(["scored", "scored", "scored", "empty", "unscored"]))
    explanation = "" if status == "empty" else draw(st.sampled_from(EXPLANATIONS))
    score = {"scored": draw(st.integers(0, 4)), "empty": 0, "unscored": None}[status]
    expected = draw(st.one_of(st.none(), st.sampled_from([0.5, 1.0, 2.5])))
    answer = GOLD if correct else draw(st.sampled_from([WRONG, None]))
    # Texts from a small set so identical texts across responses happen often.
    text = draw(st.sampled_from([f"Answer: {answer}\nExplanation: {explanation}", "Answer: A"]))
    return Response(
        ref=sample_ref(idx),
        sample_idx=idx,
        text=text,
        answer=answer,
        explanation=explanation,
        correct=correct,
        status=status,
        score=score,
        score_expected=expected if status == "scored" else None,
    )


@st.composite
def prompt_sets(draw: st.DrawFn) -> list[PromptResponses]:
    n_prompts = draw(st.integers(0, 12))
    out = []
    for p in range(n_prompts):
        n = draw(st.integers(1, 4))
        flags = draw(st.lists(st.booleans(), min_size=n, max_size=n))
        samples = [draw(responses(i, c)) for i, c in enumerate(flags)]
        deb = None
        if not any(flags) and draw(st.booleans()):
            d = draw(responses(draw(st.integers(0, 2)), True))
            deb = dataclasses.replace(d, ref=DEBATE_REF)
        out.append(prompt(f"d/t/{p:03d}", samples, deb))
    return out


@settings(max_examples=150, deadline=None)
@given(prompt_sets(), st.sampled_from(["anchor", "rank", "maxmin", "label_filter"]))
def test_every_pair_is_well_formed(ps: list[PromptResponses], strategy: str) -> None:
    pairs, stats = build_pairs(strategy, ps, run_seed=0)
    by_id = {p.prompt_id: p for p in ps}
    for pair in pairs:
        assert pair.chosen != pair.rejected
        assert pair.chosen_ref != pair.rejected_ref
        responses_ = by_id[pair.prompt_id].samples + [by_id[pair.prompt_id].debate]
        ref_of = {r.ref: r for r in responses_ if r is not None}
        chosen, rejected = ref_of[pair.chosen_ref], ref_of[pair.rejected_ref]
        assert chosen.status == "scored" and chosen.explanation.strip()
        assert rejected.status in ("scored", "empty")
        if strategy in ("anchor", "label_filter"):
            assert chosen.correct or not rejected.correct
        if strategy != "anchor":
            assert pair.chosen_ref != "debate"


@settings(max_examples=150, deadline=None)
@given(prompt_sets(), st.sampled_from(["anchor", "rank", "maxmin", "label_filter"]))
def test_prompts_equal_pairs_plus_drops_in_every_category(
    ps: list[PromptResponses], strategy: str
) -> None:
    pairs, stats = build_pairs(strategy, ps, run_seed=0)
    assert set(stats["drops"]) == set(DROP_REASONS)
    for c in CATEGORIES:
        assert stats["prompts"][c] == stats["pairs"][c] + sum(
            stats["drops_by_category"][c].values()
        )
    assert sum(stats["pairs"].values()) == len(pairs)
    assert sum(stats["prompts"].values()) == len(ps)
    for r in DROP_REASONS:
        assert stats["drops"][r] == sum(stats["drops_by_category"][c][r] for c in CATEGORIES)


@settings(max_examples=100, deadline=None)
@given(prompt_sets(), st.randoms(use_true_random=False), st.integers(0, 2**31))
def test_rank_pairs_do_not_depend_on_prompt_order(
    ps: list[PromptResponses], rnd: random.Random, seed: int
) -> None:
    shuffled = ps[:]
    rnd.shuffle(shuffled)
    shuffled = [
        PromptResponses(p.prompt_id, p.prompt, list(reversed(p.samples)), p.debate)
        for p in shuffled
    ]
    assert build_pairs("rank", ps, run_seed=seed) == build_pairs("rank", shuffled, run_seed=seed)
