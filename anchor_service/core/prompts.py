"""The policy's two prompts and the debater's prompt (METHOD.md "Two prompts for the policy").

Prompts are chat messages; the engine renders them with the model's own template. They are
kept short on purpose: the embedded 135M model reads them on two CPU cores.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from anchor_service.core.types import LEAK_PHRASES, LETTERS, MAX_OPTIONS

ANSWER_INSTRUCTION = "Reply with the letter of the correct option only."
EXPLANATION_PLACEHOLDER = "<why this option is right, and why the others are not>"
EXPLAIN_INSTRUCTION = (
    f"Reply in exactly this format:\nAnswer: <letter>\nExplanation: {EXPLANATION_PLACEHOLDER}"
)
# Worded as the debater's own conviction, so it has no reason to mention a hint or a key.
DEBATER_INSTRUCTION = (
    "The correct answer is {letter}. Explain why, in your own words, as your own reasoning."
)

_LEAK_PATTERNS = [(p, re.compile(rf"\b{re.escape(p)}\b", re.IGNORECASE)) for p in LEAK_PHRASES]


class PromptError(ValueError):
    """A question cannot be turned into a prompt (no options, too many, bad gold index)."""


def _check_options(options: Sequence[str]) -> None:
    if not 1 <= len(options) <= MAX_OPTIONS:
        raise PromptError(
            f"{len(options)} options given; a prompt needs 1 to {MAX_OPTIONS} (labels A..J)"
        )


def format_options(options: Sequence[str]) -> str:
    """Options one per line, labelled by position: "A) ...\\nB) ..."."""
    _check_options(options)
    return "\n".join(f"{LETTERS[i]}) {' '.join(str(o).split())}" for i, o in enumerate(options))


def _question_block(question: str, options: Sequence[str]) -> str:
    return f"{question.strip()}\n\n{format_options(options)}"


def answer_prompt(question: str, options: Sequence[str]) -> list[dict]:
    """The label-only prompt used for SFT (its target is `answer_target`)."""
    content = f"{_question_block(question, options)}\n\n{ANSWER_INSTRUCTION}"
    return [{"role": "user", "content": content}]


def answer_target(gold_index: int) -> str:
    """The SFT target for the answer prompt: exactly `Answer: <letter>`."""
    if not 0 <= gold_index < MAX_OPTIONS:
        raise PromptError(f"gold index {gold_index} is outside 0..{MAX_OPTIONS - 1}")
    return f"Answer: {LETTERS[gold_index]}"


def explain_prompt(question: str, options: Sequence[str]) -> list[dict]:
    """The prompt used for sampling, DPO and evaluation: answer line, then explanation."""
    content = f"{_question_block(question, options)}\n\n{EXPLAIN_INSTRUCTION}"
    return [{"role": "user", "content": content}]


def debater_prompt(question: str, options: Sequence[str], gold_index: int) -> list[dict]:
    """The explain prompt plus the gold letter, for the debater of step 2."""
    if not 0 <= gold_index < len(options):
        raise PromptError(f"gold index {gold_index} is outside 0..{len(options) - 1}")
    content = (
        f"{_question_block(question, options)}\n\n"
        f"{DEBATER_INSTRUCTION.format(letter=LETTERS[gold_index])}\n"
        f"{EXPLAIN_INSTRUCTION}"
    )
    return [{"role": "user", "content": content}]


def debate_leaks(text: str) -> str | None:
    """The first leak phrase found in a debater response (as listed), or None if it has none."""
    if not isinstance(text, str) or not text:
        return None
    found = [(m.start(), phrase) for phrase, pat in _LEAK_PATTERNS if (m := pat.search(text))]
    return min(found)[1] if found else None
