"""The counter-based keyed noise: exact integer bits, draws that follow the key alone.

METHOD.md step 1 and docs/DESIGN.md "Keyed noise": the uniform behind token t's noise at step s
is a hash of (key seed, s, t). These tests pin the hash against a plain-Python SplitMix64,
check that a row's bits and draw are the same alone, in any batch, for any subset of token
indices and any vocabulary padding, on the CPU and (when present) on CUDA, and that the draws
still follow the tempered, top-p-filtered softmax.
"""

from __future__ import annotations

import math

import pytest
import torch

from anchor_service.engines import sampler
from anchor_service.engines.sampler import (
    keyed_bits,
    keyed_draw,
    keyed_gumbel,
    keyed_uniforms,
    nucleus,
    sample_keyed,
    seeds_tensor,
    signed_seed,
)

M64 = (1 << 64) - 1


def _mix64_ref(z: int) -> int:
    z ^= z >> 30
    z = (z * 0xBF58476D1CE4E5B9) & M64
    z ^= z >> 27
    z = (z * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def _bits_ref(seed: int, step: int, token: int) -> int:
    """The documented hash in unsigned 64-bit Python integers."""
    seed &= M64
    row = _mix64_ref(seed ^ _mix64_ref((step * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) & M64))
    return _mix64_ref((row + (token + 1) * 0x9E3779B97F4A7C15) & M64)


def _unsigned(t: torch.Tensor) -> list[int]:
    return [v & M64 for v in t.flatten().tolist()]


def test_bits_equal_a_plain_python_splitmix64():
    keys = [(0, "demo/train/0", 0), (7, "p", 3), (2**40, "x" * 50, 11)]
    seeds = seeds_tensor(keys)
    steps = torch.tensor([0, 5, 127])
    tokens = torch.tensor([0, 1, 2, 49151, 151935, 2**31 - 1])
    bits = keyed_bits(seeds, steps, tokens)
    for r, key in enumerate(keys):
        expected = [_bits_ref(signed_seed(key), int(steps[r]), int(t)) for t in tokens]
        assert _unsigned(bits[r]) == expected
    # Negative seeds (top bit set) are where an arithmetic shift would go wrong.
    assert any(signed_seed(k) < 0 for k in [(i,) for i in range(8)])


def test_a_rows_bits_are_the_same_alone_in_a_batch_and_for_any_token_subset():
    keys = [(1, f"p{i}", i % 3) for i in range(9)]
    seeds, steps = seeds_tensor(keys), torch.arange(9) * 7
    full = keyed_bits(seeds, steps, torch.arange(1000))
    for r in (0, 4, 8):
        alone = keyed_bits(seeds[r : r + 1], steps[r : r + 1], torch.arange(1000))
        assert torch.equal(alone[0], full[r])
        subset = torch.tensor([[999, 3, 500, 3]])
        picked = keyed_bits(seeds[r : r + 1], steps[r : r + 1], subset)
        assert torch.equal(picked[0], full[r, subset[0]])


def test_uniforms_lie_in_the_open_interval_and_look_uniform():
    u = keyed_uniforms(seeds_tensor([(3, "u", 0)]), torch.tensor([0]), torch.arange(200_000))
    assert u.dtype == torch.float64
    assert float(u.min()) > 0.0 and float(u.max()) < 1.0
    assert abs(float(u.mean()) - 0.5) < 0.005  # sd of the mean: 0.00065
    hist = torch.histc(u.float(), bins=10, min=0, max=1)
    assert float(hist.min()) > 19_000 and float(hist.max()) < 21_000
    g = keyed_gumbel(seeds_tensor([(3, "u", 0)]), torch.tensor([1]), torch.arange(200_000))
    assert abs(float(g.mean()) - 0.5772156649) < 0.01  # Euler-Mascheroni; sd 0.0029


def test_noise_depends_on_key_step_and_token():
    tokens = torch.arange(64)
    a = keyed_bits(seeds_tensor([(1, "p", 0)]), torch.tensor([3]), tokens)
    assert torch.equal(a, keyed_bits(seeds_tensor([(1, "p", 0)]), torch.tensor([3]), tokens))
    assert not torch.equal(a, keyed_bits(seeds_tensor([(1, "p", 0)]), torch.tensor([4]), tokens))
    assert not torch.equal(a, keyed_bits(seeds_tensor([(1, "p", 1)]), torch.tensor([3]), tokens))
    assert len(set(_unsigned(a))) == 64


def _logits(rows: int, vocab: int, seed: int, scale: float) -> torch.Tensor:
    return torch.randn(rows, vocab, generator=torch.Generator().manual_seed(seed)) * scale


@pytest.mark.parametrize("scale", [0.05, 3.0], ids=["near-uniform", "peaked"])
@pytest.mark.parametrize("top_p", [1.0, 0.9])
def test_a_draw_is_the_same_alone_in_any_batch_and_for_any_padding(scale, top_p):
    logits = _logits(12, 3000, 0, scale)
    keys = [(5, f"q{i}", 0) for i in range(12)]
    batch = sample_keyed(logits, keys, 4, 0.8, top_p)
    for r in range(12):
        alone = sample_keyed(logits[r : r + 1], [keys[r]], 4, 0.8, top_p)
        assert int(alone[0]) == int(batch[r])
    # vLLM and HF pad vocabularies to a multiple of 64 or 128 with -inf or very low logits.
    for pad_value in (float("-inf"), -1e4):
        padded = torch.cat([logits, torch.full((12, 125), pad_value)], dim=-1)
        assert torch.equal(sample_keyed(padded, keys, 4, 0.8, top_p), batch)
    shuffled = torch.randperm(12, generator=torch.Generator().manual_seed(1))
    again = sample_keyed(logits[shuffled], [keys[i] for i in shuffled], 4, 0.8, top_p)
    assert torch.equal(again, batch[shuffled])


def test_the_full_sort_path_draws_what_the_top_k_path_draws(monkeypatch):
    logits = _logits(16, 2000, 2, 2.0)
    keys = [(9, "w", i) for i in range(16)]
    fast = sample_keyed(logits, keys, 0, 1.0, 0.95)
    monkeypatch.setattr(sampler, "_NUCLEUS_K", 3)  # every row now needs the full sort
    slow = sample_keyed(logits, keys, 0, 1.0, 0.95)
    assert torch.equal(fast, slow)


def test_per_row_settings_in_one_call_equal_separate_calls():
    logits = _logits(4, 500, 3, 1.5)
    keys = [(0, "r", i) for i in range(4)]
    temps, tops = [0.5, 1.0, 1.3, 0.7], [1.0, 0.9, 0.5, 0.99]
    one_call = keyed_draw(logits, seeds_tensor(keys), torch.tensor([0, 1, 2, 3]), temps, tops)
    for r in range(4):
        alone = sample_keyed(logits[r : r + 1], [keys[r]], r, temps[r], tops[r])
        assert int(alone[0]) == int(one_call[r])


def test_nucleus_is_the_smallest_set_reaching_the_mass():
    probs = torch.tensor([[0.05, 0.5, 0.15, 0.3]])
    ids, mask = nucleus(probs.log(), 0.75)
    assert sorted(ids[mask].tolist()) == [1, 3]
    ids, mask = nucleus(probs.log(), 0.81)
    assert sorted(ids[mask].tolist()) == [1, 2, 3]


@pytest.mark.parametrize("top_p", [1.0, 0.8])
def test_keyed_draws_follow_the_tempered_top_p_softmax(top_p):
    logits = torch.tensor([2.0, 1.0, 0.0, -1.0, -1.5])
    temperature = 0.9
    n = 6000
    keys = [(0, "f", i) for i in range(n)]
    draws = sample_keyed(logits.expand(n, -1), keys, 0, temperature, top_p)
    probs = (logits / temperature).softmax(-1)
    ranked = probs.sort(descending=True)
    keep = (ranked.values.cumsum(-1) - ranked.values) < top_p
    expected = torch.zeros_like(probs)
    expected[ranked.indices[keep]] = probs[ranked.indices[keep]]
    expected /= expected.sum()
    freq = torch.bincount(draws, minlength=5).double() / n
    # Pearson chi-square over the kept tokens; 5 cells: 99.9% quantile at 4 dof is 18.5.
    kept = expected > 0
    chi2 = float((((freq - expected) ** 2 / expected)[kept]).sum() * n)
    assert chi2 < 18.5, (freq, expected)
    assert float(freq[~kept].sum()) == 0.0


def test_greedy_and_bad_settings():
    logits = _logits(2, 50, 4, 1.0)
    assert torch.equal(sample_keyed(logits, [(0,), (1,)], 0, 0.0), logits.argmax(-1))
    with pytest.raises(ValueError, match="temperature"):
        keyed_draw(logits, seeds_tensor([(0,), (1,)]), 0, [0.5, 0.0])
    with pytest.raises(ValueError, match="2 keys"):
        sample_keyed(logits[:1], [(0,), (1,)], 0, 1.0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_bits_and_draws_are_identical_on_cuda():
    seeds = seeds_tensor([(1, "c", i) for i in range(64)])
    steps = torch.arange(64)
    tokens = torch.arange(152_064)
    cpu = keyed_bits(seeds, steps, tokens)
    gpu = keyed_bits(seeds.cuda(), steps.cuda(), tokens.cuda())
    assert torch.equal(cpu, gpu.cpu())
    logits = _logits(64, 152_064, 5, 2.0)
    for top_p in (1.0, 0.95):
        a = keyed_draw(logits, seeds, steps, 0.8, top_p)
        b = keyed_draw(logits.cuda(), seeds.cuda(), steps.cuda(), 0.8, top_p)
        assert torch.equal(a, b.cpu())
    assert math.isfinite(float(keyed_gumbel(seeds, steps, tokens[:10]).sum()))
