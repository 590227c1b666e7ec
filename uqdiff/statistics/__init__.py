"""Image statistics: map a batch of images to one value (or map) per image.

Every :class:`Statistic` accepts torch or numpy images of shape (B, C, H, W)
or (B, H, W), declares the pixel ``value_range`` of its inputs, and computes
on the image mapped to [0, 1].  :data:`STATISTICS` maps registry names to
classes; :func:`get_statistic` builds one by name.

>>> from uqdiff.statistics import get_statistic
>>> get_statistic("mean", value_range=(0, 1), scale=255)
PixelMean(name='mean', value_range=(0.0, 1.0), scale=255.0)
"""

from __future__ import annotations

from typing import Any

from .base import ArrayLike, Statistic, as_tensor
from .diagnostics import (
    MeanSD,
    PairCorrelations,
    affine_antisymmetry_score,
    pair_correlation,
    pn_rr_correlations,
)
from .gallery import (
    BrightnessContrast,
    BrightnessGap,
    BrightnessMargin,
    GalleryMean,
    GalleryStatistic,
    MeanPairwiseCosine,
    MeanPairwiseDistance,
    MeanPairwiseL2,
    MeanPairwiseSSIM,
    PerImage,
    Vendi,
)
from .pixel import Brightness, Contrast, PixelMap, PixelMean, PixelStd, VerticalCentroid
from .reconstruction import L1, PSNR, SSIM, ReconstructionStatistic, gaussian_window, structural_similarity
from .terrain import MaxSlope, MeanSlope

#: Registry: statistic name -> class.
STATISTICS: dict[str, type[Statistic]] = {
    cls.name: cls
    for cls in (
        PixelMean,
        PixelStd,
        Brightness,
        Contrast,
        VerticalCentroid,
        PixelMap,
        MeanSlope,
        MaxSlope,
        L1,
        PSNR,
        SSIM,
    )
}


def get_statistic(name: str, **kwargs: Any) -> Statistic:
    """Instantiate the statistic registered as ``name`` with ``kwargs``.

    Reconstruction statistics ("l1", "psnr", "ssim") need ``reference=...``.
    An unknown name raises ValueError listing the allowed names.
    """
    try:
        cls = STATISTICS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown statistic {name!r}; allowed names: {', '.join(sorted(STATISTICS))}") from None
    return cls(**kwargs)


__all__ = [
    "ArrayLike",
    "Statistic",
    "as_tensor",
    "ReconstructionStatistic",
    "PixelMean",
    "PixelStd",
    "Brightness",
    "Contrast",
    "VerticalCentroid",
    "PixelMap",
    "MeanSlope",
    "MaxSlope",
    "L1",
    "PSNR",
    "SSIM",
    "gaussian_window",
    "structural_similarity",
    "pair_correlation",
    "pn_rr_correlations",
    "PairCorrelations",
    "MeanSD",
    "affine_antisymmetry_score",
    "GalleryStatistic",
    "GalleryMean",
    "PerImage",
    "MeanPairwiseL2",
    "MeanPairwiseDistance",
    "MeanPairwiseSSIM",
    "MeanPairwiseCosine",
    "Vendi",
    "BrightnessGap",
    "BrightnessContrast",
    "BrightnessMargin",
    "STATISTICS",
    "get_statistic",
]
