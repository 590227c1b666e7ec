"""The noise-design layer: independent groups of marginally N(0, I) noises, served as one stream.

Every design makes its noise one way: a :class:`~uqdiff.designs.streams.NoiseStream` whose slot
``s`` of member ``m`` of group ``g`` is a pure function of (seed, g, s, m). A sampler that draws
inside its loop (:class:`uqdiff.samplers.Captured`) reads one slot per draw; a sampler that takes
one noise tensor is a sampler with one draw and reads slot 0. So every design serves every
sampler, and the same seed gives a tensor generator and a captured loop the same x_T.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np
import torch

from uqdiff.designs.seeds import SeedLike
from uqdiff.designs.streams import NoiseStream


class NoiseDesign(ABC):
    """A joint law for one *group* of ``group_size`` noises.

    Groups are independent and identically distributed; inside a group the
    noises are dependent by design, but each one is exactly N(0, I). The
    estimators only rely on this: the estimate is the mean of iid group means.
    A subclass implements :meth:`_stream_slot`, one slot of every noise of a stream.
    """

    name: str = "design"
    group_size: int = 1

    def stream(
        self, indices: Sequence[int] | np.ndarray, *, seed: SeedLike = 0, dtype: torch.dtype = torch.float32
    ) -> NoiseStream:
        """The noises of the given groups as a stream made slot by slot on demand.

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

    def groups(
        self,
        indices: Sequence[int] | np.ndarray,
        dim: int,
        *,
        seed: SeedLike = 0,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> torch.Tensor:
        """Slot 0 (the noise a one-draw sampler gets) of the given groups, shape (len(indices), group_size, dim).

        The same values as :meth:`stream`'s first slot: a convenience for diagnostics and for code
        that wants whole groups at once.

        >>> from uqdiff.designs import Antithetic
        >>> z = Antithetic().groups([0, 1], 3, seed=3)
        >>> tuple(z.shape), bool((z[:, 0] == -z[:, 1]).all())
        ((2, 2, 3), True)
        """
        self.check_dim(int(dim))
        s = self.stream(indices, seed=seed, dtype=dtype)
        return s.slot(0, (int(dim),), offset=0, device=device).reshape(len(s) // self.group_size, self.group_size, -1)

    def check_dim(self, dim: int) -> None:
        """Raise if this design cannot produce a first draw (x_T) of dimension ``dim``."""
        if dim < 1:
            raise ValueError(f"noise dimension must be at least 1, got {dim}")

    def correlation(self) -> np.ndarray | None:
        """The (group_size x group_size) correlation of every coordinate, if the design has one."""
        return None

    @abstractmethod
    def _stream_slot(
        self, stream: NoiseStream, index: int, offset: int, size: int, device: torch.device
    ) -> torch.Tensor:
        """Slot ``index`` of every noise of ``stream``: ``size`` flat coordinates from flat ``offset``, float64.

        ``offset`` is where the slot starts in a noise's whole stream (slot 0 starts at 0):
        designs that treat the leading coordinates differently (Sobol' points on x_T, a subspace
        of the first coordinates) need it.
        """

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, group_size={self.group_size})"
