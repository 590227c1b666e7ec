"""Gallery statistics: one value per gallery of K images, estimated with intervals.

A coupling can make a gallery of K images from one prompt more diverse
(repulsive correlation -1/(K-1)) while each image keeps its usual law. A
*gallery statistic* measures that: it takes whole groups, B = G*K images
arranged gallery after gallery, and returns one value per gallery (shape (G,)).

Estimating E[gallery statistic] needs no new estimator. Under a design of
group size K the group *is* the gallery, and groups are iid, so the gallery
values are iid and their mean with a t interval is exactly what
:func:`uqdiff.estimate` computes from group means. :class:`PerImage` makes a
gallery statistic look like an ordinary per-image one by giving every image
of a gallery the gallery's value v: the group mean is then exactly v and the
within-group sum of squares exactly 0, so :func:`uqdiff.estimate` returns the
mean of the gallery values with the interval from their spread. This needs
every generator batch to hold whole galleries, which :func:`uqdiff.estimate`
guarantees when ``batch_size >= K`` (a batch holds ``batch_size // K`` whole
groups); :class:`PerImage` raises if a batch is not a whole number of galleries.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch

from uqdiff._util import callable_name
from uqdiff.statistics.base import ArrayLike, Statistic, as_tensor
from uqdiff.statistics.pixel import PixelMap
from uqdiff.statistics.reconstruction import structural_similarity

FeatureMap = Callable[[torch.Tensor], torch.Tensor]


def flatten(images: torch.Tensor) -> torch.Tensor:
    """The default feature map: each image's pixels as one vector, (B, ...) -> (B, D)."""
    return images.reshape(len(images), -1)


class GalleryStatistic(ABC):
    """A batch of G galleries of K images, (G*K, ...) -> one value per gallery, shape (G,).

    ``gallery_size`` (K) is a keyword argument of the call so one statistic
    serves every K. Returns the array type it got (numpy in -> numpy out).
    """

    name: ClassVar[str]

    def __call__(self, images: ArrayLike, *, gallery_size: int) -> ArrayLike:
        x = as_tensor(images)
        k = _gallery_size(gallery_size)
        if x.ndim < 2 or len(x) % k:
            raise ValueError(
                f"images must be a batch of whole galleries: got shape {tuple(x.shape)} for gallery_size {k}"
            )
        out = self._compute(x.reshape(len(x) // k, k, *x.shape[1:]))
        return out.detach().cpu().numpy() if isinstance(images, np.ndarray) else out

    @abstractmethod
    def _compute(self, galleries: torch.Tensor) -> torch.Tensor:
        """Values of shape (G,) for ``galleries`` of shape (G, K, ...)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class _PixelGalleryStatistic(GalleryStatistic):
    """Pairwise statistics on [0, 1]-scaled pixels, as the per-image statistics use."""

    def __init__(self, *, value_range: tuple[float, float] = (-1.0, 1.0)) -> None:
        self._scale = PixelMap(value_range=value_range)  # validates the range; its to_unit maps to [0, 1]

    def pair_squared_distances(self, galleries: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Per-pixel mean squared distance of every pair of a gallery over the pixels in ``mask`` (all by default).

        Shape (G, K(K-1)/2).
        """
        u = self._scale.to_unit(galleries)
        if mask is not None:
            try:
                mask = mask.to(u.device).expand(u.shape[2:])
            except RuntimeError:
                raise ValueError(
                    f"mask of shape {tuple(mask.shape)} does not fit images of shape {tuple(u.shape[2:])}"
                ) from None
            u = u[:, :, mask]
        u = u.reshape(*galleries.shape[:2], -1)
        i, j = _pairs(galleries.shape[1], u.device)
        return (u[:, i] - u[:, j]).square().mean(dim=2)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, value_range={self._scale.value_range})"


class MeanPairwiseL2(_PixelGalleryStatistic):
    """Per-pixel mean squared distance between two images, averaged over the K(K-1)/2 pairs.

    On [0, 1]-scaled pixels (declare ``value_range``). For a linear generator and
    noises of correlation c it has expectation 2 (1 - c) x mean pixel variance.
    ``mask`` (boolean, broadcastable to one image's shape) restricts the mean
    to the pixels where it is True, e.g. the background of a fixed object.

    >>> import numpy as np
    >>> gallery = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]])   # pairs: 1/2, 1, 1/2
    >>> MeanPairwiseL2(value_range=(0, 1))(gallery, gallery_size=3)
    array([0.66666667])
    >>> MeanPairwiseL2(value_range=(0, 1), mask=np.array([False, True]))(gallery, gallery_size=3)
    array([0.66666667])
    """

    name = "pairwise_l2"

    def __init__(self, *, value_range: tuple[float, float] = (-1.0, 1.0), mask: ArrayLike | None = None) -> None:
        super().__init__(value_range=value_range)
        self.mask = None
        if mask is not None:
            m = mask if isinstance(mask, torch.Tensor) else torch.from_numpy(np.asarray(mask))
            if m.dtype != torch.bool or not bool(m.any()):
                raise ValueError(f"mask must be a boolean array selecting at least one pixel, got dtype {m.dtype}")
            self.mask = m

    def _compute(self, galleries: torch.Tensor) -> torch.Tensor:
        return self.pair_squared_distances(galleries, self.mask).mean(dim=1)


class MeanPairwiseDistance(_PixelGalleryStatistic):
    """Root-mean-square pixel distance between two images, averaged over the K(K-1)/2 pairs.

    The square root makes it the objective to *learn* a diverse coupling with.
    For a linear generator, E[pairwise L2] is linear in the correlations c_ij,
    so every coupling with rows summing to zero maximizes it, however unevenly
    it spreads the c_ij; the distance grows like sqrt(1 - c_ij), strictly
    concave, so its maximum is the one coupling with every c_ij = -1/(K-1).

    >>> import numpy as np
    >>> gallery = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]])   # pairs: sqrt(1/2), 1, sqrt(1/2)
    >>> MeanPairwiseDistance(value_range=(0, 1))(gallery, gallery_size=3).round(4)
    array([0.8047])
    """

    name = "pairwise_distance"

    def _compute(self, galleries: torch.Tensor) -> torch.Tensor:
        # the tiny floor keeps the gradient finite when two images coincide; it changes no value above 1e-24
        return self.pair_squared_distances(galleries).clamp(min=1e-24).sqrt().mean(dim=1)


class MeanPairwiseSSIM(_PixelGalleryStatistic):
    """SSIM (as :class:`uqdiff.statistics.SSIM`) of every pair of a gallery, averaged over pairs.

    Images are (C, H, W) or (H, W), at least 11x11. Lower means more diverse.
    """

    name = "pairwise_ssim"

    def _compute(self, galleries: torch.Tensor) -> torch.Tensor:
        g, k = galleries.shape[:2]
        x = Statistic._as_bchw(galleries.reshape(g * k, *galleries.shape[2:]))
        u = self._scale.to_unit(x).reshape(g, k, *x.shape[1:])
        i, j = _pairs(k, u.device)
        s = structural_similarity(u[:, i].reshape(-1, *x.shape[1:]), u[:, j].reshape(-1, *x.shape[1:]))
        return s.reshape(g, len(i)).mean(dim=1)


class _BrightnessGalleryStatistic(_PixelGalleryStatistic):
    """Statistics of a brightness-clustered gallery (paper 000, appendix B.2): first half vs second half.

    b_i is the mean over pixels of the value channel on the [0, 1] scale: for
    RGB images (G*K, 3, H, W) the maximum over R, G, B (HSV value, as the
    paper); any other shape is grey, every entry a pixel. The
    gallery is meant to split into two clusters, images 1..K/2 and K/2+1..K
    (for K = 4: pairs (1, 2) and (3, 4)), so K must be even.
    """

    def brightness(self, galleries: torch.Tensor) -> torch.Tensor:
        """b_i of every image, shape (G, K)."""
        g, k = galleries.shape[:2]
        if k % 2:
            raise ValueError(
                f"a brightness-clustered gallery splits into two halves; gallery_size must be even, got {k}"
            )
        u = self._scale.to_unit(galleries)
        if u.ndim == 5 and u.shape[2] == 3:
            u = u.amax(dim=2)
        return u.reshape(g, k, -1).mean(dim=2)

    @staticmethod
    def gap(b: torch.Tensor) -> torch.Tensor:
        """|mean of the first half - mean of the second half|, shape (G,)."""
        h = b.shape[1] // 2
        return (b[:, :h].mean(dim=1) - b[:, h:].mean(dim=1)).abs()


class BrightnessGap(_BrightnessGalleryStatistic):
    """Pair gap |(b1 + b2)/2 - (b3 + b4)/2| (table 7): how far apart the two clusters' brightness is.

    >>> import numpy as np
    >>> gallery = np.array([[0.9], [0.7], [0.2], [0.0]])   # one gallery of 4 one-pixel images in [0, 1]
    >>> BrightnessGap(value_range=(0, 1))(gallery.reshape(4, 1, 1), gallery_size=4).round(4)
    array([0.7])
    """

    name = "brightness_gap"

    def _compute(self, galleries: torch.Tensor) -> torch.Tensor:
        return self.gap(self.brightness(galleries))


class BrightnessContrast(_BrightnessGalleryStatistic):
    """Eq. 4: gap + lambda (|b1 - b2| + |b3 - b4|)/2; the within-cluster term rewards non-collapsed pairs.

    For K > 4 the within-cluster term is the mean of the two halves' ranges
    (max - min), which for K = 4 is exactly |b1 - b2| and |b3 - b4|.

    >>> import numpy as np
    >>> gallery = np.array([0.9, 0.7, 0.2, 0.0]).reshape(4, 1, 1)
    >>> BrightnessContrast(value_range=(0, 1))(gallery, gallery_size=4).round(4)   # 0.7 + 0.35 * 0.2
    array([0.77])
    """

    name = "brightness_contrast"

    def __init__(self, *, lam: float = 0.35, value_range: tuple[float, float] = (-1.0, 1.0)) -> None:
        super().__init__(value_range=value_range)
        if not (math.isfinite(lam) and lam >= 0):
            raise ValueError(f"lam must be a finite number >= 0, got {lam}")
        self.lam = float(lam)

    def _compute(self, galleries: torch.Tensor) -> torch.Tensor:
        b = self.brightness(galleries)
        h = b.shape[1] // 2
        within = sum(part.amax(dim=1) - part.amin(dim=1) for part in (b[:, :h], b[:, h:])) / 2
        return self.gap(b) + self.lam * within


class BrightnessMargin(_BrightnessGalleryStatistic):
    """Sorted margin b_(K/2+1) - b_(K/2) (for K = 4: b_(3) - b_(2)): the gap between the darker and brighter halves.

    >>> import numpy as np
    >>> gallery = np.array([0.9, 0.2, 0.7, 0.0]).reshape(4, 1, 1)   # sorted 0, 0.2, 0.7, 0.9
    >>> BrightnessMargin(value_range=(0, 1))(gallery, gallery_size=4).round(4)
    array([0.5])
    """

    name = "brightness_margin"

    def _compute(self, galleries: torch.Tensor) -> torch.Tensor:
        b = self.brightness(galleries).sort(dim=1).values
        h = b.shape[1] // 2
        return b[:, h] - b[:, h - 1]


class _FeatureGalleryStatistic(GalleryStatistic):
    """Statistics of the cosine-similarity matrix of the gallery's features."""

    def __init__(self, *, features: FeatureMap = flatten) -> None:
        if not callable(features):
            raise TypeError(f"features must be a callable (B, ...) -> (B, D), got {type(features).__name__}")
        self.features = features

    def similarity(self, galleries: torch.Tensor) -> torch.Tensor:
        """Cosine similarities of the features inside each gallery, shape (G, K, K)."""
        g, k = galleries.shape[:2]
        f = as_tensor(self.features(galleries.reshape(g * k, *galleries.shape[2:])))
        if f.ndim != 2 or len(f) != g * k:
            raise ValueError(f"features must return shape (B, D) for B = {g * k} images, got {tuple(f.shape)}")
        norms = f.norm(dim=1, keepdim=True)
        if bool((norms == 0).any()):
            raise ValueError("an image has an all-zero feature vector; its cosine similarity is undefined")
        f = (f / norms).reshape(g, k, -1)
        return f @ f.transpose(1, 2)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, features={getattr(self.features, '__name__', self.features)!r})"
        )


class MeanPairwiseCosine(_FeatureGalleryStatistic):
    """MSS: mean cosine similarity of the features over the K(K-1)/2 pairs. Lower means more diverse.

    >>> import numpy as np
    >>> MeanPairwiseCosine()(np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]), gallery_size=3).round(4)
    array([0.4714])
    """

    name = "pairwise_cosine"

    def _compute(self, galleries: torch.Tensor) -> torch.Tensor:
        sim = self.similarity(galleries)
        i, j = _pairs(galleries.shape[1], sim.device)
        return sim[:, i, j].mean(dim=1)


class Vendi(_FeatureGalleryStatistic):
    """Vendi score exp(-sum_l lambda_l log lambda_l), lambda: eigenvalues of S / K, S the cosine similarities.

    An effective number of distinct items: 1 for K identical images, K for K
    images with orthogonal features. It is at most the rank of the features, and
    the cosine kernel counts anti-aligned features as related: K-antithetic noise
    sums to zero, so centered pixel features of a linear generator have rank
    K - 1 and Vendi at most K - 1, below iid galleries, although their pairwise
    L2 is higher. Pick the feature map with that in mind.

    >>> import numpy as np
    >>> Vendi()(np.eye(3), gallery_size=3).round(6), Vendi()(np.ones((3, 2)), gallery_size=3).round(6)
    (array([3.]), array([1.]))
    """

    name = "vendi"

    def _compute(self, galleries: torch.Tensor) -> torch.Tensor:
        sim = self.similarity(galleries).to(torch.float64)
        lam = torch.linalg.eigvalsh(sim / galleries.shape[1]).clamp(min=0.0)
        entropy = -torch.where(lam > 0, lam * torch.log(lam), torch.zeros_like(lam)).sum(dim=1)
        return torch.exp(entropy)


class GalleryMean(GalleryStatistic):
    """The average of a per-image statistic over each gallery: a single-image statistic, read gallery-wise.

    Its expectation is E[S(G(z))] under *every* design whose noises are each
    N(0, I) (proposition 3.2 of the coupling paper: a coupling changes how the
    images of a gallery relate, not the law of any one image). Comparing it
    across designs with :func:`compare_galleries` tests that claim: the
    differences should be zero within their intervals.

    >>> import numpy as np
    >>> GalleryMean(lambda x: x.mean(axis=1), name="mean")(np.array([[0.0, 1.0], [1.0, 1.0]]), gallery_size=2)
    array([0.75])
    """

    def __init__(self, statistic: Callable, *, name: str | None = None) -> None:
        if not callable(statistic):
            raise TypeError(f"statistic must be a per-image callable (B, ...) -> (B,), got {type(statistic).__name__}")
        self.statistic = statistic
        self.name = name or callable_name(statistic, default="statistic")

    def _compute(self, galleries: torch.Tensor) -> torch.Tensor:
        g, k = galleries.shape[:2]
        v = as_tensor(self.statistic(galleries.reshape(g * k, *galleries.shape[2:])))
        if v.shape != (g * k,):
            raise ValueError(f"statistic {self.name!r} returned shape {tuple(v.shape)}; expected ({g * k},)")
        return v.reshape(g, k).to(torch.float64).mean(dim=1)


class PerImage:
    """A gallery statistic as a per-image statistic: every image gets its gallery's value.

    The group mean is then the gallery value and the within-group sum of
    squares 0, so :func:`uqdiff.estimate` under a design of group size
    ``gallery_size`` estimates E[gallery statistic] from iid gallery values.
    """

    def __init__(self, statistic: GalleryStatistic | Callable, *, gallery_size: int, name: str | None = None) -> None:
        self.statistic = statistic
        self.gallery_size = _gallery_size(gallery_size)
        self.name = name or callable_name(statistic, default="statistic")

    def __call__(self, images: ArrayLike) -> np.ndarray:
        k = self.gallery_size
        if len(images) % k:
            raise ValueError(
                f"a batch of {len(images)} images is not a whole number of galleries of {k}; use batch_size >= {k}"
            )
        v = self.statistic(images, gallery_size=k)
        v = v.detach().to("cpu", torch.float64).numpy() if isinstance(v, torch.Tensor) else np.asarray(v, np.float64)
        if v.shape != (len(images) // k,):
            raise ValueError(
                f"gallery statistic {self.name!r} returned shape {v.shape}; expected ({len(images) // k},)"
            )
        return np.repeat(v, k)


def _pairs(k: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    i, j = torch.triu_indices(k, k, offset=1, device=device)
    return i, j


def _gallery_size(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 2:
        raise ValueError(f"gallery_size must be an integer >= 2, got {k!r}")
    return int(k)
