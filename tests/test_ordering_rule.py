"""One ordering rule (`core.pairs.rank_value`): the pair builder, the judges' sanity figure
and the judges' agreement with the oracle rank judged responses the same way."""

from __future__ import annotations

import math

import pytest

from anchor_service.core.pairs import order_responses, rank_value
from anchor_service.core.types import EMPTY, SCORED, UNSCORED, Judgement, Response
from anchor_service.report.agreement import ordering_key
from anchor_service.scoring.sanity import sanity_figure


def test_score_first_then_expected_and_a_missing_expected_lowest():
    assert rank_value(9, 1.0) > rank_value(8, 14.9)
    assert rank_value(9, 9.2) > rank_value(9, 9.1)
    assert rank_value(9, 0.0) > rank_value(9, None)
    assert rank_value(9, None) == rank_value(9, None)
    assert rank_value(9, 9.1) == rank_value(9, 9.1)


def _response(idx: int, score: int, expected: float | None) -> Response:
    return Response(
        ref=f"sample:{idx}",
        sample_idx=idx,
        text=f"text {idx}",
        answer="A",
        explanation=f"explanation {idx}",
        correct=True,
        status=SCORED,
        score=score,
        score_expected=expected,
    )


def test_the_pair_builder_orders_best_first_by_rank_value():
    rs = [_response(0, 8, 8.5), _response(1, 9, None), _response(2, 9, 8.9), _response(3, 8, None)]
    ordered = order_responses(rs)
    assert [r.sample_idx for r in ordered] == [2, 1, 0, 3]
    values = [rank_value(r.score, r.score_expected) for r in ordered]
    assert values == sorted(values, reverse=True)


def _judged(score: int | None, expected: float | None, status: str = SCORED) -> Judgement:
    return Judgement(status, None, score, expected, "probability", "j")


@pytest.mark.parametrize(
    ("sound", "nonsense", "passes"),
    [
        ((9, 8.0), (8, 12.0), True),  # the score decides first
        ((9, 9.3), (9, 9.1), True),  # score_expected breaks the tie
        ((9, 9.1), (9, 9.1), False),  # a tie fails
        ((9, None), (9, None), False),  # generative mode: equal scores tie
        ((8, 8.0), (9, 7.0), False),
    ],
)
def test_the_sanity_figure_passes_exactly_when_rank_value_is_higher(sound, nonsense, passes):
    figure = sanity_figure([_judged(*sound), _judged(*nonsense)])
    assert figure["passed"] == int(passes)
    assert (rank_value(*sound) > rank_value(*nonsense)) is passes


def test_an_unscored_response_never_passes_the_sanity_check():
    figure = sanity_figure([_judged(None, None, UNSCORED), _judged(0, 0.0)])
    assert figure["passed"] == 0 and figure["margins"] == [None]


def test_the_agreement_ranks_a_row_by_rank_value_and_leaves_out_unscored_rows():
    assert ordering_key(9, 9.1, SCORED) == rank_value(9, 9.1)
    assert ordering_key(9.0, math.nan, SCORED) == rank_value(9, None)
    assert ordering_key(0, None, EMPTY) == rank_value(0, None)
    assert ordering_key(math.nan, None, UNSCORED) is None
    assert ordering_key(7, 7.0, UNSCORED) is None
