"""bench/learnability.py counts a bare option letter as the answer prompt's answer."""

from __future__ import annotations

import pytest

from bench.learnability import _bare_letter


@pytest.mark.parametrize(
    "text, want",
    [("B", "B"), (" C) ", "C"), ("(D)", "D"), ("A.\n", "A"), ("E", None), ("b", None),
     ("Answer: B", None), ("B because it is", None), ("", None)],
)  # fmt: skip
def test_only_a_lone_letter_of_an_option_counts(text, want):
    assert _bare_letter(text, 4) == want
