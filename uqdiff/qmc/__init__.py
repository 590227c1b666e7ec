"""Low-discrepancy point sets used by the RQMC noise design."""

from uqdiff.qmc.sobol import (
    MAX_DIM,
    SCRAMBLES,
    generating_columns,
    scrambled_sobol,
    scrambled_sobol_normal,
    sobol_integers,
    to_gaussian,
    to_uniform,
)

__all__ = [
    "MAX_DIM",
    "SCRAMBLES",
    "generating_columns",
    "scrambled_sobol",
    "scrambled_sobol_normal",
    "sobol_integers",
    "to_gaussian",
    "to_uniform",
]
