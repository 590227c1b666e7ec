"""Coupling on a subspace V and another coupling on its complement (coupling paper, sec. 3.3).

z_i = P_V z_i + P_{V-perp} z_i; both parts are standard Gaussian on their own
subspace, so each z_i stays N(0, I) whatever the two couplings are.
"""

from __future__ import annotations

import numpy as np
import torch

from uqdiff.designs.base import NoiseDesign
from uqdiff.designs.gaussian import IID
from uqdiff.designs.seeds import substream
from uqdiff.designs.sobol import SobolRQMC
from uqdiff.designs.streams import MAX_INDEX, NoiseStream

#: The outer design's slot that fills the covered block: a slot no sampler reaches, so the block is
#: independent of the outer design's own slots past it.
COVER_SLOT = MAX_INDEX


class SubspaceCoupling(NoiseDesign):
    """``inner`` on a subspace, ``outer`` (iid by default) on its complement.

    The subspace is given either by ``mask`` (a boolean mask over the flattened
    noise coordinates) or by ``basis`` (a dim x p matrix with orthonormal
    columns). ``outer`` must have the same group size as ``inner`` or be a
    group-size-1 design, in which case each group member gets its own draw.
    This is how RQMC reaches noises larger than the Sobol' dimension limit.

    >>> import numpy as np
    >>> from uqdiff.designs import Antithetic
    >>> d = SubspaceCoupling(Antithetic(), mask=np.array([True, False, False]))
    >>> z = d.groups([0], 3, seed=1)[0]
    >>> bool(z[0, 0] == -z[1, 0]), bool(z[0, 1] == -z[1, 1])
    (True, False)
    """

    def __init__(self, inner: NoiseDesign, *, mask=None, basis=None, outer: NoiseDesign | None = None) -> None:
        if (mask is None) == (basis is None):
            raise ValueError("give exactly one of mask= (coordinates) or basis= (orthonormal columns)")
        outer = outer if outer is not None else IID()
        if outer.group_size not in (1, inner.group_size):
            raise ValueError(
                f"outer design has group size {outer.group_size}; it must be 1 or match the inner group size "
                f"{inner.group_size}"
            )
        self.inner, self.outer = inner, outer
        self.mask = self.basis = None
        if mask is not None:
            m = np.asarray(mask).reshape(-1)
            if m.dtype != bool:
                raise ValueError(f"mask must be boolean, got dtype {m.dtype}")
            if not m.any():
                raise ValueError("mask selects no coordinate")
            self.mask = m
            self.sub_dim, self.full_dim = int(m.sum()), m.size
        else:
            v = np.asarray(basis, dtype=np.float64)
            if v.ndim != 2 or v.shape[1] == 0 or v.shape[1] > v.shape[0]:
                raise ValueError(f"basis must be a dim x p matrix with 1 <= p <= dim, got shape {v.shape}")
            gram_err = np.abs(v.T @ v - np.eye(v.shape[1])).max()
            if gram_err > 1e-6:
                raise ValueError(
                    f"basis columns must be orthonormal (max |V^T V - I| = {gram_err:.3g}); orthonormalize with numpy.linalg.qr"
                )
            self.basis = v
            self.sub_dim, self.full_dim = v.shape[1], v.shape[0]
        self.group_size = inner.group_size
        self.name = f"subspace({inner.name} on {self.sub_dim} dims, {outer.name} elsewhere)"

    def check_dim(self, dim: int) -> None:
        super().check_dim(dim)
        if dim != self.full_dim:
            raise ValueError(f"this subspace coupling is defined for noise dimension {self.full_dim}, got {dim}")
        self.inner.check_dim(self.sub_dim)

    def _stream_slot(
        self, stream: NoiseStream, index: int, offset: int, size: int, device: torch.device
    ) -> torch.Tensor:
        """The coupled block on flat coordinates 0 .. full_dim - 1 of each noise, ``outer`` after it."""
        cut = min(max(self.full_dim - offset, 0), size)
        rest = None
        if cut < size:  # past the covered coordinates the outer design goes on, slot by slot
            rest = self.outer._stream_slot(self._outer_stream(stream), index, offset, size, device)[:, cut:]
        if cut == 0:
            return rest
        block = self._block(stream, device)[:, offset : offset + cut]
        return block if rest is None else torch.cat([block, rest], dim=1)

    def _outer_stream(self, stream: NoiseStream) -> NoiseStream:
        """The outer design's stream: the same groups, or one group per member for a group-size-1 design."""
        seed = substream(stream.seed, 2)
        if self.outer.group_size == self.group_size:
            return NoiseStream(self.outer, stream.groups, stream.members, seed=seed)
        flat = stream.groups * self.group_size + stream.members
        return NoiseStream(self.outer, flat, np.zeros_like(flat), seed=seed)

    def _block(self, stream: NoiseStream, device: torch.device) -> torch.Tensor:
        """The covered coordinates of every noise (len, full_dim), float64, kept for the batch."""
        key = ("subspace", id(self), str(device), stream.groups.tobytes(), stream.members.tobytes())
        if key in stream.cache:
            return stream.cache[key]
        inner_stream = NoiseStream(self.inner, stream.groups, stream.members, seed=substream(stream.seed, 1))
        inner = self.inner._stream_slot(inner_stream, 0, 0, self.sub_dim, device)
        dim = self.full_dim if self.mask is None else self.full_dim - self.sub_dim
        w = self.outer._stream_slot(self._outer_stream(stream), COVER_SLOT, 0, dim, device)
        if self.mask is not None:
            out = torch.empty((len(stream), self.full_dim), dtype=torch.float64, device=device)
            mask = torch.from_numpy(self.mask).to(device)
            out[:, mask] = inner
            out[:, ~mask] = w
        else:
            v = torch.from_numpy(self.basis).to(device)
            # one noise at a time: a matmul's bits may depend on the batch shape
            parts = [inner[i] @ v.T + w[i] - (w[i] @ v) @ v.T for i in range(len(stream))]
            out = torch.stack(parts) if parts else w
        stream.cache[key] = out
        return out

    def __repr__(self) -> str:
        return f"SubspaceCoupling({self.inner!r}, outer={self.outer!r}, sub_dim={self.sub_dim})"


def on_leading_coordinates(inner: NoiseDesign, dim: int, lead: int, *, outer: NoiseDesign | None = None) -> NoiseDesign:
    """``inner`` on the first ``lead`` flat coordinates (e.g. the initial latent of a noise stream), ``outer`` after.

    Returns ``inner`` itself when it covers the whole noise. This is how RQMC
    covers the leading part of a stochastic sampler's stream.
    """
    if not 1 <= lead <= dim:
        raise ValueError(f"lead must be in 1..{dim}, got {lead}")
    if lead == dim:
        return inner
    mask = np.zeros(dim, dtype=bool)
    mask[:lead] = True
    return SubspaceCoupling(inner, mask=mask, outer=outer)


def subspace_rqmc(
    noise_shape: tuple[int, ...],
    n: int,
    *,
    dims: int = 16,
    basis: np.ndarray | None = None,
    channels: int | None = None,
    outer: str = "k-antithetic",
) -> SubspaceCoupling:
    """RQMC on a low-dimensional subspace of a noise of any size, a coupling on the rest.

    Sobol' engines stop at 21201 dimensions; a diffusion model's noise often has more. What a
    statistic mostly depends on is coarse structure, which the lowest DCT frequencies of the
    noise carry: scrambled Sobol' points there, and on the orthogonal complement K-antithetic
    groups of the same size n (their sum is zero, so the complement's linear part cancels in the
    group mean) or iid noise. Every noise is exactly N(0, I).

    Parameters
    ----------
    noise_shape : tuple of int
        Shape of one noise (the last two axes are the image, earlier ones channels or stream slots).
    n : int
        Sobol' points per replicate (a power of two); the group size.
    dims : int
        Lowest DCT frequencies per channel in the subspace (16 by default); ignored with ``basis``.
    basis : array (dim, p), optional
        Orthonormal columns of another subspace, e.g. from
        :func:`uqdiff.estimators.gradient_directions` (directions a pilot found).
    channels : int, optional
        Only the first ``channels`` channels get DCT directions (all by default).
    outer : {"k-antithetic", "iid"}
        The design on the complement.

    Examples
    --------
    >>> d = subspace_rqmc((1, 128, 128), 32, dims=16)
    >>> d.name, d.group_size
    ('subspace(rqmc(n=32, lms+shift) on 16 dims, k-antithetic(k=32) elsewhere)', 32)
    """
    from uqdiff.designs.features import dct_basis
    from uqdiff.designs.gaussian import KAntithetic

    if outer not in ("k-antithetic", "iid"):
        raise ValueError(f"outer must be 'k-antithetic' or 'iid', got {outer!r}")
    inner = SobolRQMC(n)
    v = dct_basis(noise_shape, dims, channels=channels) if basis is None else basis
    complement = KAntithetic(n) if outer == "k-antithetic" and n > 1 else IID()
    return SubspaceCoupling(inner, basis=v, outer=complement)
