"""Noise around one fixed noise: z = c z0 + sqrt(1 - c^2) w, with w from any design.

With z0 fixed and w ~ N(0, I), z ~ N(c z0, (1 - c^2) I): variations of one sample. The blend is
applied slot by slot to the stream of w, so a sampler that draws inside its loop gets every draw
blended with the matching part of z0 (z0 then holds the sampler's whole stream, flattened).
"""

from __future__ import annotations

import math

import torch

from uqdiff.designs.base import NoiseDesign
from uqdiff.designs.streams import NoiseStream


class Anchored(NoiseDesign):
    """``inner``'s noise w blended with a fixed flat noise ``z0``: c z0 + sqrt(1 - c^2) w.

    Not an N(0, I) design (z has mean c z0); :class:`uqdiff.samplers.Variations` runs a sampler
    on it while the estimators see ``inner``, whose groups stay iid.

    >>> from uqdiff.designs import Antithetic
    >>> d = Anchored(Antithetic(), torch.tensor([2.0, 0.0]), 0.6)
    >>> z = d.stream([0]).slot(0, (2,), offset=0)
    >>> bool(torch.allclose(z[0] + z[1], torch.tensor([2.4, 0.0])))
    True
    """

    def __init__(self, inner: NoiseDesign, z0: torch.Tensor, c: float) -> None:
        self.inner, self.c = inner, float(c)
        self.z0 = torch.as_tensor(z0).detach().reshape(-1).to(torch.float64)
        self.group_size = inner.group_size
        self.name = f"{inner.name} around z0 (c={self.c:g})"

    def _stream_slot(
        self, stream: NoiseStream, index: int, offset: int, size: int, device: torch.device
    ) -> torch.Tensor:
        if offset + size > self.z0.numel():
            raise ValueError(
                f"z0 holds {self.z0.numel()} values per noise but the sampler drew values {offset}..{offset + size - 1} "
                "(draw {index}); give z0 with the sampler's whole noise stream, flattened (for a captured sampler, "
                "uqdiff.samplers.capture.flat_noise gives one)".replace("{index}", str(index))
            )
        w = self.inner._stream_slot(stream, index, offset, size, device)
        anchor = self.z0[offset : offset + size].to(device)
        return self.c * anchor + math.sqrt(1.0 - self.c * self.c) * w
