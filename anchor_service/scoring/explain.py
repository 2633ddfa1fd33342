"""Ask a policy to answer and explain (the explain prompt), and parse what it wrote.

Used by the CLI, Serve's /v1/explain, sampling (step 1) and evaluation (step 7). Every
sample carries its own key, so its text does not depend on the batch it was in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from anchor_service.core.parsing import ParsedResponse, parse_response
from anchor_service.core.prompts import explain_prompt
from anchor_service.core.types import Example
from anchor_service.engines.base import Completion, Engine, EngineError, GenRequest, SamplingParams

Explained = tuple[Completion, ParsedResponse]


@dataclass
class ExplainRequest:
    """One question to explain, with one randomness key per sample wanted."""

    question: str
    options: list[str]
    keys: list[tuple]

    @classmethod
    def for_example(cls, example: Example, run_seed: int, n: int) -> ExplainRequest:
        """N samples of an example, keyed (run_seed, prompt_id, sample_idx) as in step 1."""
        keys = [(run_seed, example.prompt_id, i) for i in range(n)]
        return cls(question=example.question, options=list(example.options), keys=keys)


def explain_batch(
    engine: Engine, requests: Sequence[ExplainRequest], params: SamplingParams
) -> list[list[Explained]]:
    """All samples of all requests in one engine call; per request, its samples in key order."""
    gen = [
        GenRequest(prompt=explain_prompt(r.question, r.options), key=tuple(key))
        for r in requests
        for key in r.keys
    ]
    if not gen:
        return [[] for _ in requests]
    completions = engine.generate(gen, params)
    if len(completions) != len(gen):
        raise EngineError(
            f"{getattr(engine, 'model_id', 'engine')}: generate returned {len(completions)} "
            f"completions for {len(gen)} requests; the engine must answer every request in order"
        )
    out: list[list[Explained]] = []
    at = 0
    for r in requests:
        mine = completions[at : at + len(r.keys)]
        at += len(r.keys)
        out.append([(c, parse_response(c.text, r.options)) for c in mine])
    return out


def explain(
    engine: Engine,
    question: str,
    options: Sequence[str],
    n: int = 1,
    params: SamplingParams | None = None,
    keys: Sequence[tuple] | None = None,
) -> list[Explained]:
    """N answers with explanations to one question (greedy unless params say otherwise).

    `keys` gives each sample its randomness key; without them sample i is keyed
    ("explain", i), so the same request gives the same samples.
    """
    if keys is None:
        keys = [("explain", i) for i in range(n)]
    if len(keys) != n:
        raise ValueError(f"explain: {len(keys)} keys given for n={n} samples; give one per sample")
    request = ExplainRequest(question=question, options=list(options), keys=list(keys))
    return explain_batch(engine, [request], params or SamplingParams())[0]
