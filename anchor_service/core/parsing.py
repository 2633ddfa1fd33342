"""Reading a policy response into (answer letter, explanation) (METHOD.md "Parsing").

A *label* is one letter within the option range, standing alone: followed by `)`, `.`, `:`,
`,`, the end of the line, or whitespace and a non-letter. The first line that starts with the
word `Answer` (any case) decides: the label right after `Answer` and its separator is the
answer, and nothing after it is searched. Without such a line, the first sentence decides: a
label right after "answer is", or the whole text of exactly one option. Anything else is
unparseable. The parser never raises: model output is arbitrary text.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from anchor_service.core.types import LETTERS, OK, UNPARSEABLE, ParsedResponse

# `Answer` as a whole word at the start of a line (leading spaces allowed), then its separator:
# spaces, at most one of `:` `-` `=` (or a dash look-alike), spaces, an optional `(`.
_ANSWER_LINE = re.compile(r"^\s*answer(?![^\W\d_])", re.IGNORECASE)
_SEPARATOR = re.compile(r"\s*[:\-=\u2013\u2014]?\s*\(?")
_ANSWER_IS = re.compile(r"\banswer\s+is\b", re.IGNORECASE)
_EXPLANATION = re.compile(r"explanation\s*:", re.IGNORECASE)
# A sentence ends at `.`, `!` or `?` followed by whitespace or the end, or at a line break.
_SENTENCE_END = re.compile(r"[.!?](?=\s|$)|\n")


def label_at(text: str, pos: int, n_options: int) -> str | None:
    """The label starting at `pos` in `text` (upper case), or None if none stands there."""
    if pos >= len(text) or n_options <= 0:
        return None
    letter = text[pos].upper()
    if letter not in LETTERS[: min(n_options, len(LETTERS))]:
        return None
    if pos > 0 and text[pos - 1].isalpha():
        return None  # part of a word
    rest = text[pos + 1 :]
    if not rest or rest[0] in ").:,\n\r":
        return letter
    if rest[0].isspace():
        after = rest.lstrip(" \t")
        # End of line, or a non-letter after the space ("B - because", "B) 60 km/h").
        if not after or after[0] in "\n\r" or not after[0].isalpha():
            return letter
    return None


def _label_after(text: str, end: int, n_options: int) -> str | None:
    """The label after `Answer` / "answer is" ending at `end`, past its separator."""
    sep = _SEPARATOR.match(text, end)
    return label_at(text, sep.end() if sep else end, n_options)


def _normalise(text: str) -> str:
    return " ".join(text.split()).casefold()


def _first_sentence(text: str) -> tuple[str, int]:
    """The first sentence (with its final mark) and the offset where the rest starts."""
    start = len(text) - len(text.lstrip())
    m = _SENTENCE_END.search(text, start)
    end = len(text) if m is None else m.end()
    return text[start:end], end


def _option_in(sentence: str, options: Sequence[str]) -> str | None:
    """The letter of the one option whose whole text appears in the sentence, else None.

    A match that lies inside a longer option's match is part of that option's text
    ("Paris" inside "Paris, France"), not a second match; two real matches are ambiguous.
    """
    hay = _normalise(sentence)
    spans: list[tuple[int, int, int]] = []
    for i, option in enumerate(options[: len(LETTERS)]):
        needle = _normalise(str(option))
        if not needle:
            continue
        pattern = re.compile(rf"(?<!\w){re.escape(needle)}(?!\w)")
        spans.extend((m.start(), m.end(), i) for m in pattern.finditer(hay))
    matched = {
        i
        for (s, e, i) in spans
        if not any(s2 <= s and e <= e2 and (e2 - s2) > (e - s) for (s2, e2, _) in spans)
    }
    return LETTERS[matched.pop()] if len(matched) == 1 else None


def _explanation(text: str, answer_span: tuple[int, int] | None, fallback: str) -> str:
    """Text after `Explanation:` (the answer line cut out of it), else the fallback text."""
    starts = [m for m in _EXPLANATION.finditer(text)]
    if not starts:
        return fallback.strip()
    after_answer = [m for m in starts if answer_span is None or m.start() >= answer_span[0]]
    marker = after_answer[0] if after_answer else starts[0]
    body_start = marker.end()
    if answer_span is not None and body_start <= answer_span[0]:
        # The marker came before the answer line: keep the explanation, drop the answer line.
        body = text[body_start : answer_span[0]] + text[answer_span[1] :]
    else:
        body = text[body_start:]
    return body.strip()


def parse_response(text: str, options: Sequence[str]) -> ParsedResponse:
    """Parse a policy response against its options; never raises."""
    if not isinstance(text, str):
        text = ""
    try:
        n = len(options)
    except TypeError:
        n = 0
    lines = text.splitlines(keepends=True)

    offset = 0
    for line in lines:
        m = _ANSWER_LINE.match(line)
        if m:
            answer = _label_after(line.rstrip("\r\n"), m.end(), n)
            span = (offset, offset + len(line))
            rest = text[span[1] :]
            explanation = _explanation(text, span, rest)
            return ParsedResponse(answer, explanation, OK if answer else UNPARSEABLE)
        offset += len(line)

    sentence, rest_at = _first_sentence(text)
    answer = None
    for m in _ANSWER_IS.finditer(sentence):
        answer = _label_after(sentence, m.end(), n)
        if answer:
            break
    if answer is None:
        answer = _option_in(sentence, options if n else [])
    if answer is None:
        return ParsedResponse(None, _explanation(text, None, text), UNPARSEABLE)
    span = (rest_at - len(sentence), rest_at)
    return ParsedResponse(answer, _explanation(text, span, text[rest_at:]), OK)
