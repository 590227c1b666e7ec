"""Noise designs: how the noises of a group depend on each other.

Designs can be picked by name (``get_design("antithetic")``) so configs and
the command line can name them.
"""

from __future__ import annotations

from uqdiff.designs.base import NoiseDesign
from uqdiff.designs.gaussian import IID, Antithetic, Equicorrelated, GaussianCoupling, KAntithetic
from uqdiff.designs.sobol import SobolRQMC
from uqdiff.designs.subspace import SubspaceCoupling, on_leading_coordinates

DESIGNS: dict[str, type[NoiseDesign]] = {
    "mc": IID,
    "iid": IID,
    "antithetic": Antithetic,
    "amc": Antithetic,
    "k-antithetic": KAntithetic,
    "equicorrelated": Equicorrelated,
    "coupling": GaussianCoupling,
    "rqmc": SobolRQMC,
    "sobol": SobolRQMC,
}


def get_design(name: str, **kwargs) -> NoiseDesign:
    """A design by registry name, e.g. ``get_design("k-antithetic", k=8)``."""
    try:
        cls = DESIGNS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown design {name!r}; allowed names: {', '.join(sorted(DESIGNS))}") from None
    return cls(**kwargs)


def as_design(design: NoiseDesign | str) -> NoiseDesign:
    """Accept a design object or a registry name with default parameters."""
    if isinstance(design, NoiseDesign):
        return design
    if isinstance(design, str):
        return get_design(design)
    raise TypeError(f"design must be a NoiseDesign or a name, got {type(design).__name__}")


__all__ = [
    "DESIGNS",
    "IID",
    "Antithetic",
    "Equicorrelated",
    "GaussianCoupling",
    "KAntithetic",
    "NoiseDesign",
    "SobolRQMC",
    "SubspaceCoupling",
    "as_design",
    "get_design",
    "on_leading_coordinates",
]
