"""Learned Gaussian couplings: fit A (unit-norm rows) to a gallery objective, save it, reload it as a design.

Theorem 3.3 of the coupling paper: any k x r matrix A with unit-norm rows gives
noises z = A u that are each exactly N(0, I), with correlation A A^T. So a
coupling can be *learned*: maximize E[objective(G(A u))] over the product of
spheres (paper 000, appendix B.1.5 for diversity, B.2 for a brightness-clustered
gallery). Once learned it is an ordinary :class:`GaussianCoupling`: every image
keeps the model's law, and the estimators treat its groups like any design's.

Differentiating a whole diffusion trajectory is the expensive part;
:class:`SkipGradient` replaces it by the appendix's skip-gradient estimator.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from uqdiff._util import package_version
from uqdiff.designs.gaussian import GaussianCoupling

FILE_FORMAT = "uqdiff-coupling"
FILE_VERSION = 1


def save_coupling(design: GaussianCoupling, path: str | Path, *, provenance: dict[str, Any] | None = None) -> Path:
    """Write a coupling as JSON (matrix, name, provenance, uqdiff version); :func:`load_coupling` reads it back.

    JSON keeps every float64 exactly, so the reloaded design draws bit-identical noise.
    """
    if not isinstance(design, GaussianCoupling):
        raise TypeError(f"design must be a GaussianCoupling, got {type(design).__name__}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "format": FILE_FORMAT,
        "format_version": FILE_VERSION,
        "uqdiff_version": package_version(),
        "name": design.name,
        "shape": list(design.matrix.shape),
        "matrix": design.matrix.tolist(),
        "correlation": design.correlation().round(6).tolist(),
        "provenance": provenance or {},
    }
    path.write_text(json.dumps(record, indent=1, default=str) + "\n")
    return path


def load_coupling(path: str | Path) -> GaussianCoupling:
    """The coupling saved by :func:`save_coupling`, checked (shape, finite, unit-norm rows); also ``coupling:PATH``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no coupling file at {path}")
    try:
        record = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a JSON coupling file ({err})") from None
    if not isinstance(record, dict) or record.get("format") != FILE_FORMAT:
        raise ValueError(f"{path}: not a coupling file (expected a JSON object with format {FILE_FORMAT!r})")
    try:
        matrix = np.array(record["matrix"], dtype=np.float64)
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"{path}: 'matrix' must be a list of rows of numbers") from None
    if "shape" in record and list(matrix.shape) != list(record["shape"]):
        raise ValueError(f"{path}: matrix has shape {list(matrix.shape)} but the file says {record['shape']}")
    try:
        return GaussianCoupling(matrix, name=str(record.get("name", path.stem)))
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None
