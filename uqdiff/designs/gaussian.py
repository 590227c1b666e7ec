"""Gaussian couplings z = A u: iid, antithetic, K-antithetic, equicorrelated, any A.

Theorem 3.3 of the coupling paper: with u_1..u_r iid N(0, I) and A a k x r
matrix with unit-norm rows, every z_i = sum_l A_il u_l is N(0, I) and
Cov(z_i, z_j) = (A A^T)_ij I. Every Gaussian design here is one such A.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from uqdiff.designs.base import NoiseDesign
from uqdiff.designs.seeds import SeedLike
from uqdiff.designs.streams import NoiseStream, coupled_normals, normals, stream_key

ROW_NORM_TOL = 1e-6


class GaussianCoupling(NoiseDesign):
    """Groups z = A u for a k x r matrix A with unit-norm rows.

    >>> d = GaussianCoupling([[1.0, 0.0], [0.6, 0.8]])
    >>> d.correlation().round(2).tolist()
    [[1.0, 0.6], [0.6, 1.0]]
    """

    def __init__(self, matrix, *, name: str = "coupling") -> None:
        a = np.array(matrix, dtype=np.float64)
        if a.ndim == 1:
            a = a[:, None]
        if a.ndim != 2 or a.size == 0:
            raise ValueError(f"coupling matrix must be 2-D (k x r), got shape {a.shape}")
        if not np.isfinite(a).all():
            raise ValueError("coupling matrix has NaN or Inf entries")
        norms = np.sqrt((a**2).sum(axis=1))
        for i, n in enumerate(norms):
            if abs(n - 1.0) > ROW_NORM_TOL:
                raise ValueError(
                    f"row {i} of the coupling matrix has norm {n:.6g}; every row must have unit norm "
                    "so that each noise stays N(0, I) (divide the row by its norm)"
                )
        self.matrix = a
        self.group_size = a.shape[0]
        self.name = name

    def correlation(self) -> np.ndarray:
        """The implied correlation A A^T between the noises of a group."""
        return self.matrix @ self.matrix.T

    def _stream_slot(
        self,
        stream: NoiseStream,
        index: int,
        offset: int,
        size: int,
        device: torch.device,
        dtype: torch.dtype = torch.float64,
    ) -> torch.Tensor:
        """z = A u slot by slot: u_l of group g is the counter-based stream (seed, g, slot, l), made in ``dtype``."""
        return coupled_normals(
            stream.key, index, stream.groups, stream.members, self.matrix, size, device=device, dtype=dtype
        )


def basis_noise(indices, r: int, dim: int, *, seed: SeedLike) -> np.ndarray:
    """The iid N(0, I) basis noises u_1..u_r of each group's first slot, shape (len(indices), r, dim), float64.

    Every coupling z = A u of ``r`` columns reads the same u for the same (seed, group) from the
    noise stream, which is what makes a learned coupling reproduce its noise after reloading.
    """
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    rows = np.stack([np.repeat(idx, r), np.tile(np.arange(r), len(idx))], axis=1)
    u = normals(stream_key(seed), 0, rows, int(dim))
    return u.reshape(len(idx), r, int(dim)).numpy()


class IID(GaussianCoupling):
    """Plain Monte Carlo: groups of one independent N(0, I) noise."""

    def __init__(self) -> None:
        super().__init__([[1.0]], name="mc")

    def __repr__(self) -> str:
        return "IID()"


class Antithetic(GaussianCoupling):
    """Antithetic pairs (z, -z): correlation -1 inside each pair."""

    def __init__(self) -> None:
        super().__init__([[1.0], [-1.0]], name="antithetic")

    def __repr__(self) -> str:
        return "Antithetic()"


class Equicorrelated(GaussianCoupling):
    """k noises with pairwise correlation c, valid for -1/(k-1) <= c <= 1 (prop. 3.1).

    A = a I + b 11^T with a = sqrt(1 - c), b = (sqrt(1 - c + k c) - a) / k,
    so that A A^T = (1 - c) I + c 11^T.
    """

    def __init__(self, k: int, c: float) -> None:
        k = _check_k(k)
        lo = -1.0 / (k - 1)
        if isinstance(c, bool) or not isinstance(c, (int, float, np.integer, np.floating)):
            raise TypeError(f"the correlation c of an equicorrelated coupling must be a number, got {c!r}")
        if not (lo - 1e-12 <= c <= 1.0) or not math.isfinite(c):
            raise ValueError(f"an equicorrelated coupling of k={k} noises needs c in [{lo:.6g}, 1], got {c}")
        c = max(float(c), lo)
        a = math.sqrt(1.0 - c)
        b = (math.sqrt(max(1.0 - c + k * c, 0.0)) - a) / k
        super().__init__(a * np.eye(k) + b * np.ones((k, k)), name=f"equicorrelated(k={k}, c={c:.6g})")
        self.k, self.c = k, c

    def __repr__(self) -> str:
        return f"Equicorrelated(k={self.k}, c={self.c!r})"


class KAntithetic(Equicorrelated):
    """K-antithetic groups z_i = sqrt(k/(k-1)) (w_i - mean(w)): correlation -1/(k-1)."""

    def __init__(self, k: int = 8) -> None:
        k = _check_k(k)
        super().__init__(k, -1.0 / (k - 1))
        self.name = f"k-antithetic(k={k})"

    def __repr__(self) -> str:
        return f"KAntithetic(k={self.k})"


class AntitheticSets(GaussianCoupling):
    """Groups of 2k noises: k independent ones, then their negations (A = [I; -I]).

    The design for samplers whose k outputs interact (a particle set, :class:`uqdiff.samplers.RSD`):
    each half of a group is one set of k independent N(0, I) noises, exactly the joint law such a
    sampler is defined with, so its estimand is unchanged, and the second set mirrors the first as an
    antithetic pair would. For samplers of independent outputs a group is k antithetic pairs.

    >>> d = AntitheticSets(2)
    >>> d.group_size, (d.correlation() + 0.0).tolist()
    (4, [[1.0, 0.0, -1.0, 0.0], [0.0, 1.0, 0.0, -1.0], [-1.0, 0.0, 1.0, 0.0], [0.0, -1.0, 0.0, 1.0]])
    """

    def __init__(self, k: int = 4) -> None:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"AntitheticSets needs a set size k >= 1, got {k!r}")
        k = int(k)
        super().__init__(np.vstack([np.eye(k), -np.eye(k)]), name=f"antithetic-sets(k={k})")
        self.k = k

    def __repr__(self) -> str:
        return f"AntitheticSets(k={self.k})"


def _check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 2:
        raise ValueError(f"group size k must be an integer >= 2, got {k!r}")
    return int(k)
