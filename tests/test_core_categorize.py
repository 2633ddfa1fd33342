"""Step 4 categories: c correct samples out of N."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from anchor_service.core.categorize import categorize
from anchor_service.core.types import (
    CATEGORIES,
    CONSISTENTLY_CORRECT,
    CONSISTENTLY_INCORRECT,
    VARIABLE,
)


def test_all_correct_is_consistently_correct() -> None:
    assert categorize([True, True, True, True]) == CONSISTENTLY_CORRECT


def test_none_correct_is_consistently_incorrect() -> None:
    assert categorize([False, False, False, False]) == CONSISTENTLY_INCORRECT


@pytest.mark.parametrize("flags", [[True, False, False, False], [False, True, True, True]])
def test_some_correct_is_variable(flags: list[bool]) -> None:
    assert categorize(flags) == VARIABLE


def test_single_sample_is_never_variable() -> None:
    assert categorize([True]) == CONSISTENTLY_CORRECT
    assert categorize([False]) == CONSISTENTLY_INCORRECT


def test_no_samples_raises_with_a_hint() -> None:
    with pytest.raises(ValueError, match="no samples"):
        categorize([])


@given(st.lists(st.booleans(), min_size=1, max_size=12))
def test_category_follows_the_count_of_correct_samples(flags: list[bool]) -> None:
    category = categorize(flags)
    assert category in CATEGORIES
    c, n = sum(flags), len(flags)
    expected = CONSISTENTLY_CORRECT if c == n else CONSISTENTLY_INCORRECT if c == 0 else VARIABLE
    assert category == expected
    # Order of the samples never matters.
    assert categorize(list(reversed(flags))) == category
