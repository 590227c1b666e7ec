"""Streaming, mergeable moments of group means, identical however a run is split.

An accumulator never holds the samples: it keeps count, mean and the sums of
squared, cubed and fourth-power deviations (float64, Chan et al. and Pebay updates) of the
group means, plus the summed within-group squares needed for the marginal
variance. The third and fourth moments give the skewness and kurtosis of the group means: the
default interval corrects for the first, and both decide when an interval is warned. To make results
bit-identical for any batching, sharding or merge order, moments are always
combined along one canonical binary tree over group indices: leaves are
aligned blocks of BLOCK groups, a node covers an aligned run of 2**level
blocks, and the final answer folds the maximal nodes from left to right.
Memory is O(BLOCK + log(groups)) values per statistic, independent of budget.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

BLOCK = 64


@dataclass(frozen=True)
class Moments:
    """Moments of a run of group means: count, mean, M2 = sum (x - mean)^2, M3 = sum (x - mean)^3,
    M4 = sum (x - mean)^4, and the summed within-group squares."""

    count: int
    mean: np.ndarray
    m2: np.ndarray
    within: np.ndarray
    m3: np.ndarray
    m4: np.ndarray

    @classmethod
    def of(cls, means: np.ndarray, within: np.ndarray) -> Moments:
        """Moments of a stack of group means (n, ...) computed in one fixed order."""
        mean = means.mean(axis=0)
        dev = means - mean
        return cls(
            len(means), mean, (dev**2).sum(axis=0), within.sum(axis=0), (dev**3).sum(axis=0), (dev**4).sum(axis=0)
        )

    def merge(self, other: Moments) -> Moments:
        """Exact pairwise update (Chan et al. for M2, Pebay 2008 for M3 and M4); ``self`` covers the lower groups."""
        na, nb = self.count, other.count
        n = na + nb
        delta = other.mean - self.mean
        return Moments(
            n,
            self.mean + delta * (nb / n),
            self.m2 + other.m2 + delta**2 * (na * nb / n),
            self.within + other.within,
            self.m3
            + other.m3
            + delta**3 * (na * nb * (na - nb) / n**2)
            + 3.0 * delta * (na * other.m2 - nb * self.m2) / n,
            self.m4
            + other.m4
            + delta**4 * (na * nb * (na * na - na * nb + nb * nb) / n**3)
            + 6.0 * delta**2 * (na * na * other.m2 + nb * nb * self.m2) / n**2
            + 4.0 * delta * (na * other.m3 - nb * self.m3) / n,
        )


class GroupAccumulator:
    """Accumulates per-group means (and within-group sums of squares) by group index."""

    def __init__(self) -> None:
        self.shape: tuple[int, ...] | None = None
        self._nodes: dict[tuple[int, int], Moments] = {}  # (level, position) -> moments
        self._pending: dict[int, dict[int, tuple[np.ndarray, np.ndarray]]] = {}  # block -> group -> rows
        self.count = 0

    def add(self, start: int, means: np.ndarray, within: np.ndarray) -> None:
        """Add groups ``start, start+1, ...`` with their means and within-group sums of squares."""
        means = np.asarray(means, dtype=np.float64)
        within = np.asarray(within, dtype=np.float64)
        if means.shape != within.shape:
            raise ValueError(f"means shape {means.shape} and within shape {within.shape} differ")
        self._check_shape(means.shape[1:])
        g, end = start, start + len(means)
        while g < end:
            block = g // BLOCK
            stop = min(end, (block + 1) * BLOCK)
            lo, hi = g - start, stop - start
            if g == block * BLOCK and stop == (block + 1) * BLOCK:
                self._insert(0, block, Moments.of(means[lo:hi], within[lo:hi]))
            else:
                self._add_rows(block, {start + i: (means[i], within[i]) for i in range(lo, hi)})
            self.count += hi - lo
            g = stop

    def merge(self, other: GroupAccumulator) -> GroupAccumulator:
        """Fold another accumulator over disjoint groups into this one (in place) and return it."""
        if other.shape is not None:
            self._check_shape(other.shape)
        for (level, pos), moments in sorted(other._nodes.items()):
            self._insert(level, pos, moments)
        for block, rows in other._pending.items():
            self._add_rows(block, rows)
        self.count += other.count
        return self

    def moments(self) -> Moments:
        """The moments of every group added so far, folded in canonical order."""
        if self.count == 0:
            raise ValueError("no group has been added")
        pieces = [((pos << level) * BLOCK, m) for (level, pos), m in self._nodes.items()]
        pieces += [(min(rows), _rows_moments(rows)) for rows in self._pending.values()]
        pieces.sort(key=lambda item: item[0])
        total = pieces[0][1]
        for _, m in pieces[1:]:
            total = total.merge(m)
        return total

    def state(self) -> dict[str, np.ndarray]:
        """The exact state as plain arrays (for npz checkpoints: no pickle, bit-exact floats)."""
        shape = self.shape if self.shape is not None else ()
        nodes = sorted(self._nodes.items())
        rows = sorted((g, row) for block in self._pending.values() for g, row in block.items())

        def stack(values: list[np.ndarray]) -> np.ndarray:
            return np.stack(values) if values else np.zeros((0, *shape))

        return {
            "shape": np.array([-1] if self.shape is None else shape, dtype=np.int64),
            "count": np.array(self.count, dtype=np.int64),
            "node_index": np.array([key for key, _ in nodes], dtype=np.int64).reshape(-1, 2),
            "node_count": np.array([m.count for _, m in nodes], dtype=np.int64),
            "node_mean": stack([m.mean for _, m in nodes]),
            "node_m2": stack([m.m2 for _, m in nodes]),
            "node_within": stack([m.within for _, m in nodes]),
            "node_m3": stack([m.m3 for _, m in nodes]),
            "node_m4": stack([m.m4 for _, m in nodes]),
            "row_group": np.array([g for g, _ in rows], dtype=np.int64),
            "row_mean": stack([r[0] for _, r in rows]),
            "row_within": stack([r[1] for _, r in rows]),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, np.ndarray]) -> GroupAccumulator:
        """Rebuild an accumulator from :meth:`state`, re-checking that no group is counted twice."""
        acc = cls()
        shape = tuple(int(s) for s in state["shape"])
        if shape != (-1,):
            acc.shape = shape
        for (level, pos), n, mean, m2, within, m3, m4 in zip(
            state["node_index"],
            state["node_count"],
            state["node_mean"],
            state["node_m2"],
            state["node_within"],
            state["node_m3"],
            state["node_m4"],
        ):
            acc._insert(int(level), int(pos), Moments(int(n), mean, m2, within, m3, m4))
            acc.count += int(n)
        for g, mean, within in zip(state["row_group"], state["row_mean"], state["row_within"]):
            acc._add_rows(int(g) // BLOCK, {int(g): (mean, within)})
            acc.count += 1
        if acc.count != int(state["count"]):
            raise ValueError(f"accumulator state holds {acc.count} groups but says {int(state['count'])}")
        return acc

    def _check_shape(self, shape: tuple[int, ...]) -> None:
        if self.shape is None:
            self.shape = tuple(shape)
        elif tuple(shape) != self.shape:
            raise ValueError(f"statistic shape changed from {self.shape} to {tuple(shape)} between batches")

    def _add_rows(self, block: int, new: dict[int, tuple[np.ndarray, np.ndarray]]) -> None:
        """Park single groups of an unfinished block until the block is whole."""
        rows = self._pending.setdefault(block, {})
        for g, row in new.items():
            if g in rows or self._covered(block):
                raise ValueError(f"group {g} was already counted")
            rows[g] = row
        self._complete(block)

    def _complete(self, block: int) -> None:
        rows = self._pending[block]
        if len(rows) == BLOCK:
            del self._pending[block]
            self._insert(0, block, _rows_moments(rows))

    def _covered(self, block: int, stop: int | None = None) -> bool:
        """Whether a finished node already holds any block in [block, stop)."""
        stop = block + 1 if stop is None else stop
        return any((pos << level) < stop and block < ((pos + 1) << level) for level, pos in self._nodes)

    def _insert(self, level: int, pos: int, moments: Moments) -> None:
        lo, hi = pos << level, (pos + 1) << level
        if self._covered(lo, hi) or any(lo <= b < hi for b in self._pending):
            raise ValueError(
                f"groups {(pos << level) * BLOCK}..{((pos + 1) << level) * BLOCK - 1} were already counted"
            )
        while True:
            sibling = (level, pos ^ 1)
            if sibling not in self._nodes:
                self._nodes[(level, pos)] = moments
                return
            other = self._nodes.pop(sibling)
            moments = other.merge(moments) if pos & 1 else moments.merge(other)
            level, pos = level + 1, pos >> 1


def _rows_moments(rows: dict[int, tuple[np.ndarray, np.ndarray]]) -> Moments:
    """Moments of single parked groups, stacked in group order."""
    keys = sorted(rows)
    return Moments.of(np.stack([rows[g][0] for g in keys]), np.stack([rows[g][1] for g in keys]))
