"""Constrained decoding to the canonical JSON of an object of enum-valued string properties.

The generative judge (METHOD.md step 3) asks for `{"criterion": "<verdict word>", ...}`; a
small model left free rarely writes it. With `SamplingParams.json_schema` the HF engine only
lets through tokens that keep the completion a prefix of `json.dumps(obj)` for some instance
`obj` of the schema, then the end-of-sequence token.

Why characters, not token sequences: a model's tokenizer merges text across the boundaries
between the fixed JSON text and a verdict word (SmolLM2 writes `{"`, `":`, ` "`, `",`, `"}`
as single tokens), so the tokenisation of each allowed piece on its own is not what the model
writes. The constraint therefore lives on the decoded text: a character automaton of the
allowed strings (fixed text, a choice among the enum values at each slot, fixed text, ...),
walked in step with a trie of the vocabulary's token texts. A token is allowed when its whole
text moves the automaton along; any tokenisation of an allowed string is reachable (as in
vLLM's grammar backends), and the greedy pick is the model's own preferred spelling. The
allowed tokens of an automaton state are computed once and cached, so each decoding step costs
a dictionary look-up per row.

Imports only torch, transformers and engines.base, like engines/sampler.py.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import LogitsProcessor

from anchor_service.engines.base import EngineError

SUPPORTED_SHAPE = (
    '{"type": "object", "properties": {"name": {"enum": ["a", "b"]} or '
    '{"type": "string", "enum": [...]}, ...}, "required": [every property]} '
    "(optionally additionalProperties: false, title, description)"
)
# Schema keywords that only annotate, or say what the canonical form already guarantees.
_OBJECT_KEYS = {"type", "properties", "required", "additionalProperties", "title", "description"}
_OBJECT_KEYS |= {"$schema", "$id"}
_PROPERTY_KEYS = {"type", "enum", "title", "description"}
# The state of a row after its end-of-sequence token.
DONE = -1


class UnsupportedSchemaError(EngineError):
    """A json_schema this engine cannot constrain decoding to; the message names the shape."""


def _unsupported(problem: str) -> UnsupportedSchemaError:
    return UnsupportedSchemaError(
        f"SamplingParams.json_schema: {problem}. The hf engine constrains decoding only to "
        f"an object of enum-valued string properties, all required, written in property order "
        f"as json.dumps writes it: {SUPPORTED_SHAPE}. Use that shape, or the vllm or openai "
        "engine (structured outputs) for other schemas"
    )


def _check_keywords(obj: dict, allowed: set[str], type_name: str, where: str) -> None:
    """Only the keywords this shape supports, and `type` (if given) is `type_name`."""
    extra = sorted(set(obj) - allowed)
    if extra:
        raise _unsupported(f"{where}keywords {extra} are not supported")
    if obj.get("type", type_name) != type_name:
        raise _unsupported(f"{where}type must be '{type_name}', got {obj.get('type')!r}")


@dataclass(frozen=True)
class EnumObjectSchema:
    """An object schema with a fixed key order and, per key, the allowed string values."""

    keys: tuple[str, ...]
    choices: tuple[tuple[str, ...], ...]

    @classmethod
    def from_schema(cls, schema: Any) -> EnumObjectSchema:
        """Read a JSON schema dict; UnsupportedSchemaError for anything outside the shape."""
        if not isinstance(schema, dict):
            raise _unsupported(f"expected a dict, got {type(schema).__name__}")
        _check_keywords(schema, _OBJECT_KEYS, "object", "")
        props = schema.get("properties")
        if not isinstance(props, dict) or not props:
            raise _unsupported("'properties' must be a non-empty object")
        if schema.get("additionalProperties", False) not in (False, True):
            raise _unsupported("additionalProperties must be false (or absent)")
        required = schema.get("required")
        if not isinstance(required, list) or set(required) != set(props):
            listed = set(required) if isinstance(required, list) else set()
            raise _unsupported(
                f"'required' must name exactly the properties (not required: "
                f"{sorted(set(props) - listed)}; not properties: {sorted(listed - set(props))})"
            )
        choices = []
        for key, prop in props.items():
            where = f"property {key!r}"
            if not isinstance(prop, dict):
                raise _unsupported(f"{where} must be an object, got {prop!r:.80}")
            _check_keywords(prop, _PROPERTY_KEYS, "string", f"{where}: ")
            enum = prop.get("enum")
            if not isinstance(enum, list) or not enum:
                raise _unsupported(f"{where} needs a non-empty 'enum' list")
            if not all(isinstance(v, str) for v in enum):
                raise _unsupported(f"{where}: every enum value must be a string, got {enum!r}")
            choices.append(tuple(dict.fromkeys(enum)))  # duplicates add nothing
        return cls(keys=tuple(props), choices=tuple(choices))

    def pieces(self) -> list[str | tuple[str, ...]]:
        """The canonical text as fixed strings and, per slot, the serialised choices."""
        out: list[str | tuple[str, ...]] = []
        for i, (key, values) in enumerate(zip(self.keys, self.choices, strict=True)):
            out.append(("{" if i == 0 else ", ") + json.dumps(key) + ": ")
            out.append(tuple(json.dumps(v) for v in values))
        out.append("}")
        return out

    def canonical(self, values: dict[str, str]) -> str:
        """json.dumps of an instance, keys in schema order (what constrained decoding writes)."""
        return json.dumps({k: values[k] for k in self.keys})


class TextAutomaton:
    """A deterministic character automaton accepting exactly the strings built from pieces.

    A piece is fixed text or a tuple of choices; choices must be prefix-free (serialised JSON
    strings are: each ends at its only unescaped quote), so every choice ends in one join state.
    """

    def __init__(self, pieces: Sequence[str | Sequence[str]]) -> None:
        self.edges: list[dict[str, int]] = [{}]
        state = 0
        for piece in pieces:
            if isinstance(piece, str):
                for ch in piece:
                    state = self._extend(state, ch)
                continue
            join = self._new()
            for choice in piece:
                if not choice:
                    raise ValueError("an empty choice cannot be told apart from its slot's end")
                at = state
                for ch in choice[:-1]:
                    at = self._extend(at, ch, avoid=join)
                if self.edges[at].get(choice[-1], join) != join:
                    raise ValueError(f"choice {choice!r} is a prefix of another choice")
                self.edges[at][choice[-1]] = join
            state = join
        self.start = 0
        self.accept = state
        self.alphabet = frozenset(ch for edges in self.edges for ch in edges)

    def _new(self) -> int:
        self.edges.append({})
        return len(self.edges) - 1

    def _extend(self, state: int, ch: str, avoid: int | None = None) -> int:
        nxt = self.edges[state].get(ch)
        if nxt is None:
            nxt = self.edges[state][ch] = self._new()
        elif nxt == avoid:
            raise ValueError("a choice is a prefix of another choice")
        return nxt

    def walk(self, text: str, state: int = 0) -> int | None:
        """The state after reading `text` from `state`, or None when it leaves the language."""
        for ch in text:
            nxt = self.edges[state].get(ch)
            if nxt is None:
                return None
            state = nxt
        return state


class _TrieNode:
    __slots__ = ("children", "ids")

    def __init__(self) -> None:
        self.children: dict[str, _TrieNode] = {}
        self.ids: list[int] = []


def token_texts(tokenizer: Any) -> list[str | None]:
    """The text each token id adds after other text; None for special tokens and for ids
    whose text is not whole on its own (a piece of a multi-byte character)."""
    n = len(tokenizer)
    special = set(tokenizer.all_special_ids)
    # Decoded after an ordinary token, because SentencePiece tokenizers drop a token's leading
    # space when it starts the text; the anchor's own text is then cut off again.
    anchor = tokenizer.encode("a", add_special_tokens=False)
    kwargs = {"skip_special_tokens": False, "clean_up_tokenization_spaces": False}
    if len(anchor) == 1:
        head = tokenizer.decode(anchor, **kwargs)
        pairs = tokenizer.batch_decode([[anchor[0], i] for i in range(n)], **kwargs)
        texts = [t[len(head) :] if t.startswith(head) else None for t in pairs]
    else:
        texts = list(tokenizer.batch_decode([[i] for i in range(n)], **kwargs))
    return [None if i in special or not t or "\ufffd" in t else t for i, t in enumerate(texts)]


class TokenConstraint:
    """Which token ids may follow each automaton state, for one tokenizer's vocabulary."""

    def __init__(
        self, automaton: TextAutomaton, texts: Sequence[str | None], end_ids: Sequence[int]
    ) -> None:
        if not end_ids:
            raise EngineError("constrained decoding needs an end-of-sequence token id")
        self.automaton = automaton
        self.start = automaton.start
        self.end_ids = list(end_ids)
        self.root = _TrieNode()
        for tid, text in enumerate(texts):
            # Only tokens made of the allowed strings' characters can ever move the automaton.
            if text and set(text) <= automaton.alphabet:
                node = self.root
                for ch in text:
                    node = node.children.setdefault(ch, _TrieNode())
                node.ids.append(tid)
        self._next: dict[int, dict[int, int]] = {}
        self._ids: dict[int, torch.Tensor] = {}

    def allowed(self, state: int) -> dict[int, int]:
        """{token id: state after it} for every token allowed in `state` (cached)."""
        if state == self.automaton.accept:
            return dict.fromkeys(self.end_ids, DONE)
        found = self._next.get(state)
        if found is not None:
            return found
        found = {}
        # Walk the vocabulary trie and the automaton together: only paths both share.
        stack = [(self.root, state)]
        while stack:
            node, at = stack.pop()
            for ch, nxt in self.automaton.edges[at].items():
                child = node.children.get(ch)
                if child is None:
                    continue
                for tid in child.ids:
                    found[tid] = nxt
                stack.append((child, nxt))
        if not found:
            raise EngineError(
                f"constrained decoding: no token of this tokenizer continues the JSON at "
                f"automaton state {state} (expected one of {sorted(self.automaton.edges[state])})"
            )
        self._next[state] = found
        return found

    def allowed_ids(self, state: int) -> torch.Tensor:
        """The allowed token ids of `state` as a CPU tensor (cached)."""
        ids = self._ids.get(state)
        if ids is None:
            ids = self._ids[state] = torch.tensor(sorted(self.allowed(state)), dtype=torch.long)
        return ids

    def advance(self, state: int | None, token: int) -> int | None:
        """The state after `token`; DONE after the end token, None off the constraint."""
        if state is None or state == DONE:
            return None
        return self.allowed(state).get(token)


def build_constraint(
    schema: Any, texts: Sequence[str | None], end_ids: Sequence[int]
) -> TokenConstraint:
    """The token constraint of a schema (UnsupportedSchemaError outside the supported shape)."""
    return TokenConstraint(
        TextAutomaton(EnumObjectSchema.from_schema(schema).pieces()), texts, end_ids
    )


class JsonSchemaProcessor(LogitsProcessor):
    """Masks every token the constraint does not allow, row by row, for `generate`.

    A row's mask depends only on that row's own generated tokens, so a sample stays the same
    alone or in any batch. `prompt_width` is the left-padded prompt length; rows that ended
    (or, never expected, left the constraint) are not masked, `generate` pads them anyway.
    Put it before the keyed sampler: temperature and top-p then act on the allowed tokens.
    """

    def __init__(self, constraint: TokenConstraint, rows: int, prompt_width: int) -> None:
        self.constraint = constraint
        self.states: list[int | None] = [constraint.start] * rows
        self.prompt_width = prompt_width
        self.consumed = 0

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        generated = input_ids.shape[1] - self.prompt_width
        if generated > self.consumed:
            new = input_ids[:, self.prompt_width + self.consumed :].tolist()
            for row, tokens in enumerate(new):
                for token in tokens:
                    self.states[row] = self.constraint.advance(self.states[row], token)
            self.consumed = generated
        keep = torch.zeros(scores.shape, dtype=torch.bool)
        width = scores.shape[-1]
        for row, state in enumerate(self.states):
            if state is None or state == DONE:
                keep[row] = True
            else:
                ids = self.constraint.allowed_ids(state)
                keep[row, ids[ids < width]] = True
        return scores.masked_fill(~keep.to(scores.device), float("-inf"))
