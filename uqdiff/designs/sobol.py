"""Scrambled Sobol' RQMC: a group is one randomization of an n-point net."""

from __future__ import annotations

import numpy as np
import torch

from uqdiff.designs.base import NoiseDesign
from uqdiff.designs.seeds import group_rng
from uqdiff.designs.sobol_points import (
    DEFAULT_BITS,
    MAX_DIM,
    SCRAMBLES,
    extensible_sobol_normal,
    scrambled_sobol_normal,
)
from uqdiff.designs.streams import NoiseStream, normals


class LeadingSobol(NoiseDesign):
    """Scrambled Sobol' points of each replicate on a noise's leading coordinates, iid N(0, 1) after.

    The points cover flat coordinates ``0 .. lead - 1`` of each noise's stream; ``lead=None``
    means the first draw (slot 0: x_T for a sampler, the whole noise for a one-draw sampler).
    Later coordinates are iid from the counter-based stream (seed, group, slot, point). A
    subclass says which points a replicate has (:meth:`_replicate_points`).
    """

    lead: int | None = None
    #: index of the replicate's point that member 0 is (a doubling block starts past the earlier blocks),
    #: so the iid coordinates of different blocks never share a counter
    first_point: int = 0

    def check_dim(self, dim: int) -> None:
        super().check_dim(dim)
        if dim > MAX_DIM and self.lead is None:
            raise ValueError(
                f"Sobol' RQMC supports at most {MAX_DIM} dimensions (Joe-Kuo direction numbers) but the first draw has "
                f"{dim}; use SobolRQMC(n, lead=L) to put RQMC on the first L <= {MAX_DIM} coordinates and iid noise "
                "on the rest, or subspace_rqmc(noise_shape, n) for the lowest frequencies of any noise"
            )

    def _stream_slot(
        self, stream: NoiseStream, index: int, offset: int, size: int, device: torch.device
    ) -> torch.Tensor:
        """Sobol' points of the replicate on the leading coordinates, iid (seed, g, slot, point) elsewhere."""
        lead = self.lead
        if lead is None:  # the first draw (x_T) is the Sobol' part
            lead = size if index == 0 else 0
            if lead > MAX_DIM:
                raise ValueError(
                    f"the first draw of this stream has {size} coordinates, more than the {MAX_DIM} Sobol' "
                    f"dimensions; use SobolRQMC(n, lead=L) with L <= {MAX_DIM} to put RQMC on the first L"
                )
        cut = min(max(lead - offset, 0), size)
        rows = np.stack([stream.groups, stream.members + self.first_point], axis=1)
        values = normals(stream.key, index, rows, size, device=device) if cut < size else None
        if cut == 0:
            return values
        points = self._points(stream, lead, device)[:, offset : offset + cut]
        return points if values is None else torch.cat([points, values[:, cut:]], dim=1)

    def _points(self, stream: NoiseStream, lead: int, device: torch.device) -> torch.Tensor:
        """Each noise's scrambled Sobol' point (len, lead), float64; replicates kept per batch."""
        cache = stream.cache.setdefault(("sobol", self.name, lead, str(device)), {})
        missing = sorted({int(g) for g in stream.groups} - cache.keys())
        if missing:
            pts = self._replicate_points([group_rng(stream.seed, g) for g in missing], lead, device)
            cache.update(zip(missing, pts))
        return torch.stack([cache[int(g)][int(i)] for g, i in zip(stream.groups, stream.members)])

    def _replicate_points(self, rngs: list, lead: int, device: torch.device) -> torch.Tensor:
        """Normal-mapped points (len(rngs), group_size, lead), float64, one replicate per generator."""
        raise NotImplementedError


class SobolRQMC(LeadingSobol):
    """R independent scramblings of n = 2**m Sobol' points, mapped by the normal inverse CDF.

    Each point is exactly uniform on a grid of 2**52 cells (cell midpoints, so
    never 0 or 1) and thus N(0, I) up to that grid; replicate means are iid,
    which gives the Student-t interval on R - 1 degrees of freedom.

    ``lead`` puts the Sobol' points on the first ``lead`` flat coordinates of the noise only
    (at most the Sobol' dimension limit) and iid N(0, 1) on the rest. For a captured sampler's
    noise stream (:class:`uqdiff.samplers.Captured`) the default is its first draw, x_T: the
    scrambled points of the replicate fill slot 0, later slots are iid from the counter-based
    stream. For fixed-size noise the default is the whole noise.

    >>> SobolRQMC(64).group_size, SobolRQMC(16, lead=784).name
    (64, 'rqmc(n=16, lms+shift, lead=784)')
    """

    def __init__(self, n: int = 64, *, scramble: str = "lms+shift", lead: int | None = None) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1 or n & (n - 1):
            raise ValueError(f"Sobol' point count n must be a power of two (1, 2, 4, ..., 64, ...), got {n!r}")
        if scramble not in SCRAMBLES:
            raise ValueError(f"scramble must be one of {SCRAMBLES}, got {scramble!r}")
        if lead is not None and (
            isinstance(lead, bool) or not isinstance(lead, (int, np.integer)) or not 1 <= lead <= MAX_DIM
        ):
            raise ValueError(f"lead must be an int in 1..{MAX_DIM} (the Sobol' dimension limit) or None, got {lead!r}")
        self.n = n
        self.m = n.bit_length() - 1
        self.scramble = scramble
        self.lead = None if lead is None else int(lead)
        self.group_size = n
        self.name = f"rqmc(n={n}, {scramble})" if lead is None else f"rqmc(n={n}, {scramble}, lead={lead})"

    def _replicate_points(self, rngs: list, lead: int, device: torch.device) -> torch.Tensor:
        return scrambled_sobol_normal(
            self.m, lead, rngs, scramble=self.scramble, bits=DEFAULT_BITS, device=device, dtype=torch.float64
        )

    def __repr__(self) -> str:
        lead = "" if self.lead is None else f", lead={self.lead}"
        return f"SobolRQMC(n={self.n}, scramble={self.scramble!r}{lead})"


class SobolBlock(LeadingSobol):
    """One doubling block of extensible scrambled Sobol' replicates: a group is replicate g's points in the block.

    Block 0 holds points 0 .. n_init - 1 of each replicate, block j >= 1 points
    n_init 2^(j-1) .. n_init 2^j - 1 (see :func:`extensible_sobol_normal`), so the
    blocks 0..j together are the replicate's first n_init 2^j points, a scrambled
    net, and a stopping rule doubles a replicate's points without redrawing the ones
    it has. Used by :class:`~uqdiff.estimators.stopping.RQMCDoubling`.

    >>> SobolBlock(16, 0).group_size, SobolBlock(16, 3).group_size
    (16, 64)
    """

    def __init__(self, n_init: int, block: int, *, lead: int | None = None) -> None:
        if isinstance(n_init, bool) or not isinstance(n_init, int) or n_init < 1 or n_init & (n_init - 1):
            raise ValueError(f"n_init must be a power of two, got {n_init!r}")
        if isinstance(block, bool) or not isinstance(block, int) or block < 0:
            raise ValueError(f"block must be a non-negative int, got {block!r}")
        self.n_init, self.block = n_init, block
        self.start = self.first_point = 0 if block == 0 else n_init * 2 ** (block - 1)
        self.stop = n_init * 2**block
        self.group_size = self.stop - self.start
        self.lead = None if lead is None else int(lead)
        self.name = f"rqmc-doubling(n_init={n_init}) block {block}" + ("" if lead is None else f", lead={lead}")

    def _replicate_points(self, rngs: list, lead: int, device: torch.device) -> torch.Tensor:
        return extensible_sobol_normal(self.start, self.stop, lead, rngs, device=device, dtype=torch.float64)

    def __repr__(self) -> str:
        lead = "" if self.lead is None else f", lead={self.lead}"
        return f"SobolBlock(n_init={self.n_init}, block={self.block}{lead})"
