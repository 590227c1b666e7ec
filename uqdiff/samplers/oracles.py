"""Generators whose output law is known in closed form, to check estimators and setups."""

from __future__ import annotations

import numpy as np
import torch
from scipy import stats


class LinearGenerator:
    """G(z) = a + J z: outputs are N(a, J J^T); for pairs (z, -z) every linear statistic cancels.

    >>> g = LinearGenerator(np.zeros(2), np.array([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]]))
    >>> g.noise_shape, g.output_cov.diagonal().tolist()
    ((3,), [1.0, 4.0])
    """

    def __init__(self, offset, jacobian=None) -> None:
        self.offset = np.asarray(offset, dtype=np.float64)
        out_dim = self.offset.size
        j = np.eye(out_dim) if jacobian is None else np.asarray(jacobian, dtype=np.float64)
        if j.ndim != 2 or j.shape[0] != out_dim:
            raise ValueError(f"jacobian must have shape ({out_dim}, noise_dim), got {j.shape}")
        self.jacobian = j
        self.noise_shape = (j.shape[1],)
        self.device = torch.device("cpu")
        self._a = torch.from_numpy(self.offset.reshape(-1))
        self._jt = torch.from_numpy(j.T.copy())

    @property
    def output_mean(self) -> np.ndarray:
        return self.offset

    @property
    def output_cov(self) -> np.ndarray:
        return self.jacobian @ self.jacobian.T

    def __call__(self, noise: torch.Tensor) -> torch.Tensor:
        z = noise.reshape(len(noise), -1).to(torch.float64)
        return (self._a + z @ self._jt).reshape(len(noise), *self.offset.shape)


class GaussianDDIM:
    """Deterministic DDIM (eta = 0) with the exact noise prediction for data N(m, diag(s^2)).

    The sampler runs the usual DDIM update, x_prev = sqrt(ab') x0_hat +
    sqrt(1 - ab') eps_hat, over ``num_steps`` evenly spaced steps of a linear
    beta schedule, starting from x_T = z. For Gaussian data eps_hat is affine
    in x_t, so the output is m + beta * (affine in z): each output coordinate
    is N(output_mean, output_std**2) exactly, computed by the same recursion on
    scalars. (The finite-step output law differs slightly from the data law.)

    >>> g = GaussianDDIM(np.full((1, 2, 2), 0.3), std=0.5, num_steps=50)
    >>> round(float(g.output_mean[0, 0, 0]), 4), round(float(g.output_std[0, 0, 0]), 4)
    (0.2991, 0.4719)
    """

    def __init__(
        self,
        mean,
        *,
        std=1.0,
        num_steps: int = 50,
        train_steps: int = 1000,
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
    ) -> None:
        self.mean = np.array(mean, dtype=np.float64)  # a writable copy (torch.from_numpy needs one)
        self.std = np.broadcast_to(np.asarray(std, dtype=np.float64), self.mean.shape).copy()
        if (self.std <= 0).any():
            raise ValueError("std must be positive")
        if not 1 <= num_steps <= train_steps:
            raise ValueError(f"num_steps must be in 1..{train_steps}, got {num_steps}")
        self.noise_shape = self.mean.shape
        self.device = torch.device("cpu")
        alphas_cumprod = np.cumprod(1.0 - np.linspace(beta_start, beta_end, train_steps))
        steps = np.linspace(train_steps - 1, 0, num_steps).round().astype(int)
        # (alpha-bar at t, alpha-bar at the next time); the last step lands on the data (alpha-bar = 1)
        self.schedule = [(alphas_cumprod[t], alphas_cumprod[s]) for t, s in zip(steps[:-1], steps[1:])]
        self.schedule.append((alphas_cumprod[steps[-1]], 1.0))
        self.output_mean, self.output_std = self._law()

    def _eps(self, x, ab, m, var):
        """Exact E[eps | x_t] for x0 ~ N(m, var): x_t ~ N(sqrt(ab) m, ab var + 1 - ab)."""
        return np.sqrt(1 - ab) * (x - np.sqrt(ab) * m) / (ab * var + 1 - ab)

    def _step(self, x, ab, ab_next, m, var):
        eps = self._eps(x, ab, m, var)
        x0 = (x - np.sqrt(1 - ab) * eps) / np.sqrt(ab)
        return np.sqrt(ab_next) * x0 + np.sqrt(1 - ab_next) * eps

    def _law(self) -> tuple[np.ndarray, np.ndarray]:
        # x = a + b z stays affine; push (a, a + b) through the same steps
        a, one = np.zeros_like(self.mean), np.ones_like(self.mean)
        var = self.std**2
        for ab, ab_next in self.schedule:
            a, one = self._step(a, ab, ab_next, self.mean, var), self._step(one, ab, ab_next, self.mean, var)
        return a, np.abs(one - a)

    def __call__(self, noise: torch.Tensor) -> torch.Tensor:
        m = torch.from_numpy(self.mean).to(noise.device)
        var = torch.from_numpy(self.std**2).to(noise.device)
        x = noise.to(torch.float64)
        for ab, ab_next in self.schedule:
            x = self._step(x, ab, ab_next, m, var)
        return x


class ClippedGaussianDDIM(GaussianDDIM):
    """GaussianDDIM followed by clipping to [-1, 1], like a real image: no longer linear in the noise.

    Each pixel is clip(X), X ~ N(output_mean, output_std^2), so its expectation
    is known in closed form (:meth:`expected_output`), and with it the exact
    answer for every statistic that is linear in the image (pixel mean,
    contrast, the pixel map).

    >>> g = ClippedGaussianDDIM(np.zeros((1, 1, 1)), std=0.5, num_steps=50)
    >>> round(float(g.expected_output()[0, 0, 0]), 6)   # symmetric law: clipping keeps the mean 0
    0.0
    """

    value_range = (-1.0, 1.0)

    def __call__(self, noise: torch.Tensor) -> torch.Tensor:
        return super().__call__(noise).clamp(-1.0, 1.0)

    def expected_output(self) -> np.ndarray:
        """E[clip(X)] per pixel, X ~ N(output_mean, output_std^2)."""
        mu, sd = self.output_mean, self.output_std
        a, b = (-1 - mu) / sd, (1 - mu) / sd
        inside = mu * (stats.norm.cdf(b) - stats.norm.cdf(a)) + sd * (stats.norm.pdf(a) - stats.norm.pdf(b))
        return inside - stats.norm.cdf(a) + stats.norm.sf(b)

    def true_pixel_mean(self) -> float:
        """E[(clip(X) + 1) / 2] averaged over pixels: the pixel mean on the [0, 1] scale."""
        return float(((self.expected_output() + 1) / 2).mean())


def landscape_oracle(size: int = 32, *, std: float = 0.5, num_steps: int = 50) -> ClippedGaussianDDIM:
    """A clipped Gaussian DDIM on 1 x size x size images, brighter at the bottom like a landscape.

    Cheap and with exact answers for linear statistics: the CLI's ``oracle``
    model and the demo's ``--model oracle``.
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 2:
        raise ValueError(f"size must be an integer >= 2, got {size!r}")
    rows = np.linspace(-0.8, 0.6, size)[:, None]
    mean = np.broadcast_to(rows + 0.2 * np.sin(np.linspace(0, 6, size))[None, :], (1, size, size))
    return ClippedGaussianDDIM(mean, std=std, num_steps=num_steps)
