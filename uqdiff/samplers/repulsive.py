"""Repulsive score distillation (RSD) for inverse problems in pixel space: RED-diff with repulsion.

Zilberstein et al., *Repulsive Score Distillation for Diverse Sampling of Diffusion Models*
(paper 002 in ``shared/papers``). RED-diff (Mardani et al., 2023) fits each reconstruction by
optimisation instead of a reverse diffusion: the particle ``x`` is noised along the diffusion
trajectory, ``x_t = sqrt(alpha_bar_t) x + sqrt(1 - alpha_bar_t) eps``, from the noisiest step
to the cleanest, and the denoiser's error ``eps_theta(x_t) - eps`` acts as a regulariser beside
the measurement term. RSD runs K such particles for one measurement and adds a repulsion
between them, the gradient of a kernel density estimate of the particles (eq. 3, 8, 15):

    g_i = w_obs grad_x ||y - A(x_i)||^2 / (2 m)
          + lambda_t / n * (eps_theta(x_t^i) - eps^i + gamma sigma_t grad_{x_t^i} log sum_j k(x_t^i, x_t^j)),

    k(a, b) = exp(-||phi(a) - phi(b)||^2 / h),   h = med^2 / log K,

with lambda_t = lam sigma_t / alpha_t (the paper's lambda / SNR_t, section 5.1.2, after RED-diff),
sigma_t = sqrt(1 - alpha_bar_t), alpha_t = sqrt(alpha_bar_t), med the median distance between the
K particles' features phi (section 6.1, after SVGD), m and n the sizes of y and x. Each particle
takes one Adam step along g_i per step of the prior's schedule, betas (0.9, 0.99) as in the
paper's appendix D.2. The repulsion enters the descent direction with a plus sign: descending
along grad log sum_j k moves a particle away from the others, the force of eq. 3 (eq. 15 prints
the bracket with a minus sign, the authors' code adds it as here).

The K particles of one measurement interact, so they are **one group** of a noise design: the
sampler declares ``particles = K``, takes batches of whole particle sets (K consecutive rows), and
is run with a design whose groups are whole sets of K independent noises (``Equicorrelated(K, 0.0)``,
or ``AntitheticSets(K)``: a set and its negation). Groups stay independent, so every interval stays
valid; a coupling inside a set (``KAntithetic(K)``, Sobol' points) would change the solver's law
and is refused.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from uqdiff.inverse.measurement import Measurement
from uqdiff.inverse.priors import DiffusionPrior
from uqdiff.samplers.posterior import PosteriorSampler, implied_eps

#: images (B, C, H, W) on the prior's image scale -> features (B, ...), differentiable by autograd.
FeatureMap = Callable[[torch.Tensor], torch.Tensor]


def rbf_bandwidth(features: torch.Tensor) -> torch.Tensor:
    """The median-distance bandwidth h = med^2 / log K of each particle set.

    Parameters
    ----------
    features : torch.Tensor
        (G, K, D): G sets of K particles' feature vectors, K >= 2.

    Returns
    -------
    torch.Tensor
        (G,): med^2 / log K, med the median of the K (K - 1) / 2 pairwise Euclidean distances of a
        set (the mean of the two middle ones when their number is even). The paper (section 6.1)
        takes this rule from SVGD: a particle at the median distance from another gets kernel
        weight exp(-log K) = 1/K from it, so a particle's own weight (1) and the K - 1 others'
        together are of one order, whatever the scale of the features: the repulsion neither
        vanishes (h too small) nor flattens out (h too large). A set whose particles coincide
        gets h = 1e-12 instead of 0: its repulsion is then zero, not NaN.

    Examples
    --------
    >>> f = torch.tensor([[[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]]])   # distances 3, 4, 5
    >>> torch.allclose(rbf_bandwidth(f), torch.tensor([16 / math.log(3)]))
    True
    """
    if features.ndim != 3 or features.shape[1] < 2:
        raise ValueError(f"features must have shape (G, K, D) with K >= 2, got {tuple(features.shape)}")
    k = features.shape[1]
    i, j = torch.triu_indices(k, k, offset=1, device=features.device)
    dist = (features[:, i] - features[:, j]).norm(dim=-1)
    med = dist.double().quantile(0.5, dim=1).to(dist.dtype)
    return (med**2 / math.log(k)).clamp_min(1e-12)


def repulsion_gradient(x: torch.Tensor, particles: int, features: FeatureMap | None = None) -> torch.Tensor:
    """grad_{x_i} log sum_j k(x_i, x_j) for each particle, the other particles held fixed.

    Parameters
    ----------
    x : torch.Tensor
        (G * K, ...): G sets of K particles, set after set.
    particles : int
        K, at least 2.
    features : callable, optional
        phi: (G * K, ...) -> (G * K, ...) features, differentiable; default the identity.

    Returns
    -------
    torch.Tensor
        Same shape as ``x``. With the RBF kernel on features and the bandwidth of
        :func:`rbf_bandwidth` (held constant), it is -2/h sum_j w_ij J_i^T (phi_i - phi_j) with
        w_ij = k_ij / sum_l k_il: it points towards the particles a particle is most similar to,
        so a step *against* it repels.
    """
    k = int(particles)
    if k < 2 or len(x) % k:
        raise ValueError(f"x must hold whole sets of particles >= 2, got {len(x)} rows for particles={k}")
    with torch.enable_grad():
        leaf = x.detach().requires_grad_(True)
        phi = leaf if features is None else features(leaf)
        if not isinstance(phi, torch.Tensor) or len(phi) != len(x):
            raise ValueError(
                f"features must return a tensor with one row per image ({len(x)}), got "
                f"{tuple(phi.shape) if isinstance(phi, torch.Tensor) else type(phi).__name__}"
            )
        phi = phi.reshape(len(x) // k, k, -1)
        fixed = phi.detach()
        h = rbf_bandwidth(fixed)
        # d2[g, i, j] = ||phi_i - sg(phi_j)||^2: only the first argument carries the gradient
        d2 = ((phi[:, :, None, :] - fixed[:, None, :, :]) ** 2).sum(-1)
        total = torch.logsumexp(-d2 / h[:, None, None], dim=2).sum()
        (grad,) = torch.autograd.grad(total, leaf)
    return grad


class RSD(PosteriorSampler):
    """Repulsive score distillation: K RED-diff particles per measurement that repel each other.

    Noise (B, 1 + N, C, H, W) -> reconstructions (B, *image_shape), B a multiple of K. Slot 0 of
    each noise is the particle's random start (the paper starts from noise, appendix D.2), slot
    1 + i the eps that noises it at step i; every Gaussian the solver uses is in the noise, so a
    design couples whole optimisation paths, as it couples DPS's trajectories. The update rule is
    in the module docstring. Unlike DPS it never back-propagates through the denoiser (RED-diff's
    "stop gradient"), so black-box priors work; only the feature map is differentiated.

    Parameters
    ----------
    prior : DiffusionPrior
        The denoiser and its schedule; one optimisation step per schedule step, noisiest first.
    measurement : Measurement
        The observation all particles explain.
    particles : int
        K, the particles of one measurement, moved together: the group size of the design to run
        it with (``uqdiff.Equicorrelated(K, 0.0)`` or ``uqdiff.AntitheticSets(K)``). K = 1 is plain
        RED-diff (then gamma must be 0).
    gamma : float
        Repulsion weight, >= 0, required: no value suits every feature map and task. 0 is the
        non-repulsive baseline, K independent RED-diff runs; larger values trade fidelity for
        diversity (the paper's figure 3). On Fashion-MNIST inpainting with the classifier's features
        (``benchmarks/repulsive.py``: 8 test images, 50 steps, K = 4) gamma = 3 costs 1.1 dB of PSNR
        for a diversity gain too small to resolve (+6 %), gamma = 10 costs 4.0 dB for 2.5x the
        diversity (mean pairwise squared distance of a set).
    lam : float
        Weight of the denoiser regulariser, lambda_t = lam sigma_t / alpha_t (RED-diff's 0.25).
    lr : float
        Adam's step size (RED-diff's 0.1 for images on [-1, 1]).
    obs_weight : float
        Weight of the measurement term.
    features : callable, optional
        The feature map phi of the kernel: images (B, C, H, W) on the prior's image scale (the
        crop of the noisy particles x_t the measurement sees) -> (B, ...) features, differentiable
        by torch autograd. Default: the pixels themselves. The paper uses DINO features; a
        classifier's features (``uqdiff.models.fashion.classifier_features``) repel in a space
        where distance means a different garment rather than different pixels.
    betas : (float, float)
        Adam's moment decays.

    Attributes
    ----------
    particles : int
        K: the engine refuses a design whose groups are not whole sets of K noises.
    repeat_check : bool
        False. The repeat check runs a noise alone and compares it with its output inside a batch;
        here a particle's output depends on its K - 1 companions by design, so that comparison
        would refuse the sampler for what it is meant to do (and a batch of one is not a particle
        set). Every draw still comes from the design's noise, and the K companions are the rest of
        its group, so an output is a function of its group's noise: what makes results
        independent of batch size, sharding and resuming.

    Examples
    --------
    >>> from uqdiff.inverse import VEDenoiserPrior, measure
    >>> prior = VEDenoiserPrior(lambda x, s: x / (1 + s**2), (1, 4, 4), num_steps=8)
    >>> m = measure(torch.zeros(1, 4, 4), "inpainting", seed=0)
    >>> rsd = RSD(prior, m, particles=4, gamma=1.0)
    >>> rsd(torch.randn(8, *rsd.noise_shape)).shape
    torch.Size([8, 1, 4, 4])
    """

    eta = 1.0  # one noise slot per step: the eps of the step
    repeat_check = False

    def __init__(
        self,
        prior: DiffusionPrior,
        measurement: Measurement,
        *,
        particles: int = 4,
        gamma: float,
        lam: float = 0.25,
        lr: float = 0.1,
        obs_weight: float = 1.0,
        features: FeatureMap | None = None,
        betas: tuple[float, float] = (0.9, 0.99),
    ) -> None:
        super().__init__(prior, measurement)
        if isinstance(particles, bool) or not isinstance(particles, int) or particles < 1:
            raise ValueError(f"particles must be an int >= 1, got {particles!r}")
        for name, value in (("gamma", gamma), ("lam", lam), ("obs_weight", obs_weight)):
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not (math.isfinite(value) and value >= 0)
            ):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not (math.isfinite(lr) and lr > 0):
            raise ValueError(f"lr must be a finite number > 0, got {lr!r}")
        if gamma > 0 and particles < 2:
            raise ValueError(
                f"gamma={gamma} repels particles from each other, which needs particles >= 2 (got {particles}); "
                "use gamma=0 for plain RED-diff"
            )
        if features is not None and not callable(features):
            raise TypeError(f"features must be a callable images -> features, got {type(features).__name__}")
        b1, b2 = (float(b) for b in betas)
        if not (0 <= b1 < 1 and 0 <= b2 < 1):
            raise ValueError(f"betas must be two numbers in [0, 1), got {betas!r}")
        self.particles, self.gamma, self.lam, self.lr = particles, float(gamma), float(lam), float(lr)
        self.obs_weight, self.features, self.betas = float(obs_weight), features, (b1, b2)

    def __call__(self, noise: torch.Tensor) -> torch.Tensor:
        if tuple(noise.shape[1:]) != self.noise_shape:
            raise ValueError(
                f"noise must have shape (B, {', '.join(map(str, self.noise_shape))}), got {tuple(noise.shape)}"
            )
        k = self.particles
        if len(noise) % k:
            raise ValueError(
                f"RSD moves the {k} particles of a measurement together, so a batch must hold whole sets of {k} "
                f"consecutive noises; got a batch of {len(noise)}. Run it with a design of group size {k} (e.g. "
                f"uqdiff.Equicorrelated({k}, 0.0)) and a batch_size that is a multiple of {k}"
            )
        dtype = torch.promote_types(noise.dtype, torch.float32) if noise.dtype.is_floating_point else torch.float32
        noise = noise.to(self.device, dtype)
        b1, b2 = self.betas
        x = noise[:, 0].clone()
        m1, m2 = torch.zeros_like(x), torch.zeros_like(x)
        y = self.y.to(x)
        n = math.prod(x.shape[1:])
        for i in range(self.prior.num_steps):
            ab = float(self.prior.alphas_cumprod[i])
            grad = self.gradient(x, noise[:, 1 + i], i, ab, y, n)
            m1 = b1 * m1 + (1 - b1) * grad
            m2 = b2 * m2 + (1 - b2) * grad * grad
            step = (m1 / (1 - b1 ** (i + 1))) / ((m2 / (1 - b2 ** (i + 1))).sqrt() + 1e-8)
            x = x - self.lr * step
        return self.prior.image(x).detach()

    def gradient(self, x: torch.Tensor, eps: torch.Tensor, i: int, ab: float, y: torch.Tensor, n: int) -> torch.Tensor:
        """The descent direction g_i of every particle at step ``i`` (see the module docstring)."""
        sigma = math.sqrt(1 - ab)
        xt = math.sqrt(ab) * x + sigma * eps
        with torch.no_grad():
            reg = implied_eps(xt, self.prior.x0(xt, i), ab) - eps
        if self.gamma > 0:
            features = None if self.features is None else lambda v: self.features(self.prior.image(v))
            reg = reg + self.gamma * sigma * repulsion_gradient(xt, self.particles, features)
        residual = self.operator(self.prior.image(x)) - y
        m = math.prod(residual.shape[1:])
        obs = self.prior.image_adjoint(self.operator.transpose(residual)) / m
        return self.obs_weight * obs + (self.lam * sigma / math.sqrt(ab) / n) * reg

    def __repr__(self) -> str:
        return (
            f"RSD(particles={self.particles}, gamma={self.gamma}, lam={self.lam}, lr={self.lr}, "
            f"steps={self.prior.num_steps}, operator={self.operator!r})"
        )
