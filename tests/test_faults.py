"""Faults mid-run: a failing generator, out-of-memory batches, outputs whose shape changes."""

import numpy as np
import pytest
import torch

from uqdiff import KAntithetic, estimate
from uqdiff.estimators.engine import GeneratorError
from uqdiff.estimators.settings import RunSettings
from uqdiff.samplers import GaussianDDIM

ORACLE = GaussianDDIM(np.linspace(-0.5, 0.5, 5), std=0.4, num_steps=6)
STATS = {"m2": lambda x: (x**2).mean(dim=1), "first": lambda x: x[:, :2]}


class MemoryLimited:
    """The oracle behind a memory limit: batches larger than ``limit`` noises fail like an allocator would."""

    noise_shape = ORACLE.noise_shape

    def __init__(self, limit, error):
        self.limit, self.error, self.sizes = limit, error, []

    def __call__(self, z):
        self.sizes.append(len(z))
        if len(z) > self.limit:
            raise self.error
        return ORACLE(z)


@pytest.mark.parametrize(
    "error",
    [
        torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        MemoryError(),
        RuntimeError(
            "[enforce fail at alloc_cpu.cpp:114] DefaultCPUAllocator: not enough memory: you tried... out of memory"
        ),
    ],
    ids=["cuda", "host", "runtime"],
)
def test_out_of_memory_halves_the_batch_once_with_identical_results(error):
    kw = dict(budget=800, design=KAntithetic(4), seed=3, run=RunSettings(dtype=torch.float64))
    ref = estimate(ORACLE, STATS, **{**kw, "run": kw["run"].replace(batch_size=64)})
    g = MemoryLimited(40, error)
    with pytest.warns(UserWarning, match="out of memory at batch_size 64; going on with 32"):
        got = estimate(g, STATS, **{**kw, "run": kw["run"].replace(batch_size=64)})
    assert got.to_dict()["results"] == ref.to_dict()["results"]
    # the 1 is the repeat check's batch of one after the first batch that fits
    assert g.sizes[0] == 64 and g.sizes[2] == 1 and set(g.sizes[1:2] + g.sizes[3:]) == {32}


def test_out_of_memory_after_halving_fails_clearly():
    with pytest.warns(UserWarning, match="going on with 32"):
        with pytest.raises(
            MemoryError,
            match=r"out of memory at batch_size 32 \(already halved from 64\), groups from 0; "
            "pass a smaller batch_size",
        ):
            estimate(MemoryLimited(20, MemoryError()), STATS, budget=800, run=RunSettings(batch_size=64))


def test_failing_generator_names_group_and_seed():
    class Broken:
        noise_shape = ORACLE.noise_shape
        seen = 0

        def __call__(self, z):
            self.seen += len(z)
            if self.seen > 100:
                raise ValueError("weights went missing")
            return ORACLE(z)

    with pytest.raises(
        GeneratorError,
        match=r"generator raised ValueError: weights went missing on groups 48\.\.55, "
        r"seed \[4, 2\]",
    ) as info:
        estimate(Broken(), STATS, budget=256, design="antithetic", seed=[4, 2], run=RunSettings(batch_size=16))
    assert isinstance(info.value.__cause__, ValueError)


def test_generator_output_shape_change_names_both_shapes():
    class Growing:
        noise_shape = (3,)
        calls = 0
        repeat_check = False  # stateful on purpose: the repeat check would add a call

        def __call__(self, z):
            self.calls += 1
            return torch.cat([z, z[:, :1]], dim=1) if self.calls > 2 else z

    with pytest.raises(
        ValueError,
        match=r"generator output shape changed from \(3,\) to \(4,\) per image between "
        r"batches, at group 128 \(noise 0 of the group\), seed 0",
    ):
        estimate(Growing(), {"mean": lambda x: x.mean(dim=1)}, budget=256, run=RunSettings(batch_size=64))


def test_statistic_of_wrong_shape_names_both_shapes():
    calls = {"n": 0}

    def unstable(x):
        calls["n"] += 1
        return x[:, :2] if calls["n"] == 1 else x[:, :2].T

    with pytest.raises(ValueError, match=r"statistic 'unstable' returned shape \(2, 64\) for a batch of 64 images"):
        estimate(ORACLE, {"unstable": unstable}, budget=256, run=RunSettings(batch_size=64))
