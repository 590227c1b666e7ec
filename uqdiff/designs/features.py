"""Functions of the noise with known means: free control variates and subspaces for RQMC.

A noise z ~ N(0, I) has known moments, so any function of it with a known
mean is a control variate that costs no model call. The coefficients of an
orthonormal transform of z are again iid N(0, 1); the low-frequency ones of a
2-D DCT carry most of what a diffusion model turns into coarse image
structure (mean brightness, large shapes), so they are the natural features:

* their values c_j (mean 0; odd in z: what antithetic pairs already cancel),
* their squares (c_j^2 - 1) / sqrt(2) (mean 0, variance 1; even in z: what pairs leave),
* the energy of whole frequency bands, (sum of c_j^2 over the band - m) / sqrt(2 m)
  for a band of m coefficients (even; one feature summarises many coefficients, so it
  does not overfit at small budgets).

The same low-frequency directions span the subspace on which
:func:`dct_basis` lets :class:`~uqdiff.designs.SubspaceCoupling` run RQMC in
any dimension.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from functools import lru_cache

import numpy as np
import torch


@lru_cache(maxsize=8)
def dct_matrix(n: int) -> np.ndarray:
    """The orthonormal DCT-II matrix of size n (rows are the basis vectors, row 0 the constant).

    >>> c = dct_matrix(4)
    >>> bool(np.allclose(c @ c.T, np.eye(4))), bool(np.allclose(c[0], 0.5))
    (True, True)
    """
    if n < 1:
        raise ValueError(f"DCT size must be at least 1, got {n}")
    x, u = np.arange(n)[None, :], np.arange(n)[:, None]
    c = np.sqrt(2.0 / n) * np.cos(np.pi * (2 * x + 1) * u / (2 * n))
    c[0] /= np.sqrt(2.0)
    c.setflags(write=False)
    return c


def low_frequencies(height: int, width: int, count: int) -> list[tuple[int, int]]:
    """The ``count`` lowest 2-D frequencies (u, v), ordered by u + v, then by max(u, v), then u.

    >>> low_frequencies(8, 8, 4)
    [(0, 0), (0, 1), (1, 0), (1, 1)]
    """
    if not 1 <= count <= height * width:
        raise ValueError(f"count must be in 1..{height * width} for a {height}x{width} grid, got {count}")
    side = min(max(height, width), int(math.isqrt(2 * count)) + 2)
    cells = [(u, v) for u in range(min(height, side)) for v in range(min(width, side))]
    cells.sort(key=lambda uv: (uv[0] + uv[1], max(uv), uv[0]))
    if len(cells) < count:  # a very elongated grid: take every cell
        cells = sorted(((u, v) for u in range(height) for v in range(width)), key=lambda uv: (sum(uv), max(uv), uv[0]))
    return cells[:count]


def split_shape(noise_shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(channels, height, width) of a noise: the last two axes are the image, everything before is channels.

    A 1-D noise is one row. Channels are what a stream's slots or an image's colours are.
    """
    shape = tuple(int(s) for s in noise_shape)
    if not shape or any(s < 1 for s in shape):
        raise ValueError(f"noise shape must be non-empty with positive sizes, got {noise_shape}")
    if len(shape) == 1:
        return 1, 1, shape[0]
    return math.prod(shape[:-2]), shape[-2], shape[-1]


def dct_basis(noise_shape: tuple[int, ...], n_coefficients: int, *, channels: int | None = None) -> np.ndarray:
    """An orthonormal dim x p basis of the lowest 2-D DCT frequencies of each channel of the noise.

    ``n_coefficients`` frequencies per channel, for the first ``channels`` channels (all by
    default; a stream's first channel is its initial noise). Feed it to
    ``SubspaceCoupling(SobolRQMC(n), basis=...)`` to run RQMC on the coarse structure of
    a noise of any dimension, every noise still exactly N(0, I).

    >>> v = dct_basis((1, 8, 8), 4)
    >>> v.shape, bool(np.allclose(v.T @ v, np.eye(4)))
    ((64, 4), True)
    """
    c, h, w = split_shape(noise_shape)
    use = c if channels is None else int(channels)
    if not 1 <= use <= c:
        raise ValueError(f"channels must be in 1..{c} for noise shape {tuple(noise_shape)}, got {channels}")
    freqs = low_frequencies(h, w, n_coefficients)
    ch, cw = dct_matrix(h), dct_matrix(w)
    block = np.stack([np.outer(ch[u], cw[v]).reshape(-1) for u, v in freqs], axis=1)  # (h*w, p)
    basis = np.zeros((c * h * w, use * len(freqs)))
    for i in range(use):
        basis[i * h * w : (i + 1) * h * w, i * len(freqs) : (i + 1) * len(freqs)] = block
    return basis


class NoiseFeatures(ABC):
    """Features of a noise batch with mean exactly zero under z ~ N(0, I): free control variates.

    ``features(noise)`` maps (B, *noise_shape) to (B, p) float64 values; ``names(noise_shape)``
    says what each column is and ``odd(noise_shape)`` which columns change sign with the noise
    (f(-z) = -f(z)); the others must be even (f(-z) = f(z)). Subclasses implement all three.
    The parity matters because antithetic pairs cancel the odd part of a statistic: what is
    left for control variates there is the even part, which only even features can explain.
    """

    name: str = "features"

    @abstractmethod
    def __call__(self, noise: torch.Tensor) -> torch.Tensor: ...

    @abstractmethod
    def names(self, noise_shape: tuple[int, ...]) -> list[str]: ...

    @abstractmethod
    def odd(self, noise_shape: tuple[int, ...]) -> np.ndarray: ...

    def check_shape(self, noise_shape: tuple[int, ...]) -> None:
        """Raise if these features cannot be made for noises of this shape."""
        split_shape(noise_shape)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class DCTFeatures(NoiseFeatures):
    """Low-frequency DCT coefficients of the noise, their squares, and band energies.

    Parameters
    ----------
    n_coefficients : int
        How many of the lowest 2-D frequencies to use, per channel (4 by default: each one adds
        two coefficients to fit, and pilots are often a few dozen groups).
    linear : bool
        Include the coefficients c_j themselves (odd features; useful under MC and RQMC,
        exactly zero in antithetic group means, where they are dropped automatically).
    squares : bool
        Include (c_j^2 - 1) / sqrt(2): the even part that couplings cannot reach.
    bands : int, optional
        Number of octave bands of the whole spectrum whose total energy becomes one feature
        each: band b holds the frequencies with max(u, v) in [2^b, 2^(b+1)) (band 0 also the
        constant). Few features that summarise all frequencies: a statistic such as the image's
        standard deviation depends on how much energy the noise has at each scale. Default
        (None): every octave of the image (7 for 128 x 128); 0: none.
    channels : int, optional
        Only the first ``channels`` channels (a stream's initial noise is its first); all by default.

    Examples
    --------
    >>> f = DCTFeatures(4, bands=2)   # the default takes every octave
    >>> f.names((1, 8, 8))
    ['c0:0,0', 'c0:0,1', 'c0:1,0', 'c0:1,1', 'sq0:0,0', 'sq0:0,1', 'sq0:1,0', 'sq0:1,1', 'band0:0', 'band0:1']
    >>> x = f(torch.randn(20000, 1, 8, 8, generator=torch.Generator().manual_seed(0)))
    >>> x.shape, bool(x.mean(0).abs().max() < 0.05), bool((x.std(0) - 1).abs().max() < 0.05)
    (torch.Size([20000, 10]), True, True)
    """

    def __init__(
        self,
        n_coefficients: int = 4,
        *,
        linear: bool = True,
        squares: bool = True,
        bands: int | None = None,
        channels: int | None = None,
    ) -> None:
        if isinstance(n_coefficients, bool) or not isinstance(n_coefficients, (int, np.integer)) or n_coefficients < 0:
            raise ValueError(f"n_coefficients must be a non-negative int, got {n_coefficients!r}")
        if bands is not None and (isinstance(bands, bool) or not isinstance(bands, (int, np.integer)) or bands < 0):
            raise ValueError(f"bands must be a non-negative int or None (every octave), got {bands!r}")
        if channels is not None and (not isinstance(channels, (int, np.integer)) or channels < 1):
            raise ValueError(f"channels must be a positive int or None, got {channels!r}")
        if not ((linear or squares) and n_coefficients) and bands == 0:
            raise ValueError("these features are empty: ask for coefficients (linear or squares) or bands")
        self.n_coefficients, self.linear, self.squares = int(n_coefficients), bool(linear), bool(squares)
        self.bands, self.channels = bands, channels
        parts = [f"{self.n_coefficients} coefficients"] if self.linear and self.n_coefficients else []
        parts += [f"{self.n_coefficients} squares"] if self.squares and self.n_coefficients else []
        parts += [f"{'all' if bands is None else bands} octave energies"] if bands != 0 else []
        self.name = "dct(" + ", ".join(parts) + ")"

    def _layout(self, noise_shape: tuple[int, ...]) -> tuple[int, int, int, list[tuple[int, int]], int]:
        c, h, w = split_shape(noise_shape)
        use = c if self.channels is None else min(int(self.channels), c)
        n = min(self.n_coefficients, h * w) if self.linear or self.squares else 0
        freqs = low_frequencies(h, w, n) if n else []
        octaves = int(math.floor(math.log2(max(h, w) - 1))) + 1 if max(h, w) > 1 else 1
        bands = octaves if self.bands is None else self.bands
        if bands > octaves:
            raise ValueError(f"a {h}x{w} noise has {octaves} octave bands, {bands} were asked for")
        return use, h, w, freqs, bands

    def check_shape(self, noise_shape: tuple[int, ...]) -> None:
        self._layout(noise_shape)

    def names(self, noise_shape: tuple[int, ...]) -> list[str]:
        use, _, _, freqs, bands = self._layout(noise_shape)
        out = []
        for i in range(use):
            out += [f"c{i}:{u},{v}" for u, v in freqs] if self.linear else []
            out += [f"sq{i}:{u},{v}" for u, v in freqs] if self.squares else []
            out += [f"band{i}:{b}" for b in range(bands)]
        return out

    def odd(self, noise_shape: tuple[int, ...]) -> np.ndarray:
        return np.array([name.startswith("c") for name in self.names(noise_shape)])

    def __call__(self, noise: torch.Tensor) -> torch.Tensor:
        use, h, w, freqs, bands = self._layout(tuple(noise.shape[1:]))
        z = noise.detach().to(torch.float64).reshape(len(noise), -1, h, w)[:, :use]
        full = bands > 0
        rows = h if full else 1 + max((u for u, _ in freqs), default=0)
        cols = w if full else 1 + max((v for _, v in freqs), default=0)
        ch = torch.tensor(dct_matrix(h)[:rows], device=z.device)
        cw = torch.tensor(dct_matrix(w)[:cols], device=z.device)
        coef = ch @ z @ cw.T  # (B, use, rows, cols)
        low = coef[..., [u for u, _ in freqs], [v for _, v in freqs]] if freqs else coef.new_zeros(*coef.shape[:2], 0)
        if bands:  # one mask per octave, for every channel at once: (B, use, bands)
            level = np.maximum(np.arange(rows)[:, None], np.arange(cols)[None, :])
            octave = np.floor(np.log2(np.maximum(level, 1))).astype(int)
            masks = torch.from_numpy(np.stack([octave == b for b in range(bands)])).to(coef)
            sizes = masks.sum(dim=(1, 2))
            energies = (torch.einsum("ncrk,brk->ncb", coef**2, masks) - sizes) / torch.sqrt(2 * sizes)
        parts = []
        for i in range(use):
            parts += [low[:, i]] if self.linear else []
            parts += [(low[:, i] ** 2 - 1) / math.sqrt(2)] if self.squares else []
            parts += [energies[:, i]] if bands else []
        return torch.cat(parts, dim=1)
