"""Step 4 of METHOD.md: a prompt's category from how many of its samples are correct."""

from __future__ import annotations

from anchor_service.core.types import CONSISTENTLY_CORRECT, CONSISTENTLY_INCORRECT, VARIABLE


def categorize(correct_flags: list[bool]) -> str:
    """`consistently_correct` if c = N, `variable` if 0 < c < N, `consistently_incorrect` if c = 0.

    An unparseable sample arrives here as False: it counts as incorrect.
    """
    if not correct_flags:
        raise ValueError(
            "categorize: a prompt with no samples has no category; "
            "check that sampling wrote N samples for it"
        )
    n_correct = sum(1 for flag in correct_flags if flag)
    if n_correct == len(correct_flags):
        return CONSISTENTLY_CORRECT
    if n_correct == 0:
        return CONSISTENTLY_INCORRECT
    return VARIABLE
