"""Keyed Gumbel-max sampling: each draw is a function of the request's key, the step and the token.

METHOD.md step 1: a sample's randomness comes from `(run_seed, prompt_id, sample_idx)`, so it
is the same alone, in any batch and in a resumed run. Gumbel-max makes that easy in any
engine: argmax(logits / T + G) is a draw from softmax(logits / T) when G is standard Gumbel
noise. Here G is counter-based: the uniform behind the noise of token t at step s of a row is
an integer hash of (key seed, s, t) (SplitMix64's mixer in int64 tensor ops), so it is made on
whatever device holds the logits, for the whole batch at once, and only for the tokens that
can be drawn (the top-p nucleus). The integer hash is exact on every device; the Gumbel
transform and the comparison run in float64 so that rounding cannot move the argmax. The
generator's name is `core.keys.NOISE_GENERATOR`, part of the sampling fingerprint.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import LogitsProcessor

from anchor_service.core.keys import key_seed


def _i64(c: int) -> int:
    """The int64 two's-complement image of a 64-bit constant (torch has no full uint64)."""
    return c - (1 << 64) if c >= 1 << 63 else c


_GOLDEN = _i64(0x9E3779B97F4A7C15)
_MIX1 = _i64(0xBF58476D1CE4E5B9)
_MIX2 = _i64(0x94D049BB133111EB)
_STEP_SALT = _i64(0x632BE59BD9B4E019)
_TWO_POW_M53 = 2.0**-53


def _xorshift_(z: torch.Tensor, k: int, tmp: torch.Tensor) -> None:
    """z ^= z >>> k, in place, through the scratch tensor `tmp` (no allocation per op)."""
    torch.bitwise_right_shift(z, k, out=tmp)
    tmp.bitwise_and_((1 << (64 - k)) - 1)
    z.bitwise_xor_(tmp)


def _mix64_(z: torch.Tensor) -> torch.Tensor:
    """SplitMix64's finaliser, in place: a bijection of 64-bit words with full avalanche.

    In place because the token-level tensors are batch x nucleus wide: fresh temporaries per
    op would cost more in allocation and page faults than the arithmetic does.
    """
    tmp = torch.empty_like(z)
    _xorshift_(z, 30, tmp)
    z.mul_(_MIX1)
    _xorshift_(z, 27, tmp)
    z.mul_(_MIX2)
    _xorshift_(z, 31, tmp)
    return z


def signed_seed(key: tuple) -> int:
    """The key's 64-bit seed as the int64 a tensor holds."""
    return _i64(key_seed(tuple(key)))


def seeds_tensor(keys: Sequence[tuple], device: torch.device | str = "cpu") -> torch.Tensor:
    """One int64 seed per key (computed once per request, not per step)."""
    return torch.tensor([signed_seed(k) for k in keys], dtype=torch.long, device=device)


def keyed_bits(seeds: torch.Tensor, steps: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """64 random bits per (row seed, row step, token index): int64 of shape [B, N].

    A pure function of its three inputs, so the same on every device, in any batch and for any
    vocabulary padding. `seeds` and `steps` are [B]; `tokens` is [B, N] or [N].
    """
    step_word = _mix64_(steps.to(torch.long) * _GOLDEN + _STEP_SALT)
    row = _mix64_(seeds ^ step_word)
    z = (tokens.to(torch.long) + 1).mul_(_GOLDEN)
    z = z.expand(row.shape[0], -1).clone() if z.dim() == 1 else z
    return _mix64_(z.add_(row.unsqueeze(-1)))


def keyed_uniforms(seeds: torch.Tensor, steps: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Uniforms in the open interval (0, 1), float64, from the top 53 of `keyed_bits`."""
    bits = keyed_bits(seeds, steps, tokens)
    bits.bitwise_right_shift_(11).bitwise_and_((1 << 53) - 1)
    return bits.to(torch.float64).add_(0.5).mul_(_TWO_POW_M53)


def keyed_gumbel(seeds: torch.Tensor, steps: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Standard Gumbel noise, float64, one value per (row, token index)."""
    return keyed_uniforms(seeds, steps, tokens).log_().neg_().log_().neg_()


# Top-p looks at the most likely tokens first: a row whose nucleus lies within the top
# _NUCLEUS_K tokens (nearly always, for sampled text) needs no sort of the whole vocabulary.
_NUCLEUS_K = 256


def _top_p_keep_sorted(sorted_probs: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    # A token is dropped when the mass of the tokens ranked above it already reaches top_p;
    # the most likely token always stays.
    return (sorted_probs.cumsum(dim=-1) - sorted_probs) < top_p


def _as_rows(value: float | Sequence[float] | torch.Tensor, n: int, device) -> torch.Tensor:
    """A per-row float32 column [n, 1] from a scalar or one value per row."""
    t = torch.as_tensor(value, dtype=torch.float32, device=device)
    return t.expand(n).reshape(n, 1) if t.dim() == 0 else t.reshape(n, 1)


def nucleus(
    logits: torch.Tensor, top_p: float | Sequence[float] | torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's top-p nucleus as (token ids [B, N], kept mask [B, N]), most likely first.

    Exact: the smallest set of most likely tokens whose probability mass reaches top_p (per
    row). Rows whose top-`_NUCLEUS_K` tokens hold the mass are read from those tokens alone;
    the others take a full sort. N is the widest row's need, never the whole vocabulary
    unless some row needs it. `top_p >= 1` everywhere gives every token, unsorted.
    """
    b, v = logits.shape
    p = _as_rows(top_p, b, logits.device)
    if bool((p >= 1.0).all()):
        ids = torch.arange(v, device=logits.device).expand(b, v)
        return ids, torch.ones((b, v), dtype=torch.bool, device=logits.device)
    probs = logits.softmax(dim=-1)
    k = min(_NUCLEUS_K, v)
    top_probs, top_idx = probs.topk(k, dim=-1)
    keep = _top_p_keep_sorted(top_probs, p)
    wide = (top_probs.sum(dim=-1, keepdim=True) < p).squeeze(-1) & (k < v)
    if not bool(wide.any()):
        return top_idx, keep
    rows = wide.nonzero(as_tuple=True)[0]
    sorted_probs, order = torch.sort(probs[rows], dim=-1, descending=True)
    wide_keep = _top_p_keep_sorted(sorted_probs, p[rows])
    width = max(int(wide_keep.sum(dim=-1).max()), k)
    ids = torch.zeros((b, width), dtype=torch.long, device=logits.device)
    mask = torch.zeros((b, width), dtype=torch.bool, device=logits.device)
    narrow = (~wide).nonzero(as_tuple=True)[0]
    ids[narrow, :k] = top_idx[narrow]
    mask[narrow, :k] = keep[narrow]
    ids[rows] = order[:, :width]
    mask[rows] = wide_keep[:, :width]
    return ids, mask


def top_p_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Set to -inf every token outside the smallest set whose probability mass reaches top_p."""
    if top_p >= 1.0:
        return logits
    ids, mask = nucleus(logits, top_p)
    keep = torch.zeros_like(logits, dtype=torch.bool)
    keep.scatter_(-1, ids, mask)
    return logits.masked_fill(~keep, float("-inf"))


def keyed_draw(
    logits: torch.Tensor,
    seeds: torch.Tensor,
    steps: torch.Tensor | int,
    temperature: float | Sequence[float] | torch.Tensor,
    top_p: float | Sequence[float] | torch.Tensor = 1.0,
) -> torch.Tensor:
    """Each row's keyed sample (token id, int64 [B]): Gumbel-max over its tempered nucleus.

    Temperature and top-p may differ per row; every row must have temperature > 0.
    """
    b = logits.shape[0]
    device = logits.device
    t = _as_rows(temperature, b, device)
    if bool((t <= 0).any()):
        raise ValueError("keyed sampling needs temperature > 0; use argmax for greedy rows")
    if seeds.shape[0] != b:
        raise ValueError(f"{seeds.shape[0]} keys for a batch of {b} rows")
    seeds = seeds.to(device)
    steps_t = torch.as_tensor(steps, dtype=torch.long, device=device).expand(b)
    scaled = logits.float() / t
    ids, mask = nucleus(scaled, top_p)
    score = keyed_gumbel(seeds, steps_t, ids).add_(scaled.gather(-1, ids))
    score = score.masked_fill_(~mask, float("-inf"))
    return ids.gather(-1, score.argmax(dim=-1, keepdim=True)).squeeze(-1)


def one_hot_scores(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Scores whose argmax is `tokens` (0 there, -inf elsewhere), in `logits`' dtype and device."""
    out = torch.full_like(logits, float("-inf"))
    return out.scatter_(-1, tokens.unsqueeze(-1).to(logits.device), 0.0)


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
    if len(keys) != logits.shape[0]:
        raise ValueError(f"{len(keys)} keys for a batch of {logits.shape[0]} rows")
    steps_t = torch.as_tensor(steps, dtype=torch.long)
    return keyed_draw(logits, seeds_tensor(keys), steps_t, temperature, top_p)


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
        self.seeds = seeds_tensor(keys)
        self.temperature = temperature
        self.top_p = top_p
        self.prompt_width = prompt_width

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.seeds.device != scores.device:
            self.seeds = self.seeds.to(scores.device)
        step = input_ids.shape[1] - self.prompt_width
        tokens = keyed_draw(scores, self.seeds, step, self.temperature, self.top_p)
        return one_hot_scores(scores, tokens)
