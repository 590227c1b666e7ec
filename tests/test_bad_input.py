"""Bad input gets a clear error before any model call: what was wrong and what to do.

Each case is one a user met (a confident wrong answer, an unrelated error, or a
traceback after the whole run); the probe generator records every call, so a
check that only fires after the model ran fails here.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import uqdiff
from uqdiff.estimators.settings import RunSettings
from uqdiff.samplers import LinearGenerator

GEN = LinearGenerator(np.zeros(4), np.eye(4))
STAT = {"s": lambda x: x[:, 0]}


class Probe:
    """A generator that counts its calls and returns what it is told to."""

    noise_shape = (4,)

    def __init__(self, output=None):
        self.calls, self.output = 0, output

    def __call__(self, z):
        self.calls += 1
        return GEN(z) if self.output is None else self.output(z)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(run=dict(dtype=torch.int64)), TypeError, "dtype must be a floating-point torch dtype"),
        (dict(statistics="mean"), TypeError, r"get_statistic\('mean'\)"),
        (dict(noise_shape="1x4x4"), ValueError, "noise_shape must be a positive int or a non-empty tuple"),
        (dict(noise_shape=(2.5,)), ValueError, "noise_shape must be a positive int"),
        (dict(confidence_level="0.95"), ValueError, r"confidence_level must be a number in \(0, 1\)"),
        (dict(confidence_level=float("nan")), ValueError, "confidence_level must be a number"),
        (dict(run=dict(device="cuda:0")), ValueError, "CUDA is not available here"),
        (dict(budget=16.0), ValueError, "budget must be a positive number of noises"),
        (dict(run=dict(batch_size="8")), ValueError, "batch_size must be a positive int"),
        (dict(run=dict(progress="yes")), TypeError, "progress must be True or False"),
        (dict(interval_method="bootstrap"), ValueError, "interval_method must be one of"),
        (dict(design=3), TypeError, "design must be a NoiseDesign or a name"),
        (dict(seed="12"), TypeError, "seed must be a non-negative int"),
    ],
)
def test_bad_options_are_refused_before_any_model_call(kwargs, error, match):
    if kwargs.get("run", {}).get("device") == "cuda:0" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    probe = Probe()
    args = dict(statistics=STAT, budget=16)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        if "run" in args:  # run settings are checked where they are made, before any model call
            args["run"] = uqdiff.RunSettings(**args["run"])
        uqdiff.estimate(probe, args.pop("statistics"), **args)
    assert probe.calls == 0


def test_a_generator_that_is_not_callable_is_refused():
    with pytest.raises(TypeError, match="sampler must be a callable"):
        uqdiff.estimate(3, STAT, budget=16, noise_shape=(4,))


@pytest.mark.parametrize(
    "output, what",
    [(lambda z: [1.0] * len(z), "list"), (lambda z: None, "NoneType"), (lambda z: "images", "str")],
)
def test_a_generator_returning_no_array_is_named_at_the_first_batch(output, what):
    probe = Probe(output)
    with pytest.raises(TypeError, match=f"must return a torch tensor or numpy array .* got {what}"):
        uqdiff.estimate(probe, STAT, budget=64, run=RunSettings(batch_size=16))
    assert probe.calls == 1


def test_a_statistic_returning_strings_is_named():
    with pytest.raises(TypeError, match="statistic 'labels' must return numbers"):
        uqdiff.estimate(GEN, {"labels": lambda x: np.array(["cat"] * len(x))}, budget=16)


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda: uqdiff.Equicorrelated(4, "x"), TypeError, "c of an equicorrelated coupling must be a number"),
        (lambda: uqdiff.Equicorrelated(4, -0.5), ValueError, r"needs c in \[-0.333333, 1\]"),
        (lambda: uqdiff.KAntithetic("8"), ValueError, "integer >= 2"),
        (lambda: uqdiff.SobolRQMC(3), ValueError, "power of two"),
        (lambda: uqdiff.Checkpoint(3), TypeError, "checkpoint path must be a str or path"),
    ],
)
def test_bad_design_and_checkpoint_parameters(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_an_integer_noise_dtype_no_longer_gives_a_confident_wrong_answer():
    # uqdiff 0.1 truncated the noise to integers and returned 0.437 [0.398, 0.476] for a truth of 1
    gen = LinearGenerator(np.zeros(1), np.eye(1))
    with pytest.raises(TypeError, match="floating-point"):
        uqdiff.estimate(gen, {"x2": lambda x: x[:, 0] ** 2}, budget=512, run=RunSettings(dtype=torch.int64))
    r = uqdiff.estimate(gen, {"x2": lambda x: x[:, 0] ** 2}, budget=4096, seed=0, run=RunSettings(dtype=torch.float64))
    assert r["x2"].low <= 1.0 <= r["x2"].high
