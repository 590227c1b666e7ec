"""Noise control variates: regress the statistic on features of the noise whose means are known.

Every feature f(z) of :mod:`uqdiff.designs.features` has mean exactly zero,
so for any fixed coefficients beta the group means of S - beta . f have the
same expectation as those of S: the estimate is still the mean of iid group
means, of an adjusted statistic. The coefficients are fitted on a *pilot* of
groups that the final estimate does not use, so they are fixed when the main
groups are drawn and the interval stays exact in the same sense as without
them. The fit picks its ridge penalty (or no control variate at all) by
k-fold cross-validation on the pilot, so features that do not help cost
little. Under a design, the regression is on group means: antithetic pairs
cancel the odd features, which then drop out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from uqdiff._util import scalar
from uqdiff.designs.features import DCTFeatures, NoiseFeatures
from uqdiff.estimators.engine import FEATURES, Engine, Strategy, groups_for_budget
from uqdiff.estimators.intervals import implied_efficiency
from uqdiff.estimators.results import StatisticResult

#: Ridge penalties tried by cross-validation, relative to the number of groups (standardized
#: features); ``inf`` means no control variate.
RIDGE_GRID: tuple[float, ...] = (0.0, 0.01, 0.1, 1.0, math.inf)

#: Fewest pilot groups a fit accepts.
MIN_PILOT_GROUPS = 8


@dataclass(frozen=True)
class ControlVariates:
    """Noise control variates for :func:`~uqdiff.estimators.estimate`: which features, how big a pilot.

    Parameters
    ----------
    features : NoiseFeatures
        Functions of the noise with mean zero; default ``DCTFeatures()``: the 4 lowest DCT
        coefficients, their squares and every octave's energy (15 features for a 128 x 128 noise).
    pilot_share : float
        Share of the budget spent on the pilot that fits the coefficients (default 0.2); the
        pilot's groups are not part of the final estimate, which keeps it unbiased.
    coefficients : mapping, optional
        Fixed coefficients by statistic name (arrays of shape (p, *statistic shape)), e.g.
        from an earlier run's ``config["control_variates"]``: no pilot is run.

    Examples
    --------
    >>> ControlVariates(DCTFeatures(4), pilot_share=0.25).pilot_share
    0.25
    """

    features: NoiseFeatures = field(default_factory=DCTFeatures)
    pilot_share: float = 0.2
    coefficients: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.features, NoiseFeatures):
            raise TypeError(
                f"features must be NoiseFeatures such as DCTFeatures(16), got {type(self.features).__name__}"
            )
        share = self.pilot_share
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 < share < 1:
            raise ValueError(f"pilot_share must be a number in (0, 1), got {share!r}")


@dataclass(frozen=True)
class ControlFit:
    """Coefficients of one statistic's control variates, fitted on a pilot.

    ``coefficients`` has shape (p, *statistic shape), zero for unused features;
    ``ridge`` is the penalty cross-validation chose (``inf``: no control variate);
    ``variance_ratio`` the cross-validated residual variance over the raw variance of the
    group means (below 1 when the features help; it predicts the gain, 1 / ratio).
    """

    coefficients: np.ndarray
    ridge: float
    variance_ratio: float
    n_groups: int


def fit_control(values: np.ndarray, features: np.ndarray, *, folds: int = 10) -> ControlFit:
    """Fit S's group means on the features' group means, choosing the ridge penalty by cross-validation.

    Parameters
    ----------
    values : array, shape (n, *statistic shape)
        Group means of the statistic on the pilot.
    features : array, shape (n, p)
        Group means of the features on the same groups.
    folds : int
        Cross-validation folds (at most n).

    Returns
    -------
    ControlFit
        Coefficients refitted on all n groups with the penalty of least cross-validated
        residual variance (summed over a map's elements); features with no spread in the group
        means (odd features under antithetic pairs) get coefficient zero. With fewer than two
        groups per feature there is no fit (coefficients zero): a pilot that small would more
        likely add variance than remove it; plain least squares needs five groups per feature.

    Raises
    ------
    ValueError
        For fewer than :data:`MIN_PILOT_GROUPS` groups or mismatched shapes.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> f = rng.standard_normal((200, 3))
    >>> y = 2.0 + f[:, 0] - 0.5 * f[:, 2] + 0.1 * rng.standard_normal(200)
    >>> fit = fit_control(y, f)
    >>> np.round(fit.coefficients, 1).tolist(), fit.variance_ratio < 0.02
    ([1.0, -0.0, -0.5], True)
    """
    y = np.asarray(values, dtype=np.float64)
    x = np.asarray(features, dtype=np.float64)
    n = len(y)
    if x.ndim != 2 or len(x) != n:
        raise ValueError(f"features must have shape (n, p) with n = {n} groups, got {x.shape}")
    if n < MIN_PILOT_GROUPS:
        raise ValueError(f"a control-variate fit needs at least {MIN_PILOT_GROUPS} pilot groups, got {n}")
    shape = y.shape[1:]
    y2 = y.reshape(n, -1)
    sd = x.std(axis=0)
    used = sd > 1e-9 * max(1.0, float(np.abs(x).max(initial=0.0)))
    xs = (x[:, used] - x[:, used].mean(axis=0)) / np.where(used, sd, 1.0)[used]
    order = np.arange(n)
    k = max(2, min(int(folds), n))
    raw = float(((y2 - y2.mean(axis=0)) ** 2).sum())
    best_ridge, best_sse = math.inf, raw * n / (n - 1)  # leave-out error of the mean alone, approximately
    p = int(used.sum())
    # too few groups for the features: no control variate; unpenalized least squares only with 5 groups a feature
    grid = [r for r in RIDGE_GRID[:-1] if r > 0 or n >= 5 * p] if n >= 2 * p else []
    if used.any() and raw > 0:
        for ridge in grid:
            sse = 0.0
            for i in range(k):
                test = order % k == i
                b = _ridge(xs[~test], y2[~test], ridge)
                pred = (xs[test] - xs[~test].mean(axis=0)) @ b + y2[~test].mean(axis=0)
                sse += float(((y2[test] - pred) ** 2).sum())
            if sse < best_sse:
                best_ridge, best_sse = ridge, sse
    coef = np.zeros((x.shape[1], y2.shape[1]))
    if math.isfinite(best_ridge):
        coef[used] = _ridge(xs, y2, best_ridge) / sd[used][:, None]
    ratio = best_sse / (raw * n / (n - 1)) if raw > 0 else 1.0
    return ControlFit(coefficients=coef.reshape(x.shape[1], *shape), ridge=best_ridge, variance_ratio=ratio, n_groups=n)


def _ridge(xs: np.ndarray, y: np.ndarray, ridge: float) -> np.ndarray:
    """Ridge coefficients of centred y on centred xs, penalty ridge * n on standardized features."""
    xc = xs - xs.mean(axis=0)
    yc = y - y.mean(axis=0)
    gram = xc.T @ xc + ridge * len(xs) * np.eye(xs.shape[1])
    return np.linalg.lstsq(gram, xc.T @ yc, rcond=None)[0]


def pilot_groups(n_groups: int, share: float) -> int:
    """Groups of a run's pilot: ``share`` of them, at least :data:`MIN_PILOT_GROUPS`, leaving 2 for the main stage."""
    pilot = max(MIN_PILOT_GROUPS, math.ceil(share * n_groups))
    if n_groups - pilot < 2:
        raise ValueError(
            f"the budget gives {n_groups} groups: too few for a control-variate pilot of {pilot} groups "
            f"and a main stage of at least 2; raise the budget to at least {pilot + 2} groups"
        )
    return pilot


def against_mc(
    result: StatisticResult, raw_marginal: np.ndarray | float, pilot_noises: int, *, total_noises: int | None = None
) -> StatisticResult:
    """The result of an adjusted statistic with its implied efficiency measured against MC on the *raw* statistic.

    The adjusted statistic's own marginal variance is smaller than S's; plain MC would see S's,
    which the pilot estimates (``raw_marginal`` from ``pilot_noises`` noises). With
    ``total_noises`` (main stage plus pilots), the efficiency is against MC spending all of them.
    """
    n, k = result.n_groups, result.group_size
    var_groups = np.asarray(result.standard_error, dtype=np.float64) ** 2 * n
    share = 1.0 if total_noises is None else result.n_noises / total_noises
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = share * np.asarray(raw_marginal, dtype=np.float64) / (k * var_groups)
    eff, low, high = implied_efficiency(ratio, n, pilot_noises - 1, result.confidence_level)
    return replace(
        result,
        marginal_variance=scalar(np.asarray(raw_marginal, dtype=np.float64)),
        implied_efficiency=scalar(eff),
        implied_efficiency_low=scalar(low),
        implied_efficiency_high=scalar(high),
    )


def as_control(control_variates: ControlVariates | NoiseFeatures | None) -> ControlVariates | None:
    """The control-variate options: bare features get the default pilot."""
    if control_variates is None or isinstance(control_variates, ControlVariates):
        return control_variates
    if isinstance(control_variates, NoiseFeatures):
        return ControlVariates(control_variates)
    raise TypeError(
        f"control_variates must be ControlVariates(...) or NoiseFeatures such as DCTFeatures(), "
        f"got {type(control_variates).__name__}"
    )


class ControlledBudget(Strategy):
    """A fixed budget with noise control variates: a pilot fits them (unless given), the rest estimates.

    The main groups' statistics are S - beta . f(z) with beta fixed before they are drawn, so the
    estimate is the mean of iid group means of a statistic with the same expectation as S. The
    pilot's noises count in the budget; it is not checkpointed (a resumed run redraws it, the same
    noise, so the same beta) and its groups are not reused.
    """

    def __init__(self, budget: int, control: ControlVariates) -> None:
        self.max_budget, self.control = budget, control

    def __repr__(self) -> str:
        return f"ControlledBudget({self.max_budget}, {self.control!r})"

    def check(self, engine: Engine) -> None:
        n_groups = groups_for_budget(self.max_budget, engine.design)
        self.control.features.check_shape(engine.noise_shape)
        if self.control.coefficients is None:
            pilot_groups(n_groups, self.control.pilot_share)
        else:
            self.fixed_coefficients(engine)

    def fixed_coefficients(self, engine: Engine) -> dict[str, np.ndarray]:
        """The given coefficients, checked against the statistics and the features."""
        names = self.control.features.names(engine.noise_shape)
        coefficients = {}
        for name in engine.statistics:
            if name not in self.control.coefficients:
                raise ValueError(f"control_variates.coefficients has no entry for statistic {name!r}")
            beta = np.asarray(self.control.coefficients[name], dtype=np.float64)
            if beta.ndim == 0 or len(beta) != len(names):
                raise ValueError(
                    f"coefficients of {name!r} must have {len(names)} rows (one per feature), got {beta.shape}"
                )
            coefficients[name] = beta
        return coefficients

    def run(self, engine: Engine) -> tuple[dict[str, StatisticResult], dict[str, Any]]:
        design, features = engine.design, self.control.features
        k, n_groups = design.group_size, groups_for_budget(self.max_budget, design)
        raw_marginal, fits = {}, {}
        if self.control.coefficients is None:
            n_pilot = pilot_groups(n_groups, self.control.pilot_share)
            values = engine.values(0, n_pilot, features=features)
            means = {key: v.mean(axis=1) for key, v in values.items()}
            for name in engine.statistics:
                within = ((values[name] - means[name][:, None]) ** 2).sum(axis=(0, 1))  # law of total variance
                raw_marginal[name] = within / (n_pilot * k) + means[name].var(axis=0, ddof=1)
                fits[name] = fit_control(means[name], means[FEATURES])
            coefficients = {name: fit.coefficients for name, fit in fits.items()}
        else:
            n_pilot, coefficients = 0, self.fixed_coefficients(engine)
        main = engine.stage("main", n_pilot, n_groups, control=(features, coefficients))
        results = engine.results(main)
        if fits:
            results = {name: against_mc(r, raw_marginal[name], n_pilot * k) for name, r in results.items()}
        info = {
            "features": features.name,
            "feature_names": features.names(engine.noise_shape),
            "pilot_budget": n_pilot * k,
            "coefficients": {name: beta.tolist() for name, beta in coefficients.items()},
            "ridge": {name: fit.ridge for name, fit in fits.items()},
            "predicted_gain": {
                name: 1.0 / fit.variance_ratio if fit.variance_ratio > 0 else None for name, fit in fits.items()
            },
        }
        return results, {"control_variates": info}
