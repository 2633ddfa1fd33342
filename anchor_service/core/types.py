"""Plain data shared by every layer: examples, criteria, verdicts, categories, judgements."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# The five rubric criteria of METHOD.md step 3, in the order the judge asks them.
CRITERIA: tuple[str, ...] = (
    "logical_coherence",
    "clarity",
    "relevance",
    "depth_of_argumentation",
    "factual_accuracy",
)

# Human-readable criterion names and questions, used by the judge prompt.
CRITERION_QUESTIONS: dict[str, tuple[str, str]] = {
    "logical_coherence": (
        "Logical coherence",
        "Does the reasoning hold together, without contradictions or leaps?",
    ),
    "clarity": ("Clarity", "Is it easy to follow and unambiguous?"),
    "relevance": ("Relevance", "Does it address this question and these options?"),
    "depth_of_argumentation": (
        "Depth of argumentation",
        "Does it give real reasons, not a restatement, and say why the other options are wrong?",
    ),
    "factual_accuracy": ("Factual accuracy", "Are its claims true?"),
}

# The paper's four verdict levels and their default values (METHOD.md step 3).
VERDICT_VALUES: dict[str, int] = {
    "Excellent": 3,
    "Satisfactory": 2,
    "Needs Improvement": 1,
    "Unsatisfactory": 0,
}
VALUE_VERDICTS: dict[int, str] = {v: k for k, v in VERDICT_VALUES.items()}
MAX_SCORE = 3 * len(CRITERIA)

# Categories of METHOD.md step 4 (file-contract spelling).
CONSISTENTLY_CORRECT = "consistently_correct"
VARIABLE = "variable"
CONSISTENTLY_INCORRECT = "consistently_incorrect"
CATEGORIES: tuple[str, ...] = (CONSISTENTLY_CORRECT, VARIABLE, CONSISTENTLY_INCORRECT)

# Judgement status values (METHOD.md step 3).
SCORED = "scored"
UNSCORED = "unscored"
EMPTY = "empty"

LETTERS = "ABCDEFGHIJ"
MAX_OPTIONS = len(LETTERS)


@dataclass(frozen=True)
class Example:
    """One multiple-choice item: bare option texts, 0-based gold, optional checker facts."""

    prompt_id: str
    question: str
    options: tuple[str, ...]
    gold: int
    meta: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if not 2 <= len(self.options) <= MAX_OPTIONS:
            raise ValueError(
                f"{self.prompt_id}: {len(self.options)} options; 2 to {MAX_OPTIONS} are supported"
            )
        if not 0 <= self.gold < len(self.options):
            raise ValueError(
                f"{self.prompt_id}: gold index {self.gold} is outside 0..{len(self.options) - 1}"
            )

    @property
    def gold_letter(self) -> str:
        return LETTERS[self.gold]

    def to_dict(self) -> dict[str, Any]:
        return {
            "prompt_id": self.prompt_id,
            "question": self.question,
            "options": list(self.options),
            "gold": self.gold,
            "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Example:
        return cls(
            prompt_id=str(d["prompt_id"]),
            question=str(d["question"]),
            options=tuple(str(o) for o in d["options"]),
            gold=int(d["gold"]),
            meta=d.get("meta"),
        )


@dataclass
class Judgement:
    """The judge's verdict on one response (the object of `anchor-align score --json`)."""

    status: str  # SCORED | UNSCORED | EMPTY
    verdicts: dict[str, str] | None
    score: int | None
    score_expected: float | None
    mode: str  # "probability" | "generative" | "oracle"
    judge: str
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. per-criterion expected values

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "verdicts": self.verdicts,
            "score": self.score,
            "score_expected": self.score_expected,
            "mode": self.mode,
            "judge": self.judge,
        }
