"""The LLM judge over an Engine, in probability or generative mode (METHOD.md step 3).

`score` batches: one `choice_probs` call (probability mode) or one `generate` call plus at
most one repair call (generative mode, decoding constrained to `verdict_schema()` on engines
that support it) for a whole list of items. Empty explanations score 0
without any model call. Model output never makes it raise: a verdict that cannot be read
makes the item `unscored` (counted by the caller, never dropped silently).
"""

from __future__ import annotations

import logging
from typing import Literal

from anchor_service.core.rubric import (
    VERDICT_TOKENS,
    VerdictParseError,
    expected_values,
    judge_messages,
    judge_query,
    parse_verdict_json,
    read_probabilities,
    repair_messages,
    verdict_schema,
)
from anchor_service.core.types import (
    CRITERIA,
    EMPTY,
    SCORED,
    UNSCORED,
    VERDICT_VALUES,
    Judgement,
)
from anchor_service.engines.base import (
    ChoiceQuery,
    Engine,
    EngineError,
    GenRequest,
    SamplingParams,
)
from anchor_service.scoring.item import JudgeItem

log = logging.getLogger(__name__)

PROBABILITY = "probability"
GENERATIVE = "generative"
JudgeMode = Literal["auto", "probability", "generative"]


class Judge:
    """Scores explanations with an engine; `mode` is resolved once at construction."""

    def __init__(
        self,
        engine: Engine,
        mode: JudgeMode = "auto",
        judge_id: str | None = None,
        max_tokens: int = 160,
        delimiter_key: str = "",
    ) -> None:
        self.engine = engine
        self.delimiter_key = delimiter_key
        self.judge_id = judge_id or getattr(engine, "model_id", "judge")
        self.max_tokens = max_tokens
        if mode == PROBABILITY:
            # A multi-token digit would make every verdict meaningless: fail at load.
            engine.check_single_tokens(VERDICT_TOKENS)
            self.mode = PROBABILITY
        elif mode == GENERATIVE:
            self.mode = GENERATIVE
        elif mode == "auto":
            self.mode = self._auto_mode(engine)
        else:
            raise ValueError(
                f"judge mode {mode!r} is not one of auto, probability, generative "
                "(the demo oracle is built by scoring.scorer.make_judge, not by Judge)"
            )
        log.info("judge %s in %s mode", self.judge_id, self.mode)

    @staticmethod
    def _auto_mode(engine: Engine) -> str:
        """Probability mode where the engine gives next-token probabilities of single digits."""
        if not callable(getattr(engine, "choice_probs", None)):
            return GENERATIVE
        try:
            engine.check_single_tokens(VERDICT_TOKENS)
        except (EngineError, NotImplementedError) as exc:
            log.warning("judge falls back to generative mode: %s", exc)
            return GENERATIVE
        return PROBABILITY

    def score(self, items: list[JudgeItem]) -> list[Judgement]:
        """One Judgement per item, in order."""
        results: list[Judgement | None] = [None] * len(items)
        todo: list[int] = []
        for i, item in enumerate(items):
            if not str(item.explanation or "").strip():
                results[i] = self._empty()
            else:
                todo.append(i)
        if todo:
            batch = [items[i] for i in todo]
            if self.mode == PROBABILITY:
                judged = self._score_probability(batch)
            else:
                judged = self._score_generative(batch)
            for i, j in zip(todo, judged, strict=True):
                results[i] = j
        return [r for r in results if r is not None]

    def _empty(self) -> Judgement:
        return Judgement(
            status=EMPTY,
            verdicts={k: "Unsatisfactory" for k in CRITERIA},
            score=0,
            score_expected=0.0 if self.mode == PROBABILITY else None,
            mode=self.mode,
            judge=self.judge_id,
        )

    def _unscored(self, error: str) -> Judgement:
        return Judgement(
            status=UNSCORED,
            verdicts=None,
            score=None,
            score_expected=None,
            mode=self.mode,
            judge=self.judge_id,
            extra={"error": error},
        )

    def _score_probability(self, items: list[JudgeItem]) -> list[Judgement]:
        queries = []
        for item in items:
            prefix, slots = judge_query(item, self.delimiter_key)
            queries.append(ChoiceQuery(prefix=prefix, slots=slots))
        probs = self.engine.choice_probs(queries, VERDICT_TOKENS)
        if len(probs) != len(queries):
            raise EngineError(
                f"{self.judge_id}: choice_probs returned {len(probs)} results for "
                f"{len(queries)} queries; the engine must answer every query in order"
            )
        out = []
        for slot_probs in probs:
            try:
                verdicts, score, expected = read_probabilities(slot_probs)
            except VerdictParseError as exc:
                log.warning("%s: unscored response: %s", self.judge_id, exc)
                out.append(self._unscored(str(exc)))
                continue
            out.append(
                Judgement(
                    status=SCORED,
                    verdicts=verdicts,
                    score=score,
                    score_expected=expected,
                    mode=PROBABILITY,
                    judge=self.judge_id,
                    extra={"expected": expected_values(slot_probs)},
                )
            )
        return out

    def _generate(self, prompts: list[list[dict]], round_name: str) -> list[str]:
        # The verdict schema constrains decoding where the engine supports it; the reply is
        # parsed either way, and engines that ignore it still get the repair round.
        params = SamplingParams(
            temperature=0.0,
            top_p=1.0,
            max_tokens=self.max_tokens,
            json_schema=verdict_schema(),
        )
        requests = [
            GenRequest(prompt=p, key=("judge", round_name, i)) for i, p in enumerate(prompts)
        ]
        completions = self.engine.generate(requests, params)
        if len(completions) != len(requests):
            raise EngineError(
                f"{self.judge_id}: generate returned {len(completions)} completions for "
                f"{len(requests)} requests; the engine must answer every request in order"
            )
        return [c.text if isinstance(c.text, str) else "" for c in completions]

    def _score_generative(self, items: list[JudgeItem]) -> list[Judgement]:
        messages = [judge_messages(item, self.delimiter_key) for item in items]
        outputs = self._generate(messages, "first")
        verdicts: list[dict[str, str] | None] = [None] * len(items)
        errors: dict[int, str] = {}
        for i, text in enumerate(outputs):
            try:
                verdicts[i] = parse_verdict_json(text)
            except VerdictParseError as exc:
                errors[i] = str(exc)
        if errors:
            # One repair round for all failures at once, each quoting its own error.
            failed = sorted(errors)
            repairs = [repair_messages(messages[i], outputs[i], errors[i]) for i in failed]
            for i, text in zip(failed, self._generate(repairs, "repair"), strict=True):
                try:
                    verdicts[i] = parse_verdict_json(text)
                except VerdictParseError as exc:
                    errors[i] = f"{errors[i]}; after repair: {exc}"
                    log.warning("%s: unscored response: %s", self.judge_id, errors[i])
                else:
                    del errors[i]
        out = []
        for i, v in enumerate(verdicts):
            if v is None:
                out.append(self._unscored(errors[i]))
                continue
            out.append(
                Judgement(
                    status=SCORED,
                    verdicts=v,
                    score=sum(VERDICT_VALUES[w] for w in v.values()),
                    score_expected=None,
                    mode=GENERATIVE,
                    judge=self.judge_id,
                )
            )
        return out
