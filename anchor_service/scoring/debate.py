"""The debater of step 2: an explanation for the gold answer of consistently incorrect prompts.

Attempt 0 is greedy; a rejected attempt is retried up to `max_retries` times at `temperature`,
keyed by (run_seed, prompt_id, "debate", attempt), so a resumed run redoes the same draws.
An attempt is accepted only if it parses to the gold letter, has a non-empty explanation and
does not say that the answer was handed to it. Each round is one batched engine call over
every prompt still without an accepted attempt.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from anchor_service.core.parsing import ParsedResponse, parse_response
from anchor_service.core.prompts import EXPLANATION_PLACEHOLDER, debate_leaks, debater_prompt
from anchor_service.core.types import Example
from anchor_service.engines.base import Engine, EngineError, GenRequest, SamplingParams

log = logging.getLogger(__name__)

ACCEPTED = "accepted"
WRONG_ANSWER = "wrong_answer"
UNPARSEABLE = "unparseable"
EMPTY_EXPLANATION = "empty_explanation"
LEAK = "leak"


@dataclass
class DebateAttempt:
    """One debater attempt: a row of debates.parquet."""

    prompt_id: str
    attempt: int
    text: str
    answer: str | None
    explanation: str
    accepted: bool
    reason: (
        str  # "accepted" | "wrong_answer" | "unparseable" | "empty_explanation" | "leak: <phrase>"
    )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def debate_key(run_seed: int, prompt_id: str, attempt: int) -> tuple:
    """The randomness key of one debate attempt (METHOD.md step 2)."""
    return (run_seed, prompt_id, "debate", attempt)


def judge_attempt(text: str, parsed: ParsedResponse, gold_letter: str) -> str:
    """Why an attempt is accepted or rejected: "accepted" or the first failed check."""
    if parsed.answer is None:
        return UNPARSEABLE
    if parsed.answer != gold_letter:
        return WRONG_ANSWER
    if not parsed.explanation.strip() or EXPLANATION_PLACEHOLDER in parsed.explanation:
        # Copying the format's placeholder is no explanation (seen with a started reply).
        return EMPTY_EXPLANATION
    phrase = debate_leaks(text)
    if phrase is not None:
        return f"{LEAK}: {phrase}"
    return ACCEPTED


def started_reply(gold_letter: str) -> dict[str, str]:
    """The start of the debater's reply (`prefill_answer`): the answer line and the label."""
    return {"role": "assistant", "content": f"Answer: {gold_letter}\nExplanation:"}


def debate(
    engine: Engine,
    examples: Sequence[Example],
    run_seed: int,
    max_retries: int = 2,
    temperature: float = 0.7,
    max_tokens: int = 256,
    prefill_answer: bool = False,
) -> list[DebateAttempt]:
    """Every attempt for every example, ordered by example then attempt.

    With `prefill_answer` the reply is started as `Answer: <gold>` + `Explanation:` and the
    model continues it; the attempt's text is the whole reply, checked like any other.
    """
    attempts: dict[str, list[DebateAttempt]] = {e.prompt_id: [] for e in examples}
    if len(attempts) != len(examples):
        raise ValueError("debate: duplicate prompt_id in the examples; each prompt debates once")
    pending = list(examples)
    for attempt in range(max_retries + 1):
        if not pending:
            break
        params = SamplingParams(
            temperature=0.0 if attempt == 0 else temperature,
            top_p=1.0,
            max_tokens=max_tokens,
        )
        requests = [
            GenRequest(
                prompt=debater_prompt(e.question, e.options, e.gold)
                + ([started_reply(e.gold_letter)] if prefill_answer else []),
                key=debate_key(run_seed, e.prompt_id, attempt),
            )
            for e in pending
        ]
        completions = engine.generate(requests, params)
        if len(completions) != len(requests):
            raise EngineError(
                f"{getattr(engine, 'model_id', 'debater')}: generate returned "
                f"{len(completions)} completions for {len(requests)} debate requests"
            )
        still = []
        for example, completion in zip(pending, completions, strict=True):
            text = completion.text if isinstance(completion.text, str) else ""
            if prefill_answer:
                text = started_reply(example.gold_letter)["content"] + text
            parsed = parse_response(text, example.options)
            reason = judge_attempt(text, parsed, example.gold_letter)
            attempts[example.prompt_id].append(
                DebateAttempt(
                    prompt_id=example.prompt_id,
                    attempt=attempt,
                    text=text,
                    answer=parsed.answer,
                    explanation=parsed.explanation,
                    accepted=reason == ACCEPTED,
                    reason=reason,
                )
            )
            if reason != ACCEPTED:
                still.append(example)
        pending = still
    if pending:
        log.info("debater failed on %d of %d prompts", len(pending), len(examples))
    return [a for e in examples for a in attempts[e.prompt_id]]


def accepted_attempts(attempts: Sequence[DebateAttempt]) -> dict[str, DebateAttempt]:
    """The accepted attempt of each prompt that has one (the only one to be judged)."""
    return {a.prompt_id: a for a in attempts if a.accepted}
