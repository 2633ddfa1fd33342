"""The Engine protocol: what every backend (hf, vllm, openai, serve) implements.

Requests carry their own randomness key, so a sample's text never depends on which batch
it was in, on the batch size, or on whether the run was resumed (METHOD.md step 1).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from anchor_service.core.keys import key_seed  # noqa: F401  (re-exported for engines)

Prompt = str | list[dict]  # plain text (already rendered) or chat messages


@dataclass
class GenRequest:
    """One sample. `key` is (run_seed, prompt_id, sample_idx) or (run_seed, prompt_id, "debate", attempt)."""

    prompt: Prompt
    key: tuple = ()


@dataclass
class SamplingParams:
    """Decoding settings, named as in vLLM. temperature 0 is greedy (the key is then unused).

    `json_schema`: constrain the completion to JSON matching this schema, where the engine
    supports it (hf: objects of enum-valued string properties, engines/json_constraint.py;
    vllm: structured outputs; openai: `response_format` on chat prompts). Engines without
    support ignore it, so callers still validate what comes back.

    `logprobs`: also return, per generated token, its log-probability and the `logprobs` most
    likely tokens' (the model's own distribution, before temperature and top-p, as vLLM's
    default); None: none. Only the hf engine returns them (`Completion.logprobs`).
    """

    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 256
    stop: list[str] = field(default_factory=list)
    json_schema: dict | None = None
    logprobs: int | None = None


@dataclass
class TokenLogprob:
    """One generated token: its text, its log-probability, and the top alternatives'."""

    token: str
    logprob: float
    top: dict[str, float] = field(default_factory=dict)


@dataclass
class Completion:
    """What an engine returns for one GenRequest, in request order."""

    text: str
    key: tuple = ()
    num_tokens: int = 0
    finish_reason: str = "stop"  # "stop" | "length" | "error"
    logprobs: list[TokenLogprob] | None = None  # when SamplingParams.logprobs asked for them


@dataclass
class ChoiceQuery:
    """Next-token probabilities of `tokens` after `prefix + slot`, for every slot.

    The prefix (rubric + question + response) is shared by all slots (the five criteria), so
    engines that can compute it once (KV cache, prefix caching) do.
    """

    prefix: Prompt  # chat messages are rendered with the model's template, generation prompt added
    slots: list[str]  # text appended after the rendered prefix, one per criterion


class EngineError(RuntimeError):
    """A backend failed in a way the caller can act on (model not found, server unreachable)."""


@runtime_checkable
class Engine(Protocol):
    """A model backend. Implementations must never raise on odd model output."""

    model_id: str

    def generate(self, requests: list[GenRequest], params: SamplingParams) -> list[Completion]:
        """One completion per request, in request order; randomness from each request's key."""
        ...

    def choice_probs(
        self, queries: list[ChoiceQuery], tokens: list[str]
    ) -> list[list[dict[str, float]]]:
        """For each query and each slot: {token: probability} over `tokens` (not renormalised).

        Raises EngineError if a token is not a single token for this model's tokenizer.
        """
        ...

    def check_single_tokens(self, tokens: list[str]) -> None:
        """Raise EngineError naming any token that the tokenizer does not keep as one token."""
        ...
