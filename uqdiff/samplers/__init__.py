"""Samplers: real diffusion models as uqdiff generators (needs diffusers).

:class:`DiffusersSampler` draws *every* Gaussian of a DDIM or DDPM sampler
from the designed noise; :class:`PipelineGenerator` designs the initial latent
of any diffusers pipeline that takes ``latents=``.
"""

from uqdiff.samplers.diffusers_adapters import DiffusersSampler, PipelineGenerator

__all__ = ["DiffusersSampler", "PipelineGenerator"]
