"""Randomness keyed by what a draw is for, never by call order (METHOD.md step 1).

The same key gives the same stream in every engine, batch and resumed run.
"""

from __future__ import annotations

import hashlib
import random

# The engines' keyed noise (engines/sampler.py): uniform bits as a SplitMix64 hash of (key seed,
# step, token index). Part of the sampling fingerprint, so that a run directory sampled with
# another generator re-samples instead of mixing two noise streams.
NOISE_GENERATOR = "splitmix64-token-v2"


def key_seed(key: tuple, step: int | None = None) -> int:
    """A 64-bit seed from a key such as (run_seed, prompt_id, sample_idx), optionally a step."""
    text = repr(tuple(key)) if step is None else repr((tuple(key), step))
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")


def keyed_rng(key: tuple) -> random.Random:
    """A `random.Random` seeded from a key (for choices in the pure core, e.g. `rank`)."""
    return random.Random(key_seed(key))
