"""The judge and policy deployments: each replica owns one engine, built from config.

Two ways to batch callers, chosen by the engine:
- vLLM with `continuous_batching` (the default): vLLM's async engine
  (engines/vllm_async.py). Each caller's judge or explain code runs on a worker thread of
  its own (up to max_ongoing_requests), and its requests join the batch vLLM is decoding
  at the next step; a short request is not held up by a long one ahead of it.
- Every other engine (hf, openai, offline vLLM): `@serve.batch` groups many callers' items
  into one engine call, on one worker thread per replica, so the event loop keeps
  accepting (and batching) requests while the model computes and the engine is never
  entered by two threads at once.
The same replicas also expose the Engine protocol's methods (`generate`, `choice_probs`,
`check_single_tokens`) for `ServeEngine`, so the pipeline (placement `serve`) and users
share one set of model actors.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from ray import serve

from anchor_service.compute import resolve_threads, start_threads, with_threads
from anchor_service.config import DeploymentConfig, JudgeConfig, ModelSpec
from anchor_service.core.rubric import JUDGE_PROMPT_VERSION
from anchor_service.engines.base import (
    ChoiceQuery,
    Completion,
    Engine,
    EngineError,
    GenRequest,
    SamplingParams,
)
from anchor_service.engines.placement import serve_placement
from anchor_service.scoring.explain import ExplainRequest, explain_batch
from anchor_service.scoring.item import JudgeItem

log = logging.getLogger(__name__)

JUDGE = "judge"
POLICY = "policy"

T = TypeVar("T")


def deployment_options(
    dep: DeploymentConfig, name: str, retry_after_s: float, spec: ModelSpec | None = None
) -> dict[str, Any]:
    """`Deployment.options(...)` keywords of a deployment's config (replicas, CPUs, queues).

    `spec`: the model each replica loads; a vLLM one with tensor parallelism gets a placement
    group of TP bundles per replica (engines/placement.py).
    """
    options: dict[str, Any] = {
        "name": name,
        **serve_placement(spec, dep),
        "max_ongoing_requests": dep.max_ongoing_requests,
        "max_queued_requests": dep.max_queued_requests,
        # Requests beyond max_queued_requests: 503 with Retry-After, from proxy or handle.
        "backpressure_config": {"status_code": 503, "retry_after_s": retry_after_s},
    }
    if dep.autoscaling:
        options["autoscaling_config"] = {
            "min_replicas": dep.min_replicas,
            "max_replicas": max(dep.max_replicas, dep.min_replicas, 1),
            "target_ongoing_requests": dep.target_ongoing_requests,
        }
    else:
        options["num_replicas"] = dep.num_replicas
    return options


def replica_threads(dep: DeploymentConfig, spec: ModelSpec) -> int:
    """torch threads of a replica: the deployment's, else the model's, else its whole CPUs
    (`compute.resolve_threads`, the precedence every process uses)."""
    threads = resolve_threads(dep.torch_threads, spec, dep.num_cpus)
    assert threads is not None  # a replica always has num_cpus
    return threads


def _with_threads(spec: ModelSpec, threads: int) -> ModelSpec:
    if spec.engine == "serve":
        raise EngineError(
            f"model '{spec.name}' has engine 'serve', which would make a deployment call "
            "itself; a deployment needs a real engine (hf, vllm, openai)"
        )
    return with_threads(spec, threads)


class _EngineReplica:
    """What both deployments share: one engine, one worker thread, the Engine methods."""

    engine: Engine | None
    models: dict[str, Engine]
    what: str
    continuous: bool

    def _ready(self, dep: DeploymentConfig, batched: Any, threads: int) -> None:
        """Size the @serve.batch method and the worker threads, and say the replica is up."""
        self.max_batch_size = dep.max_batch_size
        batched.set_max_batch_size(dep.max_batch_size)
        batched.set_batch_wait_timeout_s(dep.batch_wait_timeout_s)
        self._start_worker(dep)
        log.info(
            "%s deployment ready: %s, %d torch threads, %s",
            self.what,
            self.info_dict,
            threads,
            "continuous batching" if self.continuous else "serve.batch",
        )

    def _start_worker(self, dep: DeploymentConfig) -> None:
        # The async engine is thread-safe and every ongoing request waits on it in a thread of
        # its own; an engine behind @serve.batch gets one thread (batches run one at a time).
        workers = dep.max_ongoing_requests if self.continuous else 1
        self._worker = ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix=f"{self.what}-engine"
        )

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._worker, fn, *args)

    def _need_engine(self) -> Engine:
        if self.engine is None:
            raise EngineError(
                f"the {self.what} deployment has no model engine (oracle judge); "
                "engine calls need an LLM judge"
            )
        return self.engine

    async def generate(
        self, requests: list[GenRequest], params: SamplingParams
    ) -> list[Completion]:
        """Engine protocol, for ServeEngine."""
        engine = self._need_engine()
        if self.continuous:
            return await engine.agenerate(requests, params)  # type: ignore[attr-defined]
        return await self._run(engine.generate, requests, params)

    async def choice_probs(
        self, queries: list[ChoiceQuery], tokens: list[str]
    ) -> list[list[dict[str, float]]]:
        """Engine protocol, for ServeEngine."""
        engine = self._need_engine()
        if self.continuous:
            return await engine.achoice_probs(queries, tokens)  # type: ignore[attr-defined]
        return await self._run(engine.choice_probs, queries, tokens)

    async def check_single_tokens(self, tokens: list[str]) -> None:
        """Engine protocol, for ServeEngine."""
        await self._run(self._need_engine().check_single_tokens, tokens)

    async def complete(
        self, model: str, requests: list[GenRequest], params: SamplingParams
    ) -> list[dict[str, Any]]:
        """The OpenAI routes' call: `model`'s completion of each request, in order, as
        {text, finish_reason, completion_tokens, prompt_tokens, logprobs}."""
        engine = self.models.get(model)
        if engine is None:
            raise EngineError(f"the {self.what} deployment serves no model '{model}'")
        if self.continuous:
            done = await engine.agenerate(requests, params)  # type: ignore[attr-defined]
            counts = await self._run(_prompt_tokens, engine, requests)
            return [_openai_dict(c, n) for c, n in zip(done, counts, strict=True)]
        return await self._complete_on(model, requests, params)

    async def _complete_on(
        self, model: str, requests: list[GenRequest], params: SamplingParams
    ) -> list[dict[str, Any]]:
        # Judge replicas: one worker thread runs the engine calls one at a time.
        return await self._run(_generate_counted, self.models[model], requests, params)


def _items_in(batch: list[list[Any]]) -> int:
    return sum(len(chunk) for chunk in batch)


def _chunks(items: list[T], size: int) -> list[list[T]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


async def _concat(calls: Iterable[Awaitable[list[Any]]]) -> list[Any]:
    """The results of batched calls (one per chunk of a request), in order, as one list."""
    out: list[Any] = []
    for part in await asyncio.gather(*calls):
        if isinstance(part, BaseException):
            raise part
        out.extend(part)
    return out


def _continuous(spec: ModelSpec, dep: DeploymentConfig) -> bool:
    """Whether a replica of this model runs on vLLM's async engine (module docstring)."""
    return dep.continuous_batching and spec.engine == "vllm"


@serve.deployment
class JudgeDeployment(_EngineReplica):
    """Scores explanations with the judge of a JudgeConfig (LLM judge or demo oracle)."""

    what = JUDGE

    def __init__(self, judge: dict[str, Any], deployment: dict[str, Any]) -> None:
        from anchor_service.scoring.scorer import make_judge

        cfg = JudgeConfig.model_validate(judge)
        dep = DeploymentConfig.model_validate(deployment)
        threads = replica_threads(dep, cfg.model)
        start_threads(threads, "judge replica")
        cfg = cfg.model_copy(update={"model": _with_threads(cfg.model, threads)})
        self.continuous = cfg.mode != "oracle" and _continuous(cfg.model, dep)
        self.scorer = make_judge(cfg, continuous_batching=self.continuous)
        self.engine = getattr(self.scorer, "engine", None)
        self.models = {} if self.engine is None else {JUDGE: self.engine}
        self.info_dict = {
            "id": self.scorer.judge_id,
            "engine": "oracle" if self.engine is None else cfg.model.engine,
            "mode": getattr(self.scorer, "mode", "oracle"),
            # Scores are comparable only under one prompt version: a client caching them
            # keys on it (None for the oracle, which reads no prompt).
            "prompt_version": None if self.engine is None else JUDGE_PROMPT_VERSION,
            "logprobs": self.engine is not None and cfg.model.engine == "hf",
        }
        self._ready(dep, self._score_batch, threads)

    async def info(self) -> dict[str, Any]:
        """{id, engine, mode, prompt_version} of this judge."""
        return dict(self.info_dict)

    async def score(self, items: list[JudgeItem]) -> list[dict[str, Any]]:
        """`Judgement.to_dict()` per item, in order; batched with other callers' items."""
        if self.continuous:
            return [j.to_dict() for j in await self._run(self._score_checked, items)]
        # A request larger than one batch is split here: serve.batch refuses oversize entries.
        return await _concat(
            self._score_batch(chunk) for chunk in _chunks(items, self.max_batch_size)
        )

    @serve.batch(batch_size_fn=_items_in)
    async def _score_batch(
        self, chunks: list[list[JudgeItem]]
    ) -> list[list[dict[str, Any]] | BaseException]:
        flat = [item for chunk in chunks for item in chunk]
        try:
            judged = await self._run(self._score_checked, flat)
        except Exception as exc:  # noqa: BLE001 - isolate the failing caller, see below
            if len(chunks) == 1:
                return [exc]
            # One caller's input must not fail the others batched with it: judge each alone.
            log.warning(
                "judge batch of %d callers failed (%s); retrying one by one", len(chunks), exc
            )
            return [await self._score_alone(chunk) for chunk in chunks]
        out: list[list[dict[str, Any]] | BaseException] = []
        at = 0
        for chunk in chunks:
            out.append([j.to_dict() for j in judged[at : at + len(chunk)]])
            at += len(chunk)
        return out

    def _score_checked(self, items: list[JudgeItem]) -> list[Any]:
        judged = self.scorer.score(items)
        if len(judged) != len(items):
            raise EngineError(
                f"{self.scorer.judge_id}: {len(judged)} judgements for {len(items)} items"
            )
        return judged

    async def _score_alone(self, chunk: list[JudgeItem]) -> list[dict[str, Any]] | BaseException:
        try:
            return [j.to_dict() for j in await self._run(self.scorer.score, chunk)]
        except Exception as exc:  # noqa: BLE001 - returned to this caller only
            return exc


# One explain call: the question and its sample keys, and the decoding settings.
ExplainCall = tuple[ExplainRequest, SamplingParams]


def _params_key(params: SamplingParams) -> tuple:
    return (params.temperature, params.top_p, params.max_tokens, tuple(params.stop))


@serve.deployment
class PolicyDeployment(_EngineReplica):
    """Answers and explains questions with the policy, or a run's models by name
    (serve/policies.py): /v1/explain with the default one, the OpenAI routes with any."""

    what = POLICY

    def __init__(
        self,
        policy: dict[str, Any],
        deployment: dict[str, Any],
        run_dir: str | None = None,
        strategy: str = "anchor",
        serve_base: bool = False,
    ) -> None:
        from anchor_service.serve.policies import policy_models

        dep = DeploymentConfig.model_validate(deployment)
        spec = ModelSpec.model_validate(policy)
        threads = replica_threads(dep, spec)
        start_threads(threads, "policy replica")
        self.continuous = _continuous(spec, dep)
        served = policy_models(
            _with_threads(spec, threads), run_dir, strategy, serve_base, self.continuous
        )
        self.models = served.engines
        self.engine = served.engines[served.default]
        self.info_dict = {
            "id": self.engine.model_id,
            "engine": spec.engine,
            "mode": None,
            "default": served.default,
            "models": served.cards,
        }
        self._generate_batch.set_max_batch_size(dep.max_batch_size)
        self._generate_batch.set_batch_wait_timeout_s(dep.batch_wait_timeout_s)
        self._ready(dep, self._explain_batch, threads)

    async def info(self) -> dict[str, Any]:
        """{id, engine, mode, default, models} of this policy (`models`: one card per name)."""
        return dict(self.info_dict)

    async def _complete_on(
        self, model: str, requests: list[GenRequest], params: SamplingParams
    ) -> list[dict[str, Any]]:
        # Batched with other callers' requests for the same model and settings.
        return await _concat(
            self._generate_batch((model, chunk, params))
            for chunk in _chunks(requests, self.max_batch_size)
        )

    @serve.batch(batch_size_fn=lambda calls: sum(len(r) for _, r, _ in calls))
    async def _generate_batch(
        self, calls: list[tuple[str, list[GenRequest], SamplingParams]]
    ) -> list[list[dict[str, Any]] | BaseException]:
        results: list[list[dict[str, Any]] | BaseException | None] = [None] * len(calls)
        groups: dict[tuple, list[int]] = {}
        for i, (model, _, params) in enumerate(calls):
            key = (model, _params_key(params), params.logprobs, repr(params.json_schema))
            groups.setdefault(key, []).append(i)
        for members in groups.values():
            model, _, params = calls[members[0]]
            flat = [r for i in members for r in calls[i][1]]
            try:
                done = await self._run(_generate_counted, self.models[model], flat, params)
            except Exception as exc:  # noqa: BLE001 - each caller gets its own outcome
                if len(members) == 1:
                    results[members[0]] = exc
                    continue
                log.warning("policy batch failed (%s); retrying one by one", exc)
                for i in members:
                    try:
                        results[i] = await self._run(
                            _generate_counted, self.models[model], calls[i][1], params
                        )
                    except Exception as one:  # noqa: BLE001
                        results[i] = one
                continue
            at = 0
            for i in members:
                results[i] = done[at : at + len(calls[i][1])]
                at += len(calls[i][1])
        return [r if r is not None else EngineError("no result") for r in results]

    async def explain(
        self, request: ExplainRequest, params: SamplingParams
    ) -> list[dict[str, Any]]:
        """{answer, explanation, text, finish_reason} per key of the request, in key order."""
        if self.continuous:
            (explained,) = await self._run(explain_batch, self.engine, [request], params)
            return [_completion_dict(c, p) for c, p in explained]
        keys = list(request.keys)
        return await _concat(
            self._explain_batch((ExplainRequest(request.question, request.options, ks), params))
            for ks in _chunks(keys, self.max_batch_size)
        )

    @serve.batch(batch_size_fn=lambda calls: sum(len(r.keys) for r, _ in calls))
    async def _explain_batch(
        self, calls: list[ExplainCall]
    ) -> list[list[dict[str, Any]] | BaseException]:
        results: list[list[dict[str, Any]] | BaseException | None] = [None] * len(calls)
        # One engine call per distinct decoding setting (the engine takes one per call).
        groups: dict[tuple, list[int]] = {}
        for i, (_, params) in enumerate(calls):
            groups.setdefault(_params_key(params), []).append(i)
        for members in groups.values():
            params = calls[members[0]][1]
            requests = [calls[i][0] for i in members]
            try:
                done = await self._run(explain_batch, self.engine, requests, params)
            except Exception as exc:  # noqa: BLE001 - each caller gets its own outcome
                if len(members) == 1:
                    results[members[0]] = exc
                    continue
                log.warning("policy batch failed (%s); retrying one by one", exc)
                for i in members:
                    try:
                        alone = await self._run(explain_batch, self.engine, [calls[i][0]], params)
                        results[i] = [_completion_dict(c, p) for c, p in alone[0]]
                    except Exception as one:  # noqa: BLE001
                        results[i] = one
                continue
            for i, explained in zip(members, done, strict=True):
                results[i] = [_completion_dict(c, p) for c, p in explained]
        return [r if r is not None else EngineError("no result") for r in results]


def _completion_dict(completion: Completion, parsed: Any) -> dict[str, Any]:
    return {
        "answer": parsed.answer,
        "explanation": parsed.explanation,
        "text": completion.text,
        "finish_reason": completion.finish_reason,
    }


def _prompt_tokens(engine: Engine, requests: list[GenRequest]) -> list[int]:
    count = getattr(engine, "prompt_tokens", None)
    return [count(r.prompt) if count else 0 for r in requests]


def _generate_counted(
    engine: Engine, requests: list[GenRequest], params: SamplingParams
) -> list[dict[str, Any]]:
    """Generate, and count the prompts' tokens in the same thread (a fast tokenizer is not
    safe to share across threads)."""
    done = engine.generate(requests, params)
    if len(done) != len(requests):
        raise EngineError(
            f"{engine.model_id}: {len(done)} completions for {len(requests)} requests"
        )
    counts = _prompt_tokens(engine, requests)
    return [_openai_dict(c, n) for c, n in zip(done, counts, strict=True)]


def _openai_dict(completion: Completion, prompt_tokens: int) -> dict[str, Any]:
    logprobs = None
    if completion.logprobs is not None:
        logprobs = [(t.token, t.logprob, dict(t.top)) for t in completion.logprobs]
    return {
        "text": completion.text,
        "finish_reason": completion.finish_reason,
        "completion_tokens": completion.num_tokens,
        "prompt_tokens": prompt_tokens,
        "logprobs": logprobs,
    }
