"""Random streams keyed by (seed, group index).

Every random draw in uqdiff comes from a generator built from the user's seed
and the index of the group it belongs to, so a group's noise never depends on
how a run is batched, sharded or resumed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

SeedLike = int | Sequence[int]


def entropy(seed: SeedLike) -> list[int]:
    """The seed as a list of non-negative ints (SeedSequence entropy)."""
    values = [seed] if isinstance(seed, (int, np.integer)) else list(seed)
    if not values or any(int(v) < 0 for v in values):
        raise ValueError(f"seed must be a non-negative int or a non-empty sequence of them, got {seed!r}")
    return [int(v) for v in values]


def substream(seed: SeedLike, *tags: int) -> list[int]:
    """A seed for an independent sub-stream (e.g. one part of a composite design)."""
    return entropy(seed) + [int(t) for t in tags]


def group_rng(seed: SeedLike, index: int) -> np.random.Generator:
    """The generator of group ``index`` under ``seed``: a pure function of both."""
    if index < 0:
        raise ValueError(f"group index must be non-negative, got {index}")
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(entropy(seed), spawn_key=(int(index),))))
