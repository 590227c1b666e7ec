"""One noise for every sampler: every task function x design x sampler kind either runs or is
refused before the first model call.

Three kinds of sampler compute the same law (a 3-step stochastic loop on 1 x 4 x 4 noise):

* ``captured``: third-party style code that draws inside its loop, under ``Captured``;
* ``layout``: the same loop over one noise tensor that packs x_T and every step's noise, with
  ``noise_layout`` declared (uqdiff's own samplers are written this way);
* ``tensor``: a deterministic generator of one noise tensor (a sampler with one draw).

A probe counts the calls that reach the model; a refusal must come with zero calls.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from uqdiff import (
    Captured,
    KAntithetic,
    SobolRQMC,
    audit,
    compare,
    estimate,
    estimate_two_fidelity,
    estimate_variations,
    paired_estimate,
    subspace_rqmc,
)
from uqdiff.designs import DCTFeatures
from uqdiff.designs.streams import NoiseStream
from uqdiff.estimators.settings import RunSettings
from uqdiff.samplers.capture import flat_noise

SHAPE = (1, 4, 4)
STEPS = 3


class Probe:
    """Counts model calls (outputs made) across every sampler built from it."""

    def __init__(self) -> None:
        self.calls = 0

    def model(self, x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        self.calls += len(x)
        return torch.tanh(scale * x + 0.3)


def make(kind: str, probe: Probe, *, steps: int = STEPS, scale: float = 1.0):
    if kind == "captured":

        def loop(n):
            x = torch.randn(n, *SHAPE)
            for _ in range(steps):
                x = 0.7 * x + 0.5 * torch.randn_like(x)
            return probe.model(x, scale)

        return Captured(loop, name=f"loop{steps}")
    if kind == "layout":

        class Packed:
            noise_shape = (1 + steps, *SHAPE[1:])
            noise_layout = (SHAPE,) * (1 + steps)

            def __call__(self, z):
                x = z[:, :1]
                for i in range(steps):
                    x = 0.7 * x + 0.5 * z[:, 1 + i : 2 + i]
                return probe.model(x, scale)

        return Packed()

    class Plain:
        noise_shape = SHAPE

        def __call__(self, z):
            return probe.model(z, scale)

    return Plain()


KINDS = ["captured", "layout", "tensor"]
DESIGNS = {
    "mc": "mc",
    "antithetic": "antithetic",
    "k-antithetic": KAntithetic(4),
    "rqmc": SobolRQMC(8),
    "subspace": subspace_rqmc(SHAPE, 8, dims=4),
    "auto": "auto",
}
mean = lambda x: x.mean(dim=(1, 2, 3))


def _runs_or_refuses_early(probe: Probe, run) -> None:
    try:
        out = run()
    except (ValueError, TypeError) as exc:  # a refusal: no model call may have been spent
        assert probe.calls == 0, f"refused after {probe.calls} model calls: {exc}"
        return
    assert probe.calls > 0 and out is not None


@pytest.mark.parametrize("design", list(DESIGNS))
@pytest.mark.parametrize("kind", KINDS)
def test_estimate_and_compare_run_every_design_on_every_sampler(kind, design):
    probe = Probe()
    budget = 512 if design == "auto" else 64
    r = estimate(make(kind, probe), mean, budget=budget, design=DESIGNS[design], seed=1, run=RunSettings(batch_size=32))
    assert np.isfinite(r["statistic"].estimate) and probe.calls >= budget
    if design != "auto":
        probe = Probe()
        designs = ["mc"] if design == "mc" else ["mc", DESIGNS[design]]
        c = compare(make(kind, probe), mean, budget=64, designs=designs, seed=1, run=RunSettings(batch_size=32))
        assert np.isfinite(c.efficiency("statistic", list(c.estimates)[-1]))


@pytest.mark.parametrize("kind", KINDS)
def test_auto_prices_subspace_rqmc_on_every_sampler_without_failing_after_its_pilot(kind):
    probe = Probe()
    r = estimate(make(kind, probe), mean, budget=4096, design="auto", seed=2, run=RunSettings(batch_size=256))
    assert any("subspace" in c["candidate"] for c in r.config["auto"]["candidates"])


@pytest.mark.parametrize("kind", KINDS)
def test_control_variates_read_x_t_from_the_stream(kind):
    probe = Probe()
    r = estimate(make(kind, probe), mean, budget=256, design="antithetic", control_variates=DCTFeatures(2), seed=3)
    assert np.isfinite(r["statistic"].estimate)
    assert r.config["control_variates"]["pilot_budget"] > 0


@pytest.mark.parametrize("design", ["mc", "antithetic", "rqmc", "subspace"])
@pytest.mark.parametrize("kind", KINDS)
def test_paired_audit_two_fidelity_and_variations_on_every_sampler(kind, design):
    d = DESIGNS[design]
    probe = Probe()
    arms = {"A": make(kind, probe), "B": make(kind, probe, scale=1.5)}
    _runs_or_refuses_early(probe, lambda: paired_estimate(arms, mean, budget=64, design=d, seed=4))
    probe = Probe()
    arms = {0: make(kind, probe), 1: make(kind, probe, scale=1.5)}
    _runs_or_refuses_early(probe, lambda: audit(arms, lambda x: mean(x) > 0.3, budget=64, design=d, seed=4))
    probe = Probe()
    full, cheap = make(kind, probe), make(kind, probe, steps=1 if kind == "captured" else STEPS)
    _runs_or_refuses_early(
        probe, lambda: estimate_two_fidelity(full, cheap, mean, budget=400, design=d, cost_ratio=0.5, seed=4)
    )
    probe = Probe()
    g = make(kind, probe)
    z0 = _one_noise(g)
    _runs_or_refuses_early(probe, lambda: estimate_variations(g, z0, {"m": mean}, c=0.5, budget=64, design=d, seed=4))


def _one_noise(g) -> torch.Tensor:
    """One noise of the sampler, in the form Variations takes (its tensor, or a captured stream flat)."""
    from uqdiff.designs import IID

    stream: NoiseStream = IID().stream([7], seed=0)
    if isinstance(g, Captured):
        return torch.from_numpy(flat_noise(stream, g)[0])
    shape = g.noise_shape
    return stream.slot(0, (math.prod(shape),), offset=0)[0].reshape(shape)


def test_common_noise_is_the_whole_stream_for_matching_samplers_and_is_stated():
    probe = Probe()
    arms = {"A": make("captured", probe), "B": make("captured", probe, scale=1.5)}
    r = paired_estimate(arms, mean, budget=32, seed=5)
    assert r.common_noise == "the whole noise stream, slot by slot"
    arms = {"A": make("captured", probe), "B": make("captured", probe, steps=1)}
    r = paired_estimate(arms, mean, budget=32, seed=5)
    assert r.common_noise.startswith("slots 0..1 (x_T first) in full")


def test_a_captured_loop_and_its_packed_twin_get_the_same_noise_slot_by_slot():
    """uqdiff's own (packed, noise_layout) samplers and a user's loop are one way in: same seed, same result."""
    a = estimate(make("captured", Probe()), mean, budget=64, design="antithetic", seed=6)
    b = estimate(make("layout", Probe()), mean, budget=64, design="antithetic", seed=6)
    assert a["statistic"].estimate == pytest.approx(b["statistic"].estimate, abs=1e-6)
