"""Carry out a command-line run: load the model, run each design through :func:`estimate`, keep traces.

The runs are the ones :func:`uqdiff.compare` would make (same designs, same
seeds); this module only adds what a report shows besides the final numbers:
the running estimate after every batch, the first images of the MC and
antithetic runs for the PN vs RR correlation diagnostics, and timings.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from importlib import metadata

import numpy as np
import torch

from uqdiff.cli.config import ConfigError, RunConfig, statistic_from_spec
from uqdiff.designs import NoiseDesign
from uqdiff.estimators.accumulator import GroupAccumulator
from uqdiff.estimators.estimate import estimate, run_designs
from uqdiff.estimators.results import EstimateResult, StatisticResult
from uqdiff.estimators.settings import RunSettings
from uqdiff.models import LoadedModel, UnknownModel, load_model
from uqdiff.samplers.base import Recording
from uqdiff.statistics import PairCorrelations, Statistic, pn_rr_correlations


@dataclass(frozen=True)
class Trace:
    """Running estimate and interval of one scalar statistic after each batch."""

    n_noises: np.ndarray
    estimate: np.ndarray
    low: np.ndarray
    high: np.ndarray


@dataclass(frozen=True)
class RunOutput:
    """Results of every design plus what the report needs to explain them.

    ``labels`` maps design names to the specs the user wrote (plot legends);
    ``truths`` holds exact answers where the model knows them (oracles).
    """

    config: RunConfig
    model: LoadedModel
    statistics: dict[str, Statistic]
    estimates: dict[str, EstimateResult]
    labels: dict[str, str]
    traces: dict[str, dict[str, Trace]]
    correlations: PairCorrelations | None
    truths: dict[str, float | np.ndarray]
    seconds: dict[str, float]
    environment: dict[str, str | None]


def run(config: RunConfig) -> RunOutput:
    """Run the designs of ``config`` (with MC added for ``compare``) on its model."""
    designs = config.design_objects()
    specs = dict(zip((d.name for d in designs), config.design_specs()))
    if config.device and torch.device(config.device).type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device", f"{config.device} is not available on this machine; use cpu")
    model = _load(config)
    generator = model.generator
    defaults = {"value_range": generator.value_range} if hasattr(generator, "value_range") else {}
    statistics = {}
    for spec in config.statistics or model.default_statistics:
        stat = statistic_from_spec(spec, **defaults)
        if stat.name in statistics:
            raise ConfigError("statistics", f"{stat.name!r} is given twice")
        statistics[stat.name] = stat
    config = replace(
        config, designs=tuple(specs.values()), statistics=config.statistics or model.default_statistics
    )  # as run, for the report
    keep = 2 * config.pairs if config.command == "compare" else 0
    labels, traces, seconds, images = {}, {}, {}, {}

    def run_one(design: NoiseDesign, seed, settings: RunSettings) -> EstimateResult:
        recorder = Recording(generator, keep if design.name in ("mc", "antithetic") else 0)
        trace = _TraceRecorder(design.name, config)
        start = time.perf_counter()
        result = estimate(
            recorder,
            statistics,
            budget=config.budget,
            design=design,
            seed=seed,
            confidence_level=config.confidence_level,
            interval_method=config.interval_method,
            run=settings.replace(
                batch_size=trace_batch(config.batch_size, config.budget, design.group_size),
                device=config.device,
                progress=not config.quiet,
                callback=trace,
            ),
        )
        seconds[design.name] = time.perf_counter() - start
        labels[design.name] = specs.get(design.name, design.name)
        traces[design.name] = trace.traces()
        images[design.name] = _pairs(recorder.images())
        return result

    if config.command == "compare":  # the one loop over designs: MC first, each design on its own stream
        estimates, _ = run_designs(designs, run_one, seed=config.seed, baseline="mc")
    else:  # one design, on the seed as given (as uqdiff.estimate would run it)
        estimates = {designs[0].name: run_one(designs[0], config.seed, RunSettings())}
    correlations = None
    if images.get("mc") is not None and images.get("antithetic") is not None:
        pn, rr = images["antithetic"], images["mc"]
        correlations = pn_rr_correlations(pn[0::2], pn[1::2], rr[0::2], rr[1::2])
    truths = {name: t for name, stat in statistics.items() if (t := model.truth(stat)) is not None}
    return RunOutput(
        config=config,
        model=model,
        statistics=statistics,
        estimates=estimates,
        labels=labels,
        traces=traces,
        correlations=correlations,
        truths=truths,
        seconds=seconds,
        environment=environment(),
    )


#: Fewest batches a run aims for, so that its running estimate (one point per batch) draws a line.
TRACE_POINTS = 4


def trace_batch(batch_size: int, budget: int, group_size: int) -> int:
    """The batch size a command-line run uses: ``batch_size``, or less when the budget fills few batches.

    The running estimate has one point per batch, so a budget of fewer than :data:`TRACE_POINTS`
    batches runs in smaller ones (whole groups, at least one group): a budget of one batch would
    otherwise plot a single point. The model still sees at most ``batch_size`` noises at a time,
    and the numbers do not change (the accumulator is exact however a run is split).
    """
    if budget >= TRACE_POINTS * batch_size:
        return batch_size
    per_point = -(-budget // TRACE_POINTS)
    return min(batch_size, max(group_size, -(-per_point // group_size) * group_size))


def environment() -> dict[str, str | None]:
    """Versions that decide the numbers: Python, uqdiff and the numerical and model runtimes."""
    out: dict[str, str | None] = {"python": platform.python_version(), "platform": platform.platform()}
    for dist in ("uqdiff", "torch", "numpy", "scipy", "diffusers", "onnxruntime", "matplotlib"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    out["torch_threads"] = str(torch.get_num_threads())
    return out


def _load(config: RunConfig) -> LoadedModel:
    try:
        return load_model(config.model, config.model_options, device=config.device)
    except UnknownModel as err:
        raise ConfigError("model", str(err)) from None
    except KeyError as err:
        raise ConfigError("model_options", err.args[0]) from None
    except (TypeError, ValueError) as err:
        raise ConfigError("model_options", str(err)) from None


def _pairs(images: np.ndarray) -> np.ndarray | None:
    """An even number of kept images, or None when fewer than two pairs were kept."""
    x = images[: len(images) // 2 * 2]
    return x if len(x) >= 4 else None


class _TraceRecorder:
    """``estimate`` callback: the interval of every scalar statistic after each batch."""

    def __init__(self, design: str, config: RunConfig) -> None:
        self.design, self.config = design, config
        self.rows: dict[str, list[tuple[int, float, float, float]]] = {}

    def __call__(self, n_noises: int, accumulators: Mapping[str, GroupAccumulator]) -> None:
        for name, acc in accumulators.items():
            if acc.shape != () or acc.count < 1:
                continue
            if acc.count == 1:  # an estimate, no interval yet: the line starts here (RQMC, small budgets)
                mean = float(acc.moments().mean)
                self.rows.setdefault(name, []).append((n_noises, mean, float("nan"), float("nan")))
                continue
            r = StatisticResult.from_moments(
                acc.moments(),
                statistic=name,
                design=self.design,
                group_size=n_noises // acc.count,
                confidence_level=self.config.confidence_level,
                interval_method=self.config.interval_method,
            )
            self.rows.setdefault(name, []).append((n_noises, r.estimate, r.low, r.high))

    def traces(self) -> dict[str, Trace]:
        return {name: Trace(*(np.array(col) for col in zip(*rows))) for name, rows in self.rows.items()}
