"""Random streams keyed by (seed, group index).

Every random draw in uqdiff comes from a generator built from the user's seed
and the index of the group it belongs to, so a group's noise never depends on
how a run is batched, sharded or resumed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: The one seed type of uqdiff: a non-negative int, or a non-empty sequence of them (numpy ints
#: included). Sequences let a run derive independent streams, e.g. ``[seed, image index]``.
SeedLike = int | Sequence[int]


def entropy(seed: SeedLike, *, name: str = "seed") -> list[int]:
    """The seed as a list of non-negative ints (SeedSequence entropy); anything else is refused.

    Refused with a message naming the argument: bools, floats (even 2.0), strings (``"12"``
    would otherwise read as the seed [1, 2]), None, empty sequences and negative values.

    >>> entropy(7), entropy([1, 2])
    ([7], [1, 2])
    >>> entropy("12")
    Traceback (most recent call last):
    ...
    TypeError: seed must be a non-negative int or a non-empty sequence of them, got '12' (a str)
    """
    values = [seed] if _is_int(seed) else seed
    ok = isinstance(values, (list, tuple, np.ndarray)) and len(values) > 0 and all(_is_int(v) for v in values)
    if not ok:
        raise TypeError(
            f"{name} must be a non-negative int or a non-empty sequence of them, got {seed!r} (a {type(seed).__name__})"
        )
    if any(int(v) < 0 for v in values):
        raise ValueError(f"{name} must be non-negative, got {seed!r}")
    return [int(v) for v in values]


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def substream(seed: SeedLike, *tags: int) -> list[int]:
    """A seed for an independent sub-stream (e.g. one part of a composite design)."""
    return entropy(seed) + [int(t) for t in tags]


def group_rng(seed: SeedLike, index: int) -> np.random.Generator:
    """The generator of group ``index`` under ``seed``: a pure function of both."""
    if index < 0:
        raise ValueError(f"group index must be non-negative, got {index}")
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(entropy(seed), spawn_key=(int(index),))))
