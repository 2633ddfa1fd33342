"""The transformers engine: batched generation with keyed sampling, and judge probabilities.

Imports only torch, transformers and the package's core and engines.base (no Ray, no
pydantic): it also runs on machines where Ray is not installed. Generation is batched with
left padding; a sampled token depends only on the request's key and the step
(engines/sampler.py), so a sample is the same alone or in any batch. `choice_probs` runs the prefix shared by every query of a batch (the judge's rubric)
once, then each query's own prefix once, and reuses the KV cache for every slot. `SamplingParams.json_schema` constrains decoding to the canonical JSON of
an enum-valued object schema (engines/json_constraint.py), row by row, so that too is
batch-independent.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GenerationConfig,
    LogitsProcessorList,
)

from anchor_service.engines.base import (
    ChoiceQuery,
    Completion,
    EngineError,
    GenRequest,
    SamplingParams,
    TokenLogprob,
)
from anchor_service.engines.json_constraint import (
    JsonSchemaProcessor,
    TokenConstraint,
    build_constraint,
    token_texts,
)
from anchor_service.engines.registry import ModelNotFoundError, resolve_model
from anchor_service.engines.sampler import KeyedGumbelProcessor
from anchor_service.engines.tokens import TokenizedPrompts, cut_judge_prompts

if TYPE_CHECKING:  # config needs pydantic, which a GPU machine running only this may lack
    from anchor_service.config import ModelSpec

log = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# CPU feature flags (Linux /proc/cpuinfo) that mean bf16 matmuls run natively, not emulated.
_BF16_CPU_FLAGS = {"avx512_bf16", "amx_bf16", "bf16"}


def cpu_has_native_bf16() -> bool:
    """True when the CPU advertises native bf16 (AVX512-BF16, AMX, or Arm BF16)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:  # not Linux: be conservative, fp32 is always correct
        return False
    flags: set[str] = set()
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name.strip() in ("flags", "Features"):
            flags.update(value.split())
    return bool(flags & _BF16_CPU_FLAGS)


def resolve_device(device: str) -> str:
    """`auto` -> cuda when available, else cpu; `cuda` without a GPU is an error."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise EngineError("model.device is 'cuda' but torch sees no GPU; use 'auto' or 'cpu'")
    return device


def resolve_dtype(dtype: str, device: str) -> torch.dtype:
    """`auto` -> bf16 on CUDA and on CPUs with native bf16, else fp32; others by name.

    An explicit bf16 on a CPU without native bf16 is honoured (a run's dtype is part of what
    it computes) but warned about: torch then emulates bf16 matmuls, which is slower than
    fp32 by an order of magnitude or more (bench/RESULTS.md), so a run meant for any CPU
    should say `auto`.
    """
    if dtype != "auto":
        if dtype == "bfloat16" and device == "cpu" and not cpu_has_native_bf16():
            log.warning(
                "dtype bfloat16 on a CPU without native bf16 (no avx512_bf16/amx_bf16 flag): "
                "torch emulates it, many times slower than float32; set the model's dtype to "
                "'auto' (fp32 here) unless bf16 results are the point"
            )
        return _DTYPES[dtype]
    if device == "cuda" or (device == "cpu" and cpu_has_native_bf16()):
        return torch.bfloat16
    return torch.float32


def _batches(items: Sequence[int], size: int) -> list[list[int]]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


class HFEngine(TokenizedPrompts):
    """transformers backend of the Engine protocol (CPU or GPU), built from a ModelSpec."""

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self.model_id = spec.name if not spec.adapter else f"{spec.name}+{spec.adapter}"
        self.device = resolve_device(spec.device)
        self.dtype = resolve_dtype(spec.dtype, self.device)
        path = resolve_model(spec.name)
        started = time.perf_counter()
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=self.dtype)
        if spec.adapter:
            model = self._apply_adapter(model, spec.adapter)
        self.model = model.to(self.device).eval()
        self.pad_id = self._pad_id()
        self.eos_ids = self._eos_ids()
        # Named, unmerged PEFT adapters (`with_adapters`): the view's adapter, None = without.
        self._adapter: str | None = None
        self._adapter_lock: threading.Lock | None = None
        # Built on the first constrained request: the vocabulary's texts, then per schema.
        self._token_texts: list[str | None] | None = None
        self._constraints: dict[str, TokenConstraint] = {}
        # Only SamplingParams decide decoding: a checkpoint's own generation defaults
        # (repetition penalty, top-k, ...) would otherwise be merged into every call.
        self.model.generation_config = GenerationConfig(
            bos_token_id=self.model.generation_config.bos_token_id,
            eos_token_id=self.eos_ids or None,
            pad_token_id=self.pad_id,
        )
        log.info(
            "loaded %s from %s on %s (%s) in %.1fs",
            self.model_id,
            path,
            self.device,
            self.dtype,
            time.perf_counter() - started,
        )

    # --- set-up ---------------------------------------------------------------------------

    def _apply_adapter(self, model: torch.nn.Module, adapter: str) -> torch.nn.Module:
        adapter_dir = Path(adapter).expanduser()
        if not (adapter_dir / "adapter_config.json").is_file():
            raise ModelNotFoundError(
                f"adapter '{adapter}' for {self.spec.name}: no adapter_config.json in "
                f"{adapter_dir}; point model.adapter at a PEFT adapter directory (or unset it)"
            )
        from peft import PeftModel  # only needed with an adapter

        # Merged for inference: one matmul per layer instead of base + LoRA.
        return PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()

    def with_adapters(self, adapters: dict[str, str]) -> dict[str | None, HFEngine]:
        """Views of this engine: one per named PEFT adapter directory, and None without any.

        The adapters are loaded once, unmerged, on this engine's one model (PEFT named
        adapters), so serving several DPO'd policies of one SFT model costs their LoRA weights
        only; each call sets its view's adapter (or disables them) under a lock shared by the
        views. Unmerged LoRA computes base + B(A(x)) instead of the merged matmul, so a logit
        may differ from a merged adapter's (`model.adapter`) in its last float bits.
        """
        if self.spec.adapter:
            raise EngineError(
                f"{self.model_id}: already has a merged adapter; named adapters need the plain "
                "base model (unset model.adapter)"
            )
        if not adapters:
            return {None: self}
        from peft import PeftModel

        model: torch.nn.Module = self.model
        for i, (name, path) in enumerate(adapters.items()):
            adapter_dir = Path(path).expanduser()
            if not (adapter_dir / "adapter_config.json").is_file():
                raise ModelNotFoundError(
                    f"adapter '{name}' for {self.spec.name}: no adapter_config.json in "
                    f"{adapter_dir}; point it at a PEFT adapter directory"
                )
            if i == 0:
                model = PeftModel.from_pretrained(model, str(adapter_dir), adapter_name=name)
            else:
                model.load_adapter(str(adapter_dir), adapter_name=name)  # type: ignore[operator]
        self.model = model.to(self.device).eval()
        self._adapter_lock = threading.Lock()
        views: dict[str | None, HFEngine] = {None: self}
        for name, path in adapters.items():
            view = copy.copy(self)
            view._adapter = name
            view.model_id = f"{self.spec.name}+{path}"
            views[name] = view
        return views

    @contextmanager
    def _active_adapter(self) -> Iterator[None]:
        """This view's adapter is the model's active one for the block (no-op without any)."""
        if self._adapter_lock is None:
            yield
            return
        with self._adapter_lock:
            model = self.model
            if self._adapter is None:
                with model.disable_adapter():  # type: ignore[operator]
                    yield
            else:
                model.set_adapter(self._adapter)  # type: ignore[operator]
                yield

    def _pad_id(self) -> int:
        tok = self.tokenizer
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        if pad is None:
            raise EngineError(
                f"{self.model_id}: the tokenizer has neither a pad nor an eos token; "
                "set one in its tokenizer_config.json"
            )
        return int(pad)

    def _eos_ids(self) -> list[int]:
        ids: set[int] = set()
        for source in (self.model.generation_config.eos_token_id, self.tokenizer.eos_token_id):
            if isinstance(source, int):
                ids.add(source)
            elif source is not None:
                ids.update(int(i) for i in source)
        return sorted(ids)

    # --- generation -----------------------------------------------------------------------

    @torch.inference_mode()
    def generate(self, requests: list[GenRequest], params: SamplingParams) -> list[Completion]:
        """One completion per request, in request order; sampled tokens keyed by request.key."""
        if not requests:
            return []
        if params.json_schema is not None:
            self._json_constraint(params.json_schema)  # an unsupported schema fails before work
        max_new = max(1, min(params.max_tokens, self.spec.max_model_len - 1))
        keep = self.spec.max_model_len - max_new
        prompts = [
            self._cut_left(self._encode(self.render(r.prompt)), keep, "prompt") for r in requests
        ]
        # Similar lengths together: less padding. Results do not depend on the grouping.
        order = sorted(range(len(requests)), key=lambda i: len(prompts[i]))
        results: list[Completion | None] = [None] * len(requests)
        with self._active_adapter():
            for chunk in _batches(order, self.spec.batch_size):
                done = self._generate_batch(
                    [prompts[i] for i in chunk],
                    [tuple(requests[i].key) for i in chunk],
                    params,
                    max_new,
                )
                for i, completion in zip(chunk, done, strict=True):
                    results[i] = completion
        return [c for c in results if c is not None]

    def _generate_batch(
        self,
        prompts: list[list[int]],
        keys: list[tuple],
        params: SamplingParams,
        max_new: int,
    ) -> list[Completion]:
        width = max(len(p) for p in prompts)
        input_ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, ids in enumerate(prompts):
            input_ids[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
            mask[row, width - len(ids) :] = 1
        config = GenerationConfig(
            max_new_tokens=max_new,
            do_sample=False,  # sampling happens in the keyed processor; argmax picks its draw
            pad_token_id=self.pad_id,
            eos_token_id=self.eos_ids or None,
            stop_strings=list(params.stop) or None,
        )
        processors = LogitsProcessorList()
        if params.json_schema is not None:
            # Before the keyed sampler: temperature and top-p then see only allowed tokens.
            constraint = self._json_constraint(params.json_schema)
            processors.append(JsonSchemaProcessor(constraint, len(prompts), prompt_width=width))
        if params.temperature > 0:
            processors.append(
                KeyedGumbelProcessor(keys, params.temperature, params.top_p, prompt_width=width)
            )
        with_logprobs = params.logprobs is not None
        # The raw logits of each step, before temperature, top-p and the keyed draw.
        config.output_logits = with_logprobs
        config.return_dict_in_generate = with_logprobs
        out = self.model.generate(
            input_ids=input_ids.to(self.device),
            attention_mask=mask.to(self.device),
            generation_config=config,
            logits_processor=processors,
            tokenizer=self.tokenizer if params.stop else None,
        )
        sequences = out.sequences if with_logprobs else out
        generated = sequences[:, width:].tolist()
        done = [
            self._completion(row_ids, key, params.stop, max_new)
            for row_ids, key in zip(generated, keys, strict=True)
        ]
        if with_logprobs:
            self._attach_logprobs(done, generated, out.logits, int(params.logprobs or 0))
        return done

    def _attach_logprobs(
        self,
        done: list[Completion],
        generated: list[list[int]],
        step_logits: tuple[torch.Tensor, ...],
        top_n: int,
    ) -> None:
        """Each completion's tokens (those of its text), their logprobs and the top `top_n`."""
        counts = [self._text_token_count(ids, c) for ids, c in zip(generated, done, strict=True)]
        for c in done:
            c.logprobs = []
        for step, logits in enumerate(step_logits):
            rows = [r for r, n in enumerate(counts) if step < n]
            if not rows:
                break
            logp = logits[rows].float().log_softmax(dim=-1)
            chosen = torch.tensor([generated[r][step] for r in rows], device=logp.device)
            chosen_lp = logp.gather(1, chosen[:, None])[:, 0].tolist()
            top_lp, top_ids = logp.topk(top_n, dim=-1) if top_n else (None, None)
            for j, r in enumerate(rows):
                top: dict[str, float] = {}
                if top_ids is not None and top_lp is not None:
                    for tid, lp in zip(top_ids[j].tolist(), top_lp[j].tolist(), strict=True):
                        text = self.tokenizer.decode([tid])
                        top[text] = max(lp, top.get(text, float("-inf")))
                token = self.tokenizer.decode([generated[r][step]])
                done[r].logprobs.append(TokenLogprob(token, chosen_lp[j], top))  # type: ignore[union-attr]

    def _text_token_count(self, ids: list[int], completion: Completion) -> int:
        """How many leading generated tokens make up the completion's text (a stop string
        or end of sequence cut it; the token that ends it is not part of it)."""
        eos = set(self.eos_ids)
        count = 0
        for token in ids:
            if token in eos or token == self.pad_id:
                break
            count += 1
        while count and len(self.tokenizer.decode(ids[:count], skip_special_tokens=True)) > len(
            completion.text
        ):
            count -= 1
        return count

    def _json_constraint(self, schema: dict) -> TokenConstraint:
        """The token constraint of `schema` for this tokenizer (UnsupportedSchemaError if the
        schema is not an object of enum-valued string properties)."""
        cache_key = repr(schema)  # property order matters: it is the written order
        constraint = self._constraints.get(cache_key)
        if constraint is None:
            if self._token_texts is None:
                self._token_texts = token_texts(self.tokenizer)
            constraint = build_constraint(schema, self._token_texts, self.eos_ids or [self.pad_id])
            self._constraints[cache_key] = constraint
        return constraint

    def _completion(self, ids: list[int], key: tuple, stop: list[str], max_new: int) -> Completion:
        """Cut a row at its end of sequence or first stop string; say why it ended."""
        eos = set(self.eos_ids)
        finish, n_tokens, n_text = "length", len(ids), len(ids)
        for pos, token in enumerate(ids):
            if token in eos:  # counted as generated, never part of the text
                finish, n_tokens, n_text = "stop", pos + 1, pos
                break
            if token == self.pad_id:  # padding after a stop string ended this row
                finish, n_tokens, n_text = "stop", pos, pos
                break
        text = self.tokenizer.decode(ids[:n_text], skip_special_tokens=True)
        cuts = [text.find(s) for s in stop if s and s in text]
        if cuts:
            text, finish = text[: min(cuts)], "stop"
        elif finish == "length" and n_tokens < max_new:
            finish = "stop"  # a stop string ended the whole batch on this row's last token
        return Completion(text=text, key=key, num_tokens=n_tokens, finish_reason=finish)

    # --- judge probabilities --------------------------------------------------------------

    def check_single_tokens(self, tokens: list[str]) -> None:
        """Raise EngineError naming every token that does not encode to exactly one token id."""
        self._single_token_ids(tokens)

    def _choice_inputs(self, query: ChoiceQuery) -> tuple[list[int], list[list[int]]]:
        """The token prefix shared by every slot's full sequence, and each slot's remainder."""
        if not query.slots:
            return [], []
        prefix = self.render(query.prefix)
        # Tokenise prefix + slot whole (as a plain forward pass would): a merge across the
        # boundary then stays exactly as the naive computation sees it.
        full = [self._encode(prefix + slot) for slot in query.slots]
        limit = self.spec.max_model_len
        full = cut_judge_prompts(full, limit, self.model_id, self.spec.max_model_len)
        shared = 0
        limit = min(len(f) for f in full) - 1  # every slot keeps >= 1 token to read logits at
        while shared < limit and all(f[shared] == full[0][shared] for f in full):
            shared += 1
        return full[0][:shared], [f[shared:] for f in full]

    @torch.inference_mode()
    def choice_probs(
        self, queries: list[ChoiceQuery], tokens: list[str]
    ) -> list[list[dict[str, float]]]:
        """Per query, per slot: {token: next-token probability} (full-vocab softmax)."""
        token_ids = self._single_token_ids(tokens)
        prepared = [self._choice_inputs(q) for q in queries]
        results: list[list[dict[str, float]]] = [[] for _ in queries]
        order = sorted(
            (i for i in range(len(queries)) if prepared[i][1]), key=lambda i: len(prepared[i][0])
        )
        with self._active_adapter():
            for chunk in _batches(order, self.spec.batch_size):
                probs = self._choice_batch([prepared[i] for i in chunk], token_ids)
                for i, per_slot in zip(chunk, probs, strict=True):
                    results[i] = [{t: float(p[j]) for j, t in enumerate(tokens)} for p in per_slot]
        return results

    def _choice_batch(
        self, prepared: list[tuple[list[int], list[list[int]]]], token_ids: list[int]
    ) -> list[list[list[float]]]:
        """Up to three forwards: the prefix every query of the batch shares (the rubric,
        once, batch 1), each query's own prefix (left-padded), then all slot remainders."""
        common = _common_length([shared for shared, _ in prepared])
        if len(prepared) < 2 or common < MIN_COMMON_PREFIX:
            common = 0
        cache, mask = None, torch.zeros((len(prepared), 0), dtype=torch.long)
        if common:
            ids = torch.tensor([prepared[0][0][:common]], dtype=torch.long)
            one = torch.ones_like(ids)
            cache = self._forward(ids, one, torch.arange(common)[None], None).past_key_values
            cache.batch_select_indices(torch.zeros(len(prepared), dtype=torch.long).to(self.device))
            mask = torch.ones((len(prepared), common), dtype=torch.long)
        own = [shared[common:] for shared, _ in prepared]
        if any(own):
            ids, own_mask, pos = _left_padded(own, self.pad_id, [common] * len(own))
            mask = torch.cat([mask, own_mask], dim=-1)
            cache = self._forward(ids, mask, pos, cache).past_key_values
        # Slot rows: each query's cache repeated once per slot; remainders left-padded so
        # that every row's last real token sits in the last column.
        owner = [q for q, (_, rests) in enumerate(prepared) for _ in rests]
        rests = [r for _, rs in prepared for r in rs]
        starts = [len(prepared[q][0]) for q in owner]
        ids, rest_mask, pos = _left_padded(rests, self.pad_id, starts)
        index = torch.tensor(owner, dtype=torch.long)
        if cache is not None:
            cache.batch_select_indices(index.to(self.device))
        out = self._forward(ids, torch.cat([mask[index], rest_mask], dim=-1), pos, cache)
        probs = out.logits[:, -1, :].float().softmax(dim=-1)[:, token_ids].cpu().tolist()
        grouped: list[list[list[float]]] = [[] for _ in prepared]
        for q, p in zip(owner, probs, strict=True):
            grouped[q].append(p)
        return grouped

    def _forward(
        self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, cache: object
    ) -> object:
        """One forward that keeps only the last column's logits (the only ones read)."""
        dev = self.device
        return self.model(
            input_ids=ids.to(dev),
            attention_mask=mask.to(dev),
            position_ids=positions.to(dev),
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        )


# Below this many tokens a batch-wide shared prefix is not worth its own forward.
MIN_COMMON_PREFIX = 16


def _common_length(seqs: list[list[int]]) -> int:
    """Length of the longest prefix every sequence shares."""
    if not seqs:
        return 0
    n = min(len(s) for s in seqs)
    first = seqs[0]
    for i in range(n):
        token = first[i]
        if any(s[i] != token for s in seqs):
            return i
    return n


def _left_padded(
    seqs: list[list[int]], pad_id: int, starts: list[int]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(ids, mask, positions) of left-padded rows; row i's tokens sit at positions from
    starts[i] on, so a row continues exactly where its cached prefix ended."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    positions = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, (seq, start) in enumerate(zip(seqs, starts, strict=True)):
        if seq:
            ids[row, width - len(seq) :] = torch.tensor(seq)
            mask[row, width - len(seq) :] = 1
            positions[row, width - len(seq) :] = torch.arange(len(seq)) + start
    return ids, mask, positions
