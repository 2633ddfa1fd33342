"""The vLLM engine on vLLM's async engine (`AsyncLLM`): continuous batching for Serve.

The offline engine (engines/vllm.py) runs one batch to its end per call, so a request that
arrives meanwhile waits for the whole batch. Here every request goes to vLLM as soon as it
is made and joins the batch being decoded at the next step; it leaves when it is done.
Prompts, sampling parameters (keyed requests greedy with their key in `extra_args`, the
keyed logits processor drawing the sample) and judge reads (one token with the exact
logprob of every verdict digit) are built by the offline engine's code, so for the same
keys both engines send vLLM the same requests.

The AsyncLLM lives on an event loop of its own, on a daemon thread this engine starts, so
it is reachable from any thread and any event loop: the `a*` coroutines (`agenerate`,
`achoice_probs`) from another loop (a Serve replica's), the Engine protocol's blocking
methods from threads (the judge and explain code run in a Serve replica's worker threads,
many at a time; each call's requests join the running batch).

Numerics: a request's logits depend on which other requests share its step. In float32 on
vLLM-CPU they do not move (the tests check keyed text and judge probabilities against the
offline engine); in bf16 they shift a little with the batch, as in engines/vllm.py.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Coroutine
from typing import Any, TypeVar

from vllm import SamplingParams as VSamplingParams
from vllm import TokensPrompt
from vllm.engine.arg_utils import AsyncEngineArgs
from vllm.exceptions import VLLMError
from vllm.sampling_params import RequestOutputKind
from vllm.v1.engine.async_llm import AsyncLLM

from anchor_service.engines.base import (
    ChoiceQuery,
    Completion,
    EngineError,
    GenRequest,
    SamplingParams,
)
from anchor_service.engines.vllm import VLLMEngine, choice_read_params, choice_results

T = TypeVar("T")


class AsyncVLLMEngine(VLLMEngine):
    """vLLM backend of the Engine protocol on `AsyncLLM`; arguments as VLLMEngine's.

    Thread-safe: the blocking methods may be called from many threads at once (never from
    the engine's own loop), the coroutines from any event loop. `with_adapter` views share
    the running engine, as with VLLMEngine.
    """

    def _start(self, kwargs: dict[str, Any]) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="vllm-async-engine", daemon=True
        )
        self._thread.start()
        # Prompt rendering and tokenising run in the callers' threads; a HF fast tokenizer is
        # not safe to enter from two threads at once.
        self._prep_lock = threading.Lock()
        args = AsyncEngineArgs(**kwargs, disable_log_stats=True)
        try:
            # Built on the engine's loop: AsyncLLM starts its output handler on the loop it
            # is created in, and every request must be awaited on that same loop.
            self.llm = self._on_loop(self._create(args))
        except BaseException:
            self._stop_loop()
            raise
        self.tokenizer = self.llm.get_tokenizer()

    @staticmethod
    async def _create(args: AsyncEngineArgs) -> AsyncLLM:
        return AsyncLLM.from_engine_args(args)

    def _on_loop(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on the engine's loop and wait for it (from any other thread)."""
        if _running_loop() is self._loop:
            coro.close()
            raise EngineError(
                f"{self.model_id}: a blocking engine call was made on the async engine's own "
                "event loop (it would wait for itself); await agenerate/achoice_probs instead"
            )
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    async def _on_loop_async(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await `coro` on the engine's loop from any event loop (cancellation carries over)."""
        if _running_loop() is self._loop:
            return await coro
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._loop))

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def close(self) -> None:
        """Stop vLLM's engine process and the engine's event loop thread."""
        # On the loop: shutting down cancels AsyncLLM's output handler task, which is the
        # loop's to touch.
        self._on_loop(self._shutdown())
        self._stop_loop()

    async def _shutdown(self) -> None:
        self.llm.shutdown()

    # --- running ---------------------------------------------------------------------------

    def _run(self, prompts: list[list[int]], params: list[VSamplingParams]) -> list[Any]:
        return self._on_loop(self._run_all(prompts, params))

    async def _arun(self, prompts: list[list[int]], params: list[VSamplingParams]) -> list[Any]:
        return await self._on_loop_async(self._run_all(prompts, params))

    async def _run_all(self, prompts: list[list[int]], params: list[VSamplingParams]) -> list[Any]:
        """vLLM outputs in prompt order; every request is in vLLM before any is awaited."""
        tasks = [
            asyncio.ensure_future(self._run_one(ids, p))
            for ids, p in zip(prompts, params, strict=True)
        ]
        try:
            return await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()  # aborts the caller's other requests in vLLM
            raise

    async def _run_one(self, ids: list[int], params: VSamplingParams) -> Any:
        params.output_kind = RequestOutputKind.FINAL_ONLY
        final = None
        try:
            async for out in self.llm.generate(
                TokensPrompt(prompt_token_ids=ids),
                params,
                uuid.uuid4().hex,
                lora_request=self.lora,
            ):
                final = out
        except (VLLMError, RuntimeError, ValueError) as exc:
            cause = exc.__cause__ or exc
            raise EngineError(
                f"vLLM (async) failed on a request of {len(ids)} prompt tokens for "
                f"{self.model_id} ({type(cause).__name__}: {cause}); if the engine died, "
                "restart the replica"
            ) from exc
        if final is None:
            raise EngineError(f"vLLM (async) returned no output for {self.model_id}")
        return final

    # --- the Engine protocol as coroutines --------------------------------------------------

    async def agenerate(
        self, requests: list[GenRequest], params: SamplingParams
    ) -> list[Completion]:
        """`generate`, awaited: the requests join the running batch."""
        if not requests:
            return []
        with self._prep_lock:
            prompts, vparams = self._gen_inputs(requests, params)
        return self._completions(await self._arun(prompts, vparams), requests)

    def generate(self, requests: list[GenRequest], params: SamplingParams) -> list[Completion]:
        """One completion per request, in request order; sampled tokens keyed by request.key."""
        if not requests:
            return []
        with self._prep_lock:
            prompts, vparams = self._gen_inputs(requests, params)
        return self._completions(self._run(prompts, vparams), requests)

    async def achoice_probs(
        self, queries: list[ChoiceQuery], tokens: list[str]
    ) -> list[list[dict[str, float]]]:
        """`choice_probs`, awaited."""
        with self._prep_lock:
            token_ids, owners, rows = self._choice_rows(queries, tokens)
        if not rows:
            return [[] for _ in queries]
        read = choice_read_params(token_ids)
        outputs = await self._arun(rows, [read.clone() for _ in rows])
        return choice_results(len(queries), owners, outputs, tokens, token_ids)

    def choice_probs(
        self, queries: list[ChoiceQuery], tokens: list[str]
    ) -> list[list[dict[str, float]]]:
        """Per query, per slot: {token: next-token probability} (full-vocab softmax)."""
        return self._on_loop(self.achoice_probs(queries, tokens))

    def check_single_tokens(self, tokens: list[str]) -> None:
        """Raise EngineError naming every token that does not encode to exactly one token id."""
        with self._prep_lock:
            self._single_token_ids(tokens)

    def prompt_tokens(self, prompt: Any) -> int:
        """How many tokens the prompt is, rendered (the OpenAI routes' usage count)."""
        # Called from the replica's worker threads while other requests are tokenised.
        with self._prep_lock:
            return super().prompt_tokens(prompt)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
