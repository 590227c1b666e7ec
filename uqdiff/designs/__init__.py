"""Noise designs: how the noises of a group depend on each other.

Designs can be picked by name (``get_design("antithetic")``) so configs and
the command line can name them.
"""

from __future__ import annotations

from uqdiff.designs.base import NoiseDesign
from uqdiff.designs.coupling_file import load_coupling, save_coupling
from uqdiff.designs.features import DCTFeatures, NoiseFeatures, dct_basis
from uqdiff.designs.gaussian import IID, Antithetic, AntitheticSets, Equicorrelated, GaussianCoupling, KAntithetic
from uqdiff.designs.seeds import SeedLike
from uqdiff.designs.sobol import SobolRQMC
from uqdiff.designs.subspace import SubspaceCoupling, on_leading_coordinates, subspace_rqmc

DESIGNS: dict[str, type[NoiseDesign]] = {
    "mc": IID,
    "iid": IID,
    "antithetic": Antithetic,
    "amc": Antithetic,
    "antithetic-sets": AntitheticSets,
    "k-antithetic": KAntithetic,
    "kantithetic": KAntithetic,
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


#: Parameters a design spec "name:p1:p2" gives positionally, by class.
SPEC_PARAMETERS: dict[type[NoiseDesign], tuple[str, ...]] = {
    KAntithetic: ("k",),
    AntitheticSets: ("k",),
    Equicorrelated: ("k", "c"),
    SobolRQMC: ("n", "scramble", "lead"),
}


def parse_design(spec: str) -> NoiseDesign:
    """A design from a text spec ``name[:p1[:p2]]``, as configs and the command line write it.

    ``coupling:PATH`` loads a coupling file written by :func:`save_coupling`
    (the rest of the spec is the path, colons included).

    >>> parse_design("kantithetic:8").name, parse_design("rqmc:16").group_size
    ('k-antithetic(k=8)', 16)
    >>> parse_design("equicorrelated:4:-0.2").name
    'equicorrelated(k=4, c=-0.2)'
    """
    name, _, rest = str(spec).partition(":")
    values = rest.split(":") if rest else []
    if name.strip().lower() == "auto":
        raise ValueError(
            "'auto' is not a noise design but a choice among them: pass design='auto' (or AutoDesign(...)) to "
            "uqdiff.estimate; the command line and compare() run fixed designs"
        )
    cls = DESIGNS.get(name.lower())
    if cls is None:
        raise ValueError(f"unknown design {name!r}; allowed names: {', '.join(sorted(DESIGNS))}")
    params = SPEC_PARAMETERS.get(cls, ())
    if cls is GaussianCoupling:
        if not rest:
            raise ValueError(f"design {name!r} needs a coupling file: {name}:PATH.json (write one with save_coupling)")
        return load_coupling(rest)
    if len(values) > len(params):
        takes = f"parameters ({', '.join(params)})" if params else "no parameters"
        raise ValueError(f"design {name!r} takes {takes}, got {spec!r}")
    try:
        return cls(**{p: _number(v) for p, v in zip(params, values)})
    except TypeError:
        raise ValueError(f"design {name!r} needs parameters ({', '.join(params)}), got {spec!r}") from None


def _number(text: str) -> int | float | str:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def as_design(design: NoiseDesign | str) -> NoiseDesign:
    """Accept a design object or a spec: a registry name, with parameters as in :func:`parse_design`."""
    if isinstance(design, NoiseDesign):
        return design
    if isinstance(design, str):
        return parse_design(design)
    raise TypeError(f"design must be a NoiseDesign or a name, got {type(design).__name__}")


__all__ = [
    "DESIGNS",
    "IID",
    "Antithetic",
    "AntitheticSets",
    "DCTFeatures",
    "Equicorrelated",
    "GaussianCoupling",
    "KAntithetic",
    "NoiseDesign",
    "NoiseFeatures",
    "SeedLike",
    "SobolRQMC",
    "SubspaceCoupling",
    "as_design",
    "dct_basis",
    "get_design",
    "load_coupling",
    "on_leading_coordinates",
    "parse_design",
    "save_coupling",
    "subspace_rqmc",
]
