"""Plain data shared by every layer: examples, criteria, verdicts, categories, judgements,
and the responses, pairs and drops of step 5. The rules that use them live in the method's
modules (core/pairs.py orders and picks; core/rubric.py reads verdicts)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol

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
# The four digit tokens read in probability mode, best first (checked single at load).
VERDICT_TOKENS: list[str] = ["3", "2", "1", "0"]

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

# Parse status of a policy response (METHOD.md "Parsing").
OK = "ok"
UNPARSEABLE = "unparseable"


@dataclass(frozen=True)
class ParsedResponse:
    """A parsed response: the answer letter (None if unparseable), the explanation, the status."""

    answer: str | None
    explanation: str
    parse_status: str  # OK | UNPARSEABLE

    @property
    def answer_index(self) -> int | None:
        """The 0-based option index of the answer, or None."""
        return None if self.answer is None else LETTERS.index(self.answer)


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


class JudgeInput(Protocol):
    """What the judge reads of an item (`anchor_service.scoring.item.JudgeItem` fits)."""

    question: str
    options: list[str]
    answer: str | None
    explanation: str


class VerdictParseError(ValueError):
    """A generative judge's output is not the verdict JSON; the message says exactly why."""


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


# --- step 5: strategies, drop reasons, responses and pairs (file-contract spellings) -----
STRATEGIES: tuple[str, ...] = ("anchor", "rank", "maxmin", "label_filter")
REJECTED_CHOICES: tuple[str, ...] = ("lowest", "highest")
Rejected = Literal["lowest", "highest"]

# Drop reasons, in the order select_pair checks them.
EXCLUDED = "excluded"
DEBATER_FAILED = "debater_failed"
DROP_UNSCORED = "unscored"
EMPTY_CHOSEN = "empty_chosen"
IDENTICAL = "identical"
TIE = "tie"
DROP_REASONS: tuple[str, ...] = (
    IDENTICAL,
    TIE,
    DROP_UNSCORED,
    EMPTY_CHOSEN,
    DEBATER_FAILED,
    EXCLUDED,
)

DEBATE_REF = "debate"
STATUSES = (SCORED, UNSCORED, EMPTY)


def sample_ref(sample_idx: int) -> str:
    """The `chosen_ref`/`rejected_ref` spelling of a sample (`sample:<idx>`)."""
    return f"sample:{sample_idx}"


@dataclass(frozen=True)
class Response:
    """One judged response of a prompt: a sample (`sample:<idx>`) or the accepted debate."""

    ref: str
    sample_idx: int  # the attempt for a debate
    text: str
    answer: str | None
    explanation: str
    correct: bool
    status: str  # SCORED | UNSCORED | EMPTY
    score: int | None
    score_expected: float | None

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(
                f"response {self.ref}: status {self.status!r} is not one of {STATUSES}"
            )
        if self.status == SCORED and self.score is None:
            raise ValueError(
                f"response {self.ref}: status 'scored' needs an integer score; "
                "a response the judge could not score has status 'unscored'"
            )


@dataclass(frozen=True)
class PairChoice:
    """The chosen and rejected responses picked for one prompt."""

    prompt_id: str
    category: str
    chosen: Response
    rejected: Response


@dataclass(frozen=True)
class Drop:
    """A prompt that gives no pair, and why (one of DROP_REASONS)."""

    prompt_id: str
    category: str
    reason: str


@dataclass(frozen=True)
class PromptResponses:
    """Everything step 5 needs about one prompt: its samples and, if accepted, its debate."""

    prompt_id: str
    prompt: str  # the rendered explain prompt
    samples: list[Response]
    debate: Response | None = None


@dataclass(frozen=True)
class Pair:
    """One row of `pairs-<strategy>.parquet` (texts are the full responses)."""

    prompt_id: str
    category: str
    prompt: str
    chosen: str
    rejected: str
    chosen_ref: str
    rejected_ref: str
    chosen_score: int
    rejected_score: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Pairing:
    """How a strategy pairs the prompts of one category (METHOD.md step 5).

    `chosen` and `rejected` name the candidate pools (`debate`: the accepted debate;
    `correct` / `incorrect`: the samples with that label; `samples`: all samples); `end` is
    the rejected response's end of the ordering (`lowest`, `highest`, `random`: drawn with
    the prompt's key, or the name of the option that decides it); `anchored`: the label
    decides the preference, so the pair can never be a tie.
    """

    chosen: str
    rejected: str
    end: str
    anchored: bool


# --- step 5's input checks: a bad input gets an error that says what to fix --------------
def check_pair_options(strategy: str, variable_rejected: str, incorrect_rejected: str) -> None:
    if strategy not in STRATEGIES:
        raise ValueError(f"pair strategy {strategy!r} is unknown; use one of {STRATEGIES}")
    for name, value in (
        ("variable_rejected", variable_rejected),
        ("incorrect_rejected", incorrect_rejected),
    ):
        if value not in REJECTED_CHOICES:
            raise ValueError(f"pairs.{name} = {value!r}; use one of {REJECTED_CHOICES}")


def check_prompt_samples(prompt_id: str, category: str, sample_idxs: list[int]) -> None:
    if category not in CATEGORIES:
        raise ValueError(f"prompt {prompt_id}: category {category!r} is not one of {CATEGORIES}")
    if len(set(sample_idxs)) != len(sample_idxs):
        raise ValueError(
            f"prompt {prompt_id}: duplicate sample_idx in {sorted(sample_idxs)}; "
            "each sample must appear once (check samples.parquet / scores.parquet joins)"
        )


def check_unique_prompts(strategy: str, ids: list[str]) -> None:
    if len(set(ids)) != len(ids):
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        raise ValueError(
            f"build_pairs({strategy}): prompt ids {dupes[:5]} appear more than once; "
            "each prompt must be given once with all its samples"
        )


# Phrases that give away that the debater was handed the answer (METHOD.md step 2). Matched
# case-insensitively on word boundaries, so "has given" never matches "as given".
LEAK_PHRASES: tuple[str, ...] = (
    "as given",
    "the given answer",
    "the answer given",
    "given answer",
    "the provided answer",
    "provided answer",
    "the answer provided",
    "answer was provided",
    "answer provided to me",
    "i was told",
    "we were told",
    "you told me",
    "as you said",
    "as you stated",
    "as stated in the prompt",
    "as instructed",
    "i was given",
    "was given",
    "were given the answer",
    "the answer key",
    "the hint",
    "as indicated in the question",
    "the correct answer is given",
    "according to the prompt",
    "according to the instructions",
)
