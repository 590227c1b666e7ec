"""``design="auto"``: a pilot compares the candidate estimators, a fresh main stage runs the best one.

Which estimator wins depends on the statistic: antithetic pairs cancel the
part of S that is odd in the noise and double the variance of the even part
(an image's standard deviation loses with pairs); control variates on the
noise reach the even part; RQMC and K-antithetic groups pay on smooth
statistics once their groups are many. A pilot measures this per statistic.

The pilot is spent mostly on antithetic pairs, because one set of pairs
answers four questions at once: with odd = (S(z) - S(-z)) / 2 and
even = (S(z) + S(-z)) / 2, plain MC has variance Var(odd) + Var(even) per
noise, pairs 2 Var(even), and control variates shrink each part by the
cross-validated residual ratio of odd features on odd and even features on
even. Other candidates (K-antithetic, RQMC, subspace RQMC) get their own
pilot runs where the pilot share buys at least 8 of their groups. A
candidate replaces MC only where its efficiency's lower confidence bound
beats MC's, so noisy pilot estimates fall back to MC (or MC with control
variates) rather than to a design that may lose. The main stage draws fresh
noise, so its interval is as valid as any other run's; the pilot's share is
what "auto" may lose against plain MC.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats as _scipy_stats

from uqdiff.designs import IID, Antithetic, KAntithetic, NoiseDesign, SobolRQMC, as_design
from uqdiff.designs.features import DCTFeatures, NoiseFeatures
from uqdiff.designs.seeds import substream
from uqdiff.designs.sobol_points import MAX_DIM
from uqdiff.designs.subspace import subspace_rqmc
from uqdiff.estimators.control_variates import MIN_PILOT_GROUPS, against_mc, fit_control
from uqdiff.estimators.engine import FEATURES, Engine, Strategy, groups_for_budget
from uqdiff.estimators.results import StatisticResult

#: One-sided level of the lower confidence bound a candidate must show to replace MC.
SELECTION_LEVEL = 0.8

#: Seed tags of the pilot and of the main stage (crc32 of the words).
PILOT_TAG, MAIN_TAG = zlib.crc32(b"auto pilot"), zlib.crc32(b"auto main")


@dataclass(frozen=True)
class AutoDesign:
    """Options of ``design="auto"``; ``estimate(..., design=AutoDesign(...))`` sets them.

    Parameters
    ----------
    candidates : sequence of NoiseDesign or str, optional
        Designs beyond MC and antithetic pairs (always candidates) to try in the pilot.
        Default: RQMC on the 16 lowest DCT frequencies with K-antithetic complement, K-antithetic
        groups of 8, and RQMC on the whole noise (up to 21201 dimensions), with n the largest
        power of two up to 64 whose 8 replicates fit in the pilot (see :func:`default_candidates`).
        A candidate enters only where the pilot buys at least 8 of its groups; the main stage
        runs exactly the design the pilot measured.
    control_variates : NoiseFeatures or None
        Features for noise control variates, tried with every candidate (``None``: none).
    pilot_share : float
        Share of the budget the pilot may spend (default 0.1): the most "auto" can lose to MC.
    target : str or mapping, optional
        The statistic to optimize, or weights by statistic name (minimizes the weighted sum of
        variances relative to MC's). Default: the first statistic.

    Examples
    --------
    >>> AutoDesign(pilot_share=0.2, target="mean").pilot_share
    0.2
    """

    candidates: Sequence[NoiseDesign | str] | None = None
    control_variates: NoiseFeatures | None = field(default_factory=DCTFeatures)
    pilot_share: float = 0.1
    target: str | Mapping[str, float] | None = None
    name = "auto"

    def __post_init__(self) -> None:
        share = self.pilot_share
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 < share <= 0.5:
            raise ValueError(f"pilot_share must be a number in (0, 0.5], got {share!r}")
        if self.control_variates is not None and not isinstance(self.control_variates, NoiseFeatures):
            raise TypeError(
                f"control_variates must be NoiseFeatures such as DCTFeatures() or None, "
                f"got {type(self.control_variates).__name__}"
            )
        if self.candidates is not None:
            if isinstance(self.candidates, (str, NoiseDesign)):
                raise TypeError(f"candidates must be a list of designs, got {self.candidates!r}")
            for c in self.candidates:
                as_design(c)


def is_auto(design: Any) -> bool:
    """Whether ``design`` asks for the automatic choice (``"auto"`` or an :class:`AutoDesign`)."""
    return isinstance(design, AutoDesign) or (isinstance(design, str) and design.strip().lower() == "auto")


def target_weights(target: str | Mapping[str, float] | None, names: Sequence[str]) -> dict[str, float]:
    """Weights by statistic name; refuses names that are not statistics of the run."""
    if target is None:
        return {names[0]: 1.0}
    weights = {target: 1.0} if isinstance(target, str) else {str(k): float(v) for k, v in dict(target).items()}
    unknown = sorted(set(weights) - set(names))
    if unknown:
        raise ValueError(f"target names {unknown} are not statistics of this run; it has {list(names)}")
    if not weights or any(not math.isfinite(w) or w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
        raise ValueError(f"target weights must be non-negative with a positive sum, got {weights}")
    return weights


@dataclass
class _Candidate:
    """One estimator the pilot measured: a design, with or without control variates."""

    design: NoiseDesign
    control: bool
    groups: int
    variance: dict[str, float]  # per noise, relative scale of the statistic
    coefficients: dict[str, np.ndarray] | None = None

    @property
    def label(self) -> str:
        return self.design.name + (" + control variates" if self.control else "")


class AutoChoice(Strategy):
    """The strategy of ``design="auto"``: the pilot, the choice and the main stage, within ``budget`` noises.

    The pilot's stages are redrawn on resume (the same noise, so the same choice); the main
    stage is checkpointed like any other.
    """

    def __init__(self, auto: AutoDesign, budget: int) -> None:
        self.auto, self.max_budget = auto, budget

    def __repr__(self) -> str:
        return f"AutoChoice({self.auto!r}, {self.max_budget})"

    def check(self, engine: Engine) -> None:
        groups_for_budget(self.max_budget, IID())
        target_weights(self.auto.target, list(engine.statistics))
        if self.auto.control_variates is not None:  # features of x_T, the first draw, for every kind of sampler
            self.auto.control_variates.check_shape(engine.noise_shape)
        self.plan(engine)

    def plan(self, engine: Engine) -> tuple[list[tuple[NoiseDesign, int]], int]:
        """The other designs the pilot tries (with their groups), and the number of antithetic pairs."""
        auto, budget = self.auto, self.max_budget
        pilot_budget = int(auto.pilot_share * budget)
        others = (
            [as_design(c) for c in auto.candidates]
            if auto.candidates is not None
            else default_candidates(pilot_budget, budget - pilot_budget, engine.noise_shape)
        )
        others = [d for d in others if d.name not in (IID().name, Antithetic().name)]
        tried = pilot_plan(others, pilot_budget)
        n_pairs = (pilot_budget - sum(n * d.group_size for d, n in tried)) // 2
        if n_pairs < MIN_PILOT_GROUPS:
            need = math.ceil(2 * MIN_PILOT_GROUPS / auto.pilot_share)
            raise ValueError(
                f"design='auto' needs a pilot of at least {2 * MIN_PILOT_GROUPS} noises: budget {budget} x "
                f"pilot_share {auto.pilot_share} gives {pilot_budget}; raise the budget to at least {need} or pilot_share"
            )
        return tried, n_pairs

    def run(self, engine: Engine) -> tuple[dict[str, StatisticResult], dict[str, Any]]:
        stats, features, seed = engine.statistics, self.auto.control_variates, engine.seed
        weights = target_weights(self.auto.target, list(stats))
        tried, n_pairs = self.plan(engine)
        pilot = engine.values(0, n_pairs, design=Antithetic(), seed=substream(seed, PILOT_TAG), features=features)
        candidates, sigma2 = pair_candidates(pilot, stats, features, engine.noise_shape)
        for d, n in tried:
            values = engine.values(
                0, n, design=d, seed=substream(seed, PILOT_TAG, zlib.crc32(d.name.encode())), features=features
            )
            candidates += design_candidates(
                d, {key: v.mean(axis=1) for key, v in values.items()}, stats, features is not None
            )
        evidence, chosen = choose(candidates, sigma2, weights, n_pairs)
        pilot_noises = engine.pilot_noises
        k = chosen.design.group_size
        n_main = (self.max_budget - pilot_noises) // k
        control = (features, chosen.coefficients) if chosen.control else None
        main = engine.stage("main", 0, n_main, design=chosen.design, seed=substream(seed, MAIN_TAG), control=control)
        label = f"auto: {chosen.label}"
        total = pilot_noises + n_main * k
        # The efficiency counts every noise spent. MC's variance per noise: without control variates, the
        # main stage's own marginal variance (all its noises); with them the main stage sees only the
        # adjusted statistic, so the pilot pairs' sigma^2 (2 n_pairs noises). The pilot's 16 noises at the
        # smallest budget made an MC choice read 0.24-0.82 instead of 0.9 on DPS's heavy-tailed metrics.
        results = {
            name: against_mc(r, sigma2[name], 2 * n_pairs, total_noises=total)
            if chosen.control
            else against_mc(r, r.marginal_variance, r.n_noises, total_noises=total)
            for name, r in engine.results(main, design=chosen.design, label=label).items()
        }
        used = None
        if chosen.control:
            used = {
                "features": features.name,
                "feature_names": features.names(engine.noise_shape),
                "coefficients": {name: np.asarray(beta).tolist() for name, beta in chosen.coefficients.items()},
            }
        info = {
            "group_size": k,
            "auto": {
                "chosen": chosen.label,
                "design": chosen.design.name,
                "control_variates": used,
                "pilot_budget": pilot_noises,
                "main_budget": n_main * k,
                "target": weights,
                "selection_level": SELECTION_LEVEL,
                "candidates": evidence,
            },
        }
        return results, info


#: Fewest Sobol' points per replicate for an RQMC candidate: with fewer, RQMC is rarely better than pairs
#: (terrain, budget 512, ``benchmarks/results/subspace_points``: subspace RQMC's efficiency on the mean
#: is 3.7 with n = 4, 9.6 with 8, 27 with 16 and 38 with 32; pairs reach about 8.6).
MIN_POINTS = 16

#: Share of the pilot kept for antithetic pairs (they price MC, pairs and control variates at once).
PAIR_SHARE = 0.6


def pilot_plan(others: Sequence[NoiseDesign], pilot_budget: int) -> list[tuple[NoiseDesign, int]]:
    """Which other designs the pilot tries, with how many groups: in order, :data:`MIN_PILOT_GROUPS` each.

    Antithetic pairs keep at least :data:`PAIR_SHARE` of the pilot; a design enters while its
    groups fit in the rest.
    """
    room = pilot_budget - 2 * math.ceil(PAIR_SHARE * pilot_budget / 2)
    plan = []
    for d in others:
        need = MIN_PILOT_GROUPS * d.group_size
        if need <= room:
            plan.append((d, MIN_PILOT_GROUPS))
            room -= need
    return plan


def default_candidates(pilot_budget: int, main_budget: int, noise_shape: tuple[int, ...]) -> list[NoiseDesign]:
    """RQMC on the coarse DCT subspace, K-antithetic (8) and RQMC on the whole noise, in that order.

    The Sobol' point count n is the largest power of two (at most 64) whose 8 replicates fit in the
    pilot's share for other designs and that leaves the main stage at least 16 replicates: the main
    stage runs the design the pilot measured. RQMC enters only with n >= :data:`MIN_POINTS`
    (from a budget of about 3200 at the default pilot share). Subspace RQMC comes first because the benchmark
    (``benchmarks/beyond_paper.py``) found it best on every statistic of the terrain model.
    """
    room = pilot_budget - 2 * math.ceil(PAIR_SHARE * pilot_budget / 2)
    n = min(64, room // MIN_PILOT_GROUPS, main_budget // 16)
    out: list[NoiseDesign] = []
    if n >= MIN_POINTS:
        n = 2 ** int(math.floor(math.log2(n)))
        out.append(subspace_rqmc(noise_shape, n, dims=16))
    out.append(KAntithetic(8))
    if n >= MIN_POINTS and math.prod(noise_shape) <= MAX_DIM:
        out.append(SobolRQMC(n))
    return out


def pair_candidates(
    pairs: Mapping[str, np.ndarray], stats: Mapping[str, Any], features: NoiseFeatures | None, noise_shape
) -> tuple[list[_Candidate], dict[str, float]]:
    """MC and antithetic pairs, each with and without control variates, from one pilot of pairs.

    Returns the candidates and the MC variance sigma^2 of each statistic (every noise of the
    pilot is N(0, I), so its odd and even parts give sigma^2 = Var(odd) + Var(even)).
    """
    n = len(next(iter(pairs.values())))
    mc, amc, mc_cv, amc_cv = {}, {}, {}, {}
    beta_mc, beta_amc = {}, {}
    sigma2 = {}
    if features is not None:
        f = pairs[FEATURES]
        odd_mask = features.odd(noise_shape)
        f_odd, f_even = (f[:, 0] - f[:, 1])[:, odd_mask] / 2, (f[:, 0] + f[:, 1])[:, ~odd_mask] / 2
    for name in stats:
        y = pairs[name].reshape(n, 2, -1)
        odd, even = (y[:, 0] - y[:, 1]) / 2, (y[:, 0] + y[:, 1]) / 2
        v_odd, v_even = odd.var(axis=0, ddof=1), even.var(axis=0, ddof=1)
        sigma2[name] = np.squeeze(v_odd + v_even)
        mc[name], amc[name] = float((v_odd + v_even).sum()), float((2 * v_even).sum())
        if features is None:
            continue
        shape = pairs[name].shape[2:]
        beta = np.zeros((len(odd_mask), int(np.prod(shape, dtype=int))))
        fit_even = fit_control(even, f_even)
        if odd_mask.any():
            fit_odd = fit_control(odd, f_odd)
            beta[odd_mask] = fit_odd.coefficients.reshape(int(odd_mask.sum()), -1)
            odd_ratio = fit_odd.variance_ratio
        else:
            odd_ratio = 1.0
        beta_even = np.zeros_like(beta)
        beta_even[~odd_mask] = fit_even.coefficients.reshape(int((~odd_mask).sum()), -1)
        beta[~odd_mask] = beta_even[~odd_mask]
        mc_cv[name] = float(odd_ratio * v_odd.sum() + fit_even.variance_ratio * v_even.sum())
        amc_cv[name] = float(2 * fit_even.variance_ratio * v_even.sum())
        beta_mc[name], beta_amc[name] = beta.reshape(len(odd_mask), *shape), beta_even.reshape(len(odd_mask), *shape)
    out = [_Candidate(IID(), False, 2 * n, mc), _Candidate(Antithetic(), False, n, amc)]
    if features is not None:
        out += [_Candidate(IID(), True, 2 * n, mc_cv, beta_mc), _Candidate(Antithetic(), True, n, amc_cv, beta_amc)]
    return out, sigma2


def design_candidates(
    design: NoiseDesign, values: Mapping[str, np.ndarray], stats: Mapping[str, Any], with_control: bool
) -> list[_Candidate]:
    """A design's own pilot groups: its variance per noise, k Var(group mean), with and without control variates."""
    n, k = len(next(iter(values.values()))), design.group_size
    plain, controlled, betas = {}, {}, {}
    for name in stats:
        var = values[name].reshape(n, -1).var(axis=0, ddof=1).sum()
        plain[name] = float(k * var)
        if with_control:
            fit = fit_control(values[name], values[FEATURES])
            controlled[name], betas[name] = float(k * var * fit.variance_ratio), fit.coefficients
    out = [_Candidate(design, False, n, plain)]
    if with_control:
        out.append(_Candidate(design, True, n, controlled, betas))
    return out


def choose(
    candidates: list[_Candidate], sigma2: Mapping[str, Any], weights: Mapping[str, float], n_pairs: int
) -> tuple[list[dict[str, Any]], _Candidate]:
    """The candidate with the best lower confidence bound on its weighted efficiency; MC unless one beats it.

    A candidate whose estimated efficiency is below 1 for any statistic the target weighs is not
    eligible: "auto" must not trade a loss on one target statistic for a gain on another.

    Efficiency of a candidate for statistic s: sigma^2_s / (its variance per noise); its lower
    bound divides by the F quantile at :data:`SELECTION_LEVEL` for the two variance estimates'
    degrees of freedom (pilot pairs for sigma^2, the candidate's groups for its variance).
    Weighted: the weighted harmonic mean of the per-statistic efficiencies.
    """
    total = sum(weights.values())
    evidence, best, best_score = [], candidates[0], 1.0
    for c in candidates:
        eff = {s: float(np.sum(sigma2[s])) / c.variance[s] if c.variance[s] > 0 else math.inf for s in c.variance}
        df = max(1, c.groups - 1 - (1 if c.control else 0))
        bound = 1.0 if c is candidates[0] else float(_scipy_stats.f.ppf(SELECTION_LEVEL, 2 * n_pairs - 1, df))
        low = {s: e / bound for s, e in eff.items()}
        # eligible only where it does not lose to MC (point estimate) on any statistic the target weighs
        eligible = all(eff[s] >= 1.0 and low[s] > 0 for s, w in weights.items() if w > 0)
        score = total / sum(w / low[s] for s, w in weights.items()) if eligible else 0.0
        evidence.append(
            {
                "candidate": c.label,
                "groups": c.groups,
                "efficiency": eff,
                "efficiency_low": low,
                "score": score,
            }
        )
        if score > best_score:
            best, best_score = c, score
    for row, c in zip(evidence, candidates):
        row["chosen"] = c is best
    return evidence, best
