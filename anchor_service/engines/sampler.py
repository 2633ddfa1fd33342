"""Keyed Gumbel-max sampling: each draw depends only on the request's key and the step.

METHOD.md step 1: a sample's randomness comes from `(run_seed, prompt_id, sample_idx)`, so it
is the same alone, in any batch and in a resumed run. Gumbel-max makes that easy in any
engine: argmax(logits / T + G) is a draw from softmax(logits / T) when G is standard Gumbel
noise, and G is drawn here from a generator seeded with `key_seed(key, step)` per row, on the
CPU (so the noise is the same whatever device runs the model).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import LogitsProcessor

from anchor_service.core.keys import key_seed

# Keeps -log(-log(u)) finite: u in [TINY, 1 - TINY].
_TINY = 1e-10


def gumbel_noise(key: tuple, step: int, size: int) -> torch.Tensor:
    """Standard Gumbel noise of length `size` (float32, CPU), a function of (key, step) only."""
    gen = torch.Generator(device="cpu")
    gen.manual_seed(key_seed(key, step))
    u = torch.rand(size, generator=gen, dtype=torch.float32)
    u = u.clamp_(_TINY, 1.0 - _TINY)
    return -torch.log(-torch.log(u))


# Top-p looks at the most likely tokens first: a row whose nucleus lies within the top
# _NUCLEUS_K tokens (nearly always, for sampled text) needs no sort of the whole vocabulary.
_NUCLEUS_K = 256


def _top_p_keep_sorted(sorted_probs: torch.Tensor, top_p: float) -> torch.Tensor:
    # A token is dropped when the mass of the tokens ranked above it already reaches top_p;
    # the most likely token always stays.
    return (sorted_probs.cumsum(dim=-1) - sorted_probs) < top_p


def top_p_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Set to -inf every token outside the smallest set whose probability mass reaches top_p.

    Exact: rows whose top-`_NUCLEUS_K` tokens hold at least `top_p` of the mass are filtered
    from those tokens alone (a 49k-token sort of 64 rows cost ~0.25 s per decoding step on 2
    cores); the other rows take the full sort.
    """
    if top_p >= 1.0:
        return logits
    probs = logits.softmax(dim=-1)
    k = min(_NUCLEUS_K, logits.shape[-1])
    top_probs, top_idx = probs.topk(k, dim=-1)
    keep = torch.zeros_like(logits, dtype=torch.bool)
    keep.scatter_(-1, top_idx, _top_p_keep_sorted(top_probs, top_p))
    wide = top_probs.sum(dim=-1) < top_p
    if bool(wide.any()):
        rows = wide.nonzero(as_tuple=True)[0]
        sorted_probs, order = torch.sort(probs[rows], dim=-1, descending=True)
        keep[rows] = torch.zeros_like(order, dtype=torch.bool).scatter_(
            -1, order, _top_p_keep_sorted(sorted_probs, top_p)
        )
    return logits.masked_fill(~keep, float("-inf"))


def keyed_scores(
    logits: torch.Tensor,
    keys: Sequence[tuple],
    steps: Sequence[int] | int,
    temperature: float,
    top_p: float = 1.0,
) -> torch.Tensor:
    """Scores whose argmax per row is that row's keyed sample (temperature, top-p, Gumbel)."""
    if temperature <= 0:
        raise ValueError(f"keyed sampling needs temperature > 0 (got {temperature}); use argmax")
    if len(keys) != logits.shape[0]:
        raise ValueError(f"{len(keys)} keys for a batch of {logits.shape[0]} rows")
    step_list = [steps] * len(keys) if isinstance(steps, int) else list(steps)
    scaled = top_p_filter(logits.float() / temperature, top_p)
    noise = torch.stack(
        [gumbel_noise(k, s, scaled.shape[-1]) for k, s in zip(keys, step_list, strict=True)]
    )
    return scaled + noise.to(scaled.device)


def sample_keyed(
    logits: torch.Tensor,
    keys: Sequence[tuple],
    steps: Sequence[int] | int,
    temperature: float,
    top_p: float = 1.0,
) -> torch.Tensor:
    """One token id per row, greedy when temperature is 0, else the keyed Gumbel-max draw."""
    if temperature <= 0:
        return logits.argmax(dim=-1)
    return keyed_scores(logits, keys, steps, temperature, top_p).argmax(dim=-1)


class KeyedGumbelProcessor(LogitsProcessor):
    """A transformers LogitsProcessor for greedy `generate`: the argmax becomes the keyed draw.

    `prompt_width` is the (left-padded) prompt length, so the step of every row is the number
    of tokens generated so far, the same in a batch as alone.
    """

    def __init__(
        self, keys: Sequence[tuple], temperature: float, top_p: float, prompt_width: int
    ) -> None:
        if temperature <= 0:
            raise ValueError(f"KeyedGumbelProcessor needs temperature > 0 (got {temperature})")
        self.keys = [tuple(k) for k in keys]
        self.temperature = temperature
        self.top_p = top_p
        self.prompt_width = prompt_width

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        step = input_ids.shape[1] - self.prompt_width
        return keyed_scores(scores, self.keys, step, self.temperature, self.top_p)
