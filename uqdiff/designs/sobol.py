"""Scrambled Sobol' RQMC: a group is one randomization of an n-point net."""

from __future__ import annotations

import torch

from uqdiff.designs.base import NoiseDesign
from uqdiff.designs.seeds import SeedLike, group_rng
from uqdiff.designs.sobol_points import DEFAULT_BITS, MAX_DIM, SCRAMBLES, scrambled_sobol_normal


class SobolRQMC(NoiseDesign):
    """R independent scramblings of n = 2**m Sobol' points, mapped by the normal inverse CDF.

    Each point is exactly uniform on a grid of 2**52 cells (cell midpoints, so
    never 0 or 1) and thus N(0, I) up to that grid; replicate means are iid,
    which gives the Student-t interval on R - 1 degrees of freedom.

    >>> SobolRQMC(64).group_size
    64
    """

    def __init__(self, n: int = 64, *, scramble: str = "lms+shift") -> None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1 or n & (n - 1):
            raise ValueError(f"Sobol' point count n must be a power of two (1, 2, 4, ..., 64, ...), got {n!r}")
        if scramble not in SCRAMBLES:
            raise ValueError(f"scramble must be one of {SCRAMBLES}, got {scramble!r}")
        self.n = n
        self.m = n.bit_length() - 1
        self.scramble = scramble
        self.group_size = n
        self.name = f"rqmc(n={n}, {scramble})"

    def check_dim(self, dim: int) -> None:
        super().check_dim(dim)
        if dim > MAX_DIM:
            raise ValueError(
                f"Sobol' RQMC supports at most {MAX_DIM} dimensions (Joe-Kuo direction numbers) but the noise has "
                f"{dim}; use SubspaceCoupling(SobolRQMC(...), mask=... or basis=...) to put RQMC on a subspace "
                "of at most that dimension and iid noise on its complement"
            )

    def _groups(self, indices, dim, seed: SeedLike, device, dtype) -> torch.Tensor:
        rngs = [group_rng(seed, g) for g in indices]
        return scrambled_sobol_normal(
            self.m, dim, rngs, scramble=self.scramble, bits=DEFAULT_BITS, device=device, dtype=dtype
        )

    def __repr__(self) -> str:
        return f"SobolRQMC(n={self.n}, scramble={self.scramble!r})"
