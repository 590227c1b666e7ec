"""Paired comparisons with common random numbers, as one estimate of a joint statistic.

Feeding the same noise to several generators (solvers, conditions of a
conditional model) makes their outputs positively correlated, so a contrast
such as E[S(G_A(z))] - E[S(G_B(z))] is far more precise than the same
contrast from independent runs. There is no new estimator: :class:`CommonNoise`
is a generator that hands one noise batch to every arm and stacks the
outputs, :class:`ContrastStatistic` evaluates S on every arm and appends the
contrasts per noise, and :func:`uqdiff.estimate` runs that joint statistic
under any design (antithetic pairs of common noise, RQMC replicates of
common points, ...). A group's mean of a contrast is the contrast of the
arms' group means, so its interval comes from the same iid group means as
every other uqdiff interval.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from uqdiff._util import scalar, to_numpy
from uqdiff.designs import NoiseDesign
from uqdiff.designs.seeds import SeedLike
from uqdiff.estimators.engine import StatisticsLike, named_statistics
from uqdiff.estimators.estimate import estimate
from uqdiff.estimators.results import ConfidenceInterval, Exportable, StatisticResult, p_value
from uqdiff.estimators.settings import RunSettings, takes_run_settings
from uqdiff.samplers.wrappers import CommonNoise


class ContrastStatistic:
    """S on every arm of a :class:`CommonNoise` output, then the contrasts: (B, arms + contrasts, ...).

    ``weights`` (contrasts x arms) are applied per noise, so a group mean of a
    contrast is the contrast of group means and its variance is estimated from
    the same group means as the arms' (no covariance bookkeeping).

    >>> s = ContrastStatistic(lambda x: x[:, 0], np.array([[1.0, -1.0]]))
    >>> s(torch.tensor([[[3.0], [1.0]]])).tolist()
    [[3.0, 1.0, 2.0]]
    """

    def __init__(self, statistic: Callable, weights: np.ndarray) -> None:
        self.statistic = statistic
        self.weights = np.asarray(weights, dtype=np.float64)

    def __call__(self, images: torch.Tensor) -> np.ndarray:
        arms = np.stack([to_numpy(self.statistic(images[:, i])) for i in range(images.shape[1])], axis=1)
        contrasts = np.tensordot(self.weights, arms, axes=([1], [1]))  # (r, B, ...)
        return np.concatenate([arms, np.moveaxis(contrasts, 0, 1)], axis=1)


@dataclass(frozen=True)
class ContrastResult(Exportable):
    """One contrast sum_i w_i E[S(G_i)] under common noise, with its gain over independent runs.

    ``independent_mc_variance`` is the variance the same contrast would have
    from independent plain MC runs with the same number of evaluations per
    arm, sum_i w_i^2 sigma_i^2 / n (sigma_i^2: arm i's marginal variance, n:
    noises per arm); ``independent_design_variance`` is that of independent
    runs of the same design, sum_i w_i^2 se_i^2. Both use this run's own arm
    estimates, which have exactly the law of such independent runs' inputs,
    so no second run is needed. ``implied_efficiency`` (common noise + design against
    independent MC at the same total budget) is the product of the common-noise
    gain under MC, sum w_i^2 sigma_i^2 / sigma_c^2 (sigma_c^2: the contrast's
    marginal variance), and the design's own gain on the contrast,
    ``result.implied_efficiency``. ``implied_crn_efficiency`` is the gain of common noise when
    both sides use the design anyway. ``arm_correlation`` is corr(S(G_a), S(G_b)) for a difference
    of two arms, from sigma_d^2 = sigma_a^2 + sigma_b^2 - 2 cov.
    """

    name: str
    weights: dict[str, float]
    result: StatisticResult
    independent_mc_variance: float | np.ndarray
    independent_design_variance: float | np.ndarray
    arm_correlation: float | np.ndarray | None
    p_value: float | np.ndarray

    @property
    def implied_efficiency(self) -> float | np.ndarray:
        """Variance of independent plain MC runs over this run's, at the same budget per arm.

        Times (n - 3) / (n - 1) like :attr:`StatisticResult.implied_efficiency`, for the bias of 1 / se^2.
        """
        return _ratio(self.independent_mc_variance, np.square(self.result.standard_error)) * self._debias

    @property
    def implied_crn_efficiency(self) -> float | np.ndarray:
        """Variance of independent runs of the same design over this run's: the gain of common noise alone.

        Both variances come from the same groups, so this ratio is left as it is (no 1 / se^2 correction).
        """
        return _ratio(self.independent_design_variance, np.square(self.result.standard_error))

    @property
    def _debias(self) -> float:
        n = self.result.n_groups
        return (n - 3) / (n - 1) if n > 3 else math.nan

    def _rows(self) -> list[dict[str, Any]]:
        return _result_rows(
            self.result,
            name=self.name,
            p_value=self.p_value,
            implied_efficiency=self.implied_efficiency,
            implied_crn_efficiency=self.implied_crn_efficiency,
            arm_correlation=self.arm_correlation,
        )


@dataclass(frozen=True)
class PairedResult(Exportable):
    """Every arm's estimate and every contrast, per statistic, from one run on common noise.

    ``arms[statistic][arm]`` and ``contrasts[statistic][name]`` are the
    results; ``budget`` noises went to each arm, ``generator_calls`` =
    arms x budget model calls in all. ``common_noise`` says what noise the arms shared (the whole
    stream slot by slot when their draws match; see :class:`~uqdiff.samplers.CommonNoise`).
    """

    arms: dict[str, dict[str, StatisticResult]]
    contrasts: dict[str, dict[str, ContrastResult]]
    design: str
    seed: Any
    budget: int
    generator_calls: int
    common_noise: str = "the whole noise stream, slot by slot"

    def contrast(self, name: str, statistic: str | None = None) -> ContrastResult:
        """The contrast ``name`` (e.g. ``"A - B"``) of ``statistic`` (the only one if None)."""
        statistic = _only(self.contrasts, statistic)
        try:
            return self.contrasts[statistic][name]
        except KeyError:
            raise KeyError(f"no contrast {name!r}; this run has {sorted(self.contrasts[statistic])}") from None

    def _rows(self) -> list[dict[str, Any]]:
        """One row per arm and per contrast (maps: one row per element, with its flat index)."""
        rows = []
        for stat, arms in self.arms.items():
            for arm, r in arms.items():
                rows += _result_rows(r, statistic=stat, kind="arm", name=arm)
            for c in self.contrasts[stat].values():
                rows += [{"statistic": stat, "kind": "contrast", **row} for row in c._rows()]
        return rows

    def __str__(self) -> str:
        cols = ["statistic", "kind", "name", "estimate", "low", "high", "implied_efficiency", "implied_crn_efficiency"]
        frame = self.to_frame()
        return frame[[c for c in cols if c in frame]].to_string(index=False, float_format=lambda x: f"{x:.4g}")


@takes_run_settings
def paired_estimate(
    samplers: Mapping[str, Callable],
    statistics: StatisticsLike,
    *,
    budget: int,
    design: NoiseDesign | str = "mc",
    reference: str | None = None,
    contrasts: Mapping[str, Sequence[float]] | None = None,
    noise_shape: tuple[int, ...] | None = None,
    seed: SeedLike = 0,
    confidence_level: float = 0.95,
    interval_method: str = "skew-t",
    run: RunSettings | None = None,
) -> PairedResult:
    """Estimate E[S(G_i(z))] for every generator and their differences, all on common noise.

    Parameters
    ----------
    samplers : mapping of name to generator
        At least two; each gets the same noise (the leading coordinates where its noise is smaller).
    statistics : callable, list or dict of callables
        As for :func:`uqdiff.estimate`.
    budget : int
        Noises drawn; every generator runs on each, so the run makes len(samplers) x budget calls.
    design : NoiseDesign or str
        The design of the common noise.
    reference : str, optional
        Differences are all pairs ``"a - b"`` (in the order given) or, with ``reference``, every ``"a - ref"``.
    contrasts : mapping of name to weights, optional
        Extra named weight vectors over the samplers (e.g. a linear trend).
    noise_shape, seed, confidence_level, interval_method, run
        As for :func:`uqdiff.estimate`.

    Returns
    -------
    PairedResult
        Arms and contrasts per statistic, with the budget and the generator calls made.

    Raises
    ------
    ValueError, TypeError
        For inputs that cannot work (budget, seed, design, statistics, options), before any model call.
    GeneratorError
        When a generator fails; the message names the groups and the seed.

    >>> from uqdiff.samplers import LinearGenerator
    >>> J = np.array([[1.0, 0.2]])
    >>> gens = {"A": LinearGenerator([1.0], J), "B": LinearGenerator([0.5], 1.1 * J)}
    >>> r = paired_estimate(gens, lambda x: x[:, 0] ** 2, budget=256, seed=0)
    >>> c = r.contrast("A - B")   # truth: (1 + 1.04) - (0.25 + 1.21 * 1.04) = 0.53
    >>> print(f"{c.result.estimate:.2f} in [{c.result.low:.2f}, {c.result.high:.2f}], "
    ...       f"implied efficiency {c.implied_efficiency:.0f}")
    0.52 in [0.38, 0.64], implied efficiency 9
    """
    joint = CommonNoise(samplers, noise_shape=noise_shape)
    names = joint.names
    weights = _contrast_weights(names, reference, contrasts)
    matrix = np.stack(list(weights.values()))
    stats = {name: ContrastStatistic(s, matrix) for name, s in named_statistics(statistics).items()}
    result = estimate(
        joint,
        stats,
        budget=budget,
        design=design,
        seed=seed,
        confidence_level=confidence_level,
        interval_method=interval_method,
        run=run,
    )
    arms, out = {}, {}
    for stat in stats:
        joint_result = result[stat]
        arms[stat] = {arm: _component(joint_result, i, arm) for i, arm in enumerate(names)}
        out[stat] = {}
        for j, (cname, w) in enumerate(weights.items()):
            r = _component(joint_result, len(names) + j, cname)
            out[stat][cname] = _contrast(cname, dict(zip(names, w)), r, arms[stat], result.budget)
    return PairedResult(
        arms=arms,
        contrasts=out,
        design=result.design,
        seed=seed,
        budget=result.budget,
        generator_calls=result.generator_calls,
        common_noise=joint.shared,
    )


def _contrast_weights(
    names: list[str], reference: str | None, extra: Mapping[str, Sequence[float]] | None
) -> dict[str, np.ndarray]:
    """Named weight vectors: pairwise (or against ``reference``) differences, then ``extra``."""
    m = len(names)
    if reference is None:
        pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1 :]]
    elif str(reference) in names:
        pairs = [(a, str(reference)) for a in names if a != str(reference)]
    else:
        raise ValueError(f"reference must be one of the generator names {names}, got {reference!r}")
    weights = {}
    for a, b in pairs:
        w = np.zeros(m)
        w[names.index(a)], w[names.index(b)] = 1.0, -1.0
        weights[f"{a} - {b}"] = w
    for name, w in (extra or {}).items():
        w = np.asarray(w, dtype=np.float64)
        if w.shape != (m,) or not np.isfinite(w).all():
            raise ValueError(f"contrast {name!r} must be {m} finite weights (one per generator), got {w.tolist()}")
        if name in weights or name in names:
            raise ValueError(f"contrast name {name!r} is already used")
        weights[name] = w
    return weights


def _component(r: StatisticResult, index: int, name: str) -> StatisticResult:
    """Element ``index`` (axis 0) of a joint statistic's result, as a result of its own."""

    def pick(v):
        if v is None:
            return None
        v = np.asarray(v)[index]
        return float(v) if v.ndim == 0 else v

    arrays = {
        f: pick(getattr(r, f))
        for f in (
            "estimate",
            "standard_error",
            "marginal_variance",
            "implied_efficiency",
            "implied_efficiency_low",
            "implied_efficiency_high",
            "rho",
            "skewness",
            "kurtosis",
        )
    }
    return dataclasses.replace(
        r, statistic=name, confidence_interval=ConfidenceInterval(pick(r.low), pick(r.high)), **arrays
    )


def _contrast(
    name: str, weights: dict[str, float], r: StatisticResult, arms: dict[str, StatisticResult], n: int
) -> ContrastResult:
    w2 = {a: float(w) ** 2 for a, w in weights.items() if w != 0}
    var_mc = sum(w2[a] * np.asarray(arms[a].marginal_variance) for a in w2) / n
    var_design = sum(w2[a] * np.square(arms[a].standard_error) for a in w2)
    corr = None
    if sorted(weights[a] for a in w2) == [-1.0, 1.0]:
        a, b = w2
        va, vb = np.asarray(arms[a].marginal_variance), np.asarray(arms[b].marginal_variance)
        corr = scalar(_ratio(va + vb - np.asarray(r.marginal_variance), 2 * np.sqrt(va * vb)))
    return ContrastResult(
        name=name,
        weights={a: float(w) for a, w in weights.items()},
        result=r,
        independent_mc_variance=scalar(var_mc),
        independent_design_variance=scalar(var_design),
        arm_correlation=corr,
        p_value=p_value(r),
    )


def _ratio(a, b):
    with np.errstate(divide="ignore", invalid="ignore"):
        return scalar(np.asarray(a, dtype=np.float64) / np.asarray(b, dtype=np.float64))


def _only(mapping: Mapping[str, Any], key: str | None) -> str:
    if key is None:
        if len(mapping) != 1:
            raise ValueError(f"name the statistic, one of {sorted(mapping)}")
        return next(iter(mapping))
    if key not in mapping:
        raise KeyError(f"no statistic {key!r}; this run has {sorted(mapping)}")
    return key


def _result_rows(r: StatisticResult, **extra: Any) -> list[dict[str, Any]]:
    """Flat rows of a result (one per element of a map), with extra columns."""
    fields = {
        "estimate": r.estimate,
        "standard_error": r.standard_error,
        "low": r.low,
        "high": r.high,
        "n_noises": r.n_noises,
        "n_groups": r.n_groups,
        **extra,
    }
    if np.ndim(r.estimate) == 0:
        return [{k: _item(v) for k, v in fields.items()}]
    flat = {k: (np.ravel(v) if isinstance(v, np.ndarray) else v) for k, v in fields.items()}
    return [
        {"element": i, **{k: _item(v[i] if isinstance(v, np.ndarray) else v) for k, v in flat.items()}}
        for i in range(np.size(r.estimate))
    ]


def _item(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v
