"""Real pretrained models wrapped as uqdiff generators, all loading offline; models by name.

Imports are lazy so that using one model never requires another's runtime:
``from uqdiff.models.terrain import TerrainGenerator`` (onnxruntime),
``from uqdiff.models.fashion import FashionMNISTGenerator`` (diffusers),
``from uqdiff.models.classifier import load_fashion_classifier``.

:func:`load_model` builds a model from a name, as configs and the command
line give it: ``"terrain"``, ``"fashion"``, ``"oracle"`` or ``"module:callable"``.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import numpy as np

#: Built-in model names -> the options each accepts (keyword arguments of its constructor).
MODEL_OPTIONS: dict[str, tuple[str, ...]] = {
    "terrain": ("difficulty", "sigmas", "threads"),
    "fashion": ("class_label", "sampler", "steps", "eta", "guidance_scale"),
    "oracle": ("size", "std", "steps"),
}

#: Statistics a model is summarized by when none are asked for.
DEFAULT_STATISTICS: dict[str, tuple[str, ...]] = {
    "terrain": ("mean", "contrast", "centroid", "slope"),
    "fashion": ("mean", "contrast", "centroid"),
    "oracle": ("mean", "contrast", "centroid"),
}

#: Statistics that are affine in the image: E[S(X)] = S(E[X]), so an oracle knows their answer.
AFFINE_STATISTICS = frozenset({"mean", "brightness", "contrast", "pixel_map"})


class UnknownModel(LookupError):
    """No built-in model of that name, or a module:callable that does not import."""


@dataclass(frozen=True)
class LoadedModel:
    """A generator with what a report needs to say which model produced the numbers.

    ``expected_output`` is E[G(z)] per pixel when known in closed form (oracles),
    which gives the exact answer of every affine statistic (:meth:`truth`).
    """

    generator: Callable
    spec: str
    options: dict[str, Any]
    description: str
    identity: dict[str, Any]
    default_statistics: tuple[str, ...] = ("mean",)
    expected_output: np.ndarray | None = field(default=None, repr=False)

    def truth(self, statistic: Callable) -> float | np.ndarray | None:
        """The exact E[S(G(z))] when the model knows it and S is affine in the image, else None."""
        if self.expected_output is None or getattr(statistic, "name", None) not in AFFINE_STATISTICS:
            return None
        value = np.asarray(statistic(self.expected_output[None]), dtype=np.float64)[0]
        return float(value) if value.ndim == 0 else value


def load_model(spec: str, options: Mapping[str, Any] | None = None, *, device: str | None = None) -> LoadedModel:
    """Build a model by name: ``terrain``, ``fashion``, ``oracle`` or ``module:callable``.

    For ``module:callable`` the object is imported; if it has a ``noise_shape``
    attribute it is the generator itself (no options allowed), otherwise it is
    a factory (a class or function) called with ``options`` as keyword
    arguments that must return a generator with a ``noise_shape``. ``device``
    goes to the built-in models' constructors.

    >>> m = load_model("oracle", {"size": 8})
    >>> m.generator.noise_shape, m.identity["size"]
    ((1, 8, 8), 8)
    """
    options = dict(options or {})
    if ":" in spec:
        return _load_entry_point(spec, options)
    if spec not in MODEL_OPTIONS:
        raise UnknownModel(f"unknown model {spec!r}; allowed: {', '.join(MODEL_OPTIONS)} or module:callable")
    unknown = sorted(set(options) - set(MODEL_OPTIONS[spec]))
    if unknown:
        raise KeyError(
            f"model {spec!r} has no option {unknown[0]!r}; allowed options: {', '.join(MODEL_OPTIONS[spec])}"
        )
    loader = {"terrain": _terrain, "fashion": _fashion, "oracle": _oracle}[spec]
    return loader(options, device)


def _terrain(options: dict[str, Any], device: str | None) -> LoadedModel:
    from uqdiff.models.terrain import TerrainGenerator

    g = TerrainGenerator(**options, **({"device": device} if device else {}))
    return LoadedModel(
        generator=g,
        spec="terrain",
        options=options,
        description=f"terrain consistency model (adaptive-terrain-diffusion, difficulty {g.difficulty}, "
        f"{1 + len(g.sigmas)} step(s), 1x128x128 heightmaps)",
        identity={
            "package": "adaptive-terrain-diffusion",
            "version": _version("adaptive-terrain-diffusion"),
            "difficulty": g.difficulty,
            "sigmas": list(g.sigmas),
        },
        default_statistics=DEFAULT_STATISTICS["terrain"],
    )


def _fashion(options: dict[str, Any], device: str | None) -> LoadedModel:
    from uqdiff.models.fashion import FASHION_DDPM_DIR, FashionMNISTGenerator

    g = FashionMNISTGenerator(**_renamed(options, "steps", "num_inference_steps"), device=device)
    metrics = json.loads((FASHION_DDPM_DIR / "metrics.json").read_text())
    quality = json.loads((FASHION_DDPM_DIR / "sample_quality.json").read_text())
    weights = FASHION_DDPM_DIR / "unet" / "diffusion_pytorch_model.safetensors"
    label = "unconditional" if g.class_label is None else f"class {g.class_label}"
    s = g.sampler
    sampler = (
        f"{type(s.scheduler).__name__} {len(s.scheduler.timesteps)} steps, eta {s.eta:g}, guidance {s.guidance_scale:g}"
    )
    return LoadedModel(
        generator=g,
        spec="fashion",
        options=options,
        description=f"Fashion-MNIST DDPM (uqdiff asset; {label}; {sampler}; 1x28x28 images)",
        identity={
            "asset": "uqdiff/assets/fashion_mnist_ddpm",
            "weights_sha256": _sha256(weights)[:16],
            "parameters": metrics["parameters"],
            "training_steps": metrics["steps_done"],
            "heldout_loss": metrics["heldout_loss"],
            "classifier_agreement": quality["mean_agreement"],
            "class_label": g.class_label,
            "sampler": sampler,
        },
        default_statistics=DEFAULT_STATISTICS["fashion"],
    )


def _oracle(options: dict[str, Any], device: str | None) -> LoadedModel:
    from uqdiff.samplers import landscape_oracle

    g = landscape_oracle(**_renamed(options, "steps", "num_steps"))
    size = g.noise_shape[-1]
    return LoadedModel(
        generator=g,
        spec="oracle",
        options=options,
        description=f"oracle: clipped Gaussian DDIM, 1x{size}x{size}, {len(g.schedule)} steps (exact answers "
        "for affine statistics)",
        identity={
            "class": "uqdiff.samplers.ClippedGaussianDDIM",
            "size": size,
            "std": float(g.std.flat[0]),
            "steps": len(g.schedule),
        },
        default_statistics=DEFAULT_STATISTICS["oracle"],
        expected_output=g.expected_output(),
    )


def import_object(spec: str) -> Any:
    """The object ``module:attr`` names, the module found from the current folder or installed packages."""
    module_name, _, attr = spec.partition(":")
    # The `uqdiff` command, unlike `python -m`, does not put the current folder on the path: a
    # user's module next to their config would not be found.
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        obj = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as err:
        raise UnknownModel(
            f"cannot import {spec!r} ({err}); give module:callable with the module importable from the current "
            f"folder ({os.getcwd()}) or an installed package"
        ) from None
    return obj


def _load_entry_point(spec: str, options: dict[str, Any]) -> LoadedModel:
    module_name = spec.partition(":")[0]
    obj = import_object(spec)
    if hasattr(obj, "noise_shape"):
        if options:
            raise KeyError(f"{spec!r} is a generator (it has noise_shape), so it takes no model options")
        generator = obj
    elif callable(obj):
        generator = obj(**options)
        if not hasattr(generator, "noise_shape"):
            raise UnknownModel(f"{spec}(...) returned {type(generator).__name__}, not a generator with a noise_shape")
    else:
        raise UnknownModel(f"{spec!r} is neither a generator nor a factory")
    top = module_name.split(".")[0]
    version = getattr(importlib.import_module(top), "__version__", None) or _version(top)
    return LoadedModel(
        generator=generator,
        spec=spec,
        options=options,
        description=f"{spec} ({type(generator).__name__})",
        identity={"entry_point": spec, "module_version": version, "repr": repr(generator)[:200]},
    )


def _renamed(options: dict[str, Any], name: str, keyword: str) -> dict[str, Any]:
    """The options with ``name`` passed as the constructor's ``keyword`` (short names on the command line)."""
    return {keyword if k == name else k: v for k, v in options.items()}


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


__all__ = ["AFFINE_STATISTICS", "DEFAULT_STATISTICS", "MODEL_OPTIONS", "LoadedModel", "UnknownModel", "load_model"]
