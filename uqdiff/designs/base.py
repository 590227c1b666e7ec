"""The noise-design layer: independent groups of marginally N(0, I) noises."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np
import torch

from uqdiff.designs.seeds import SeedLike
from uqdiff.designs.streams import NoiseStream


class NoiseDesign(ABC):
    """A joint law for one *group* of ``group_size`` noises in R^dim.

    Groups are independent and identically distributed; inside a group the
    noises are dependent by design, but each one is exactly N(0, I_dim). The
    estimators only rely on this: the estimate is the mean of iid group means.
    Group ``g`` under ``seed`` is a pure function of (seed, g).
    """

    name: str = "design"
    group_size: int = 1

    def groups(
        self,
        indices: Sequence[int] | np.ndarray,
        dim: int,
        *,
        seed: SeedLike = 0,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> torch.Tensor:
        """Noise of the given groups, shape (len(indices), group_size, dim)."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and idx.min() < 0:
            raise ValueError(f"group indices must be non-negative, got {idx.min()}")
        self.check_dim(int(dim))
        return self._groups(idx, int(dim), seed, torch.device(device) if device else torch.device("cpu"), dtype)

    def stream(
        self, indices: Sequence[int] | np.ndarray, *, seed: SeedLike = 0, dtype: torch.dtype = torch.float32
    ) -> NoiseStream:
        """The noises of the given groups as a stream made slot by slot on demand (for captured samplers).

        Noise ``i`` of the stream is member ``i % group_size`` of group ``indices[i // group_size]``;
        each slot is a pure function of (seed, group, slot, member), every noise exactly N(0, I).

        >>> from uqdiff.designs import Antithetic
        >>> s = Antithetic().stream([0, 1], seed=3)
        >>> z = s.slot(0, (2,), offset=0)
        >>> len(s), bool((z[0] == -z[1]).all()), bool((s[2:].slot(0, (2,), offset=0) == z[2:]).all())
        (4, True, True)
        """
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and idx.min() < 0:
            raise ValueError(f"group indices must be non-negative, got {idx.min()}")
        k = self.group_size
        return NoiseStream(self, np.repeat(idx, k), np.tile(np.arange(k), len(idx)), seed=seed, dtype=dtype)

    def _stream_slot(
        self, stream: NoiseStream, index: int, offset: int, size: int, device: torch.device
    ) -> torch.Tensor:
        """Slot ``index`` (flat ``size`` coordinates from ``offset``) of every noise of ``stream``, float64."""
        raise TypeError(
            f"design {self.name!r} makes fixed-size noise only; a captured sampler needs a stream design "
            "(a Gaussian coupling: mc, antithetic, k-antithetic, equicorrelated, a learned coupling; or SobolRQMC)"
        )

    def check_dim(self, dim: int) -> None:
        """Raise if this design cannot produce noise of dimension ``dim``."""
        if dim < 1:
            raise ValueError(f"noise dimension must be at least 1, got {dim}")

    def correlation(self) -> np.ndarray | None:
        """The (group_size x group_size) correlation of every coordinate, if the design has one."""
        return None

    @abstractmethod
    def _groups(
        self, indices: np.ndarray, dim: int, seed: SeedLike, device: torch.device, dtype: torch.dtype
    ) -> torch.Tensor: ...

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, group_size={self.group_size})"
