"""A confidence interval for the mean of bounded values that holds at every sample size: betting.

Most statistics users ask about are bounded (pixel values, proportions, SSIM, an L1 distance on
images), and so are their group means under any design: a group mean of values in [a, b] lies
in [a, b], and group means are iid. For such values the t and skew-t intervals are only
asymptotically right; with few or very skewed groups they can undercover. The betting interval
of Waudby-Smith and Ramdas ("Estimating means of bounded random variables by betting", JRSS-B
2024) is valid for every n and every distribution on [a, b].

The idea: rescaled to [0, 1], for each candidate mean m a gambler bets on X_i - m with fractions
lambda_i chosen from the values before i (predictable). If m is the true mean, the gambler's
capital K_t(m) = prod_{i<=t} (1 + lambda_i (X_i - m)) is a nonnegative martingale, so by Ville's
inequality it ever reaches 1 / alpha with probability at most alpha. Every m whose capital stays
below 1 / alpha is kept. Betting on both sides (hedged capital, half the wealth each way) gives a
two-sided interval. With lambda_i tuned for the known final n, sqrt(2 log(2 / alpha) / (n
sigma_{i-1}^2)), the width at n is close to the best Bernstein-type interval.

The interval is found on a grid of m: a coarse grid over [0, 1], then a fine grid between the
outermost kept point and its rejected neighbour on each side. Every endpoint is moved outward to
the next grid point that was rejected, so rounding can only widen it.
"""

from __future__ import annotations

import math

import numpy as np

from uqdiff.estimators.results import ConfidenceInterval

#: The largest fraction of the gambler's capital at risk on one value (the paper's c; 1/2 or 3/4).
MAX_BET = 0.5
#: Candidate means per grid (coarse over [0, 1], then fine near each endpoint).
GRID = 512


def betting_interval(
    values: np.ndarray,
    bounds: tuple[float, float],
    *,
    confidence_level: float = 0.95,
) -> ConfidenceInterval:
    """The hedged-capital betting interval for the mean of iid ``values`` that lie in ``bounds``.

    Parameters
    ----------
    values : array of shape (n,) or (n, ...)
        Independent, identically distributed values in their given order (uqdiff's group means,
        in group order); more dimensions are independent problems, one interval each.
    bounds : (low, high)
        Bounds every value is known to respect: the statistic's range, not the sample's. Values
        outside them are an error (the guarantee would not hold).
    confidence_level : float
        Coverage promised at every n, for every distribution on ``bounds``.

    Returns
    -------
    ConfidenceInterval
        (low, high), floats for 1-d ``values``, arrays of ``values.shape[1:]`` otherwise.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = (rng.random(400) < 0.1).astype(float)  # a 10 % event
    >>> low, high = betting_interval(x, (0, 1))
    >>> print(f"{x.mean():.3f} in [{low:.3f}, {high:.3f}]")
    0.105 in [0.068, 0.150]
    """
    x = np.asarray(values, dtype=np.float64)
    a, b = (float(v) for v in bounds)
    if not (math.isfinite(a) and math.isfinite(b) and a < b):
        raise ValueError(f"bounds must be two finite numbers low < high, got {bounds!r}")
    if not 0 < confidence_level < 1:
        raise ValueError(f"confidence_level must be in (0, 1), got {confidence_level!r}")
    if x.ndim == 0 or len(x) < 1:
        raise ValueError("betting_interval needs at least one value")
    if not np.isfinite(x).all():
        raise ValueError("values must be finite")
    outside = (x < a) | (x > b)
    if outside.any():
        raise ValueError(
            f"{int(outside.sum())} value(s) lie outside the bounds [{a:g}, {b:g}] (from {x.min():.6g} to "
            f"{x.max():.6g}): the betting interval's guarantee needs values inside them. Declare the statistic's "
            f"true range"
        )
    shape = x.shape[1:]
    u = ((x - a) / (b - a)).reshape(len(x), -1)
    lam = _bets(u, 1 - confidence_level)
    threshold = math.log(1 / (1 - confidence_level))
    low, high = np.empty(u.shape[1]), np.empty(u.shape[1])
    for j in range(u.shape[1]):
        low[j], high[j] = _kept_range(u[:, j], lam[:, j], threshold)
    low, high = a + (b - a) * low, a + (b - a) * high
    if not shape:
        return ConfidenceInterval(float(low[0]), float(high[0]))
    return ConfidenceInterval(low.reshape(shape), high.reshape(shape))


def _bets(u: np.ndarray, alpha: float) -> np.ndarray:
    """Predictable bet sizes |lambda_i| (n, p): tuned for the final n, from the values before i."""
    n = len(u)
    count = np.arange(1, n + 1)[:, None]
    mean = (0.5 + np.cumsum(u, axis=0)) / (count + 1)  # mu_t, shrunk towards 1/2
    prev_mean = np.vstack([np.full((1, u.shape[1]), 0.5), mean[:-1]])
    var = (0.25 + np.cumsum((u - prev_mean) ** 2, axis=0)) / (count + 1)  # sigma_t^2, shrunk towards 1/4
    prev_var = np.vstack([np.full((1, u.shape[1]), 0.25), var[:-1]])
    return np.minimum(np.sqrt(2 * math.log(2 / alpha) / (n * prev_var)), 1.0)


def _rejected(u: np.ndarray, lam: np.ndarray, m: np.ndarray, threshold: float) -> np.ndarray:
    """For each candidate mean m: did the hedged capital ever reach 1 / alpha (log > threshold)?"""
    cap_up, cap_down = MAX_BET / np.maximum(m, 1e-300), MAX_BET / np.maximum(1 - m, 1e-300)
    log_up, log_down = np.zeros(len(m)), np.zeros(len(m))
    rejected = np.zeros(len(m), dtype=bool)
    step = max(1, 2**20 // len(m))  # values per block: memory stays at a few MB for any n
    for lo in range(0, len(u), step):
        d = u[lo : lo + step, None] - m[None, :]
        bet = lam[lo : lo + step, None]
        up = log_up + np.cumsum(np.log1p(np.minimum(bet, cap_up) * d), axis=0)
        down = log_down + np.cumsum(np.log1p(-np.minimum(bet, cap_down) * d), axis=0)
        hedged = np.logaddexp(up, down) - math.log(2)  # log of (K+ + K-) / 2
        rejected |= (hedged >= threshold).any(axis=0)
        log_up, log_down = up[-1], down[-1]
    return rejected


def _kept_range(u: np.ndarray, lam: np.ndarray, threshold: float) -> tuple[float, float]:
    """[low, high] on [0, 1]: the outermost kept candidates, moved out to the next rejected grid point."""
    grid = np.linspace(0, 1, GRID + 1)
    kept = ~_rejected(u, lam, grid, threshold)
    if not kept.any():  # the kept set is narrower than one step: look around the sample mean
        centre = float(np.clip(u.mean(), 0, 1))
        i = int(np.clip(np.searchsorted(grid, centre), 1, GRID))
        lo_br, hi_br = grid[i - 1], grid[i]
        fine = np.linspace(lo_br, hi_br, GRID + 1)
        kept_fine = ~_rejected(u, lam, fine, threshold)
        if not kept_fine.any():
            return lo_br, hi_br
        first, last = np.flatnonzero(kept_fine)[[0, -1]]
        return fine[max(first - 1, 0)], fine[min(last + 1, GRID)]
    first, last = np.flatnonzero(kept)[[0, -1]]
    ends = []
    for inner, outer in ((first, first - 1), (last, last + 1)):
        if outer < 0 or outer > GRID:  # kept at the boundary of [0, 1]
            ends.append(grid[inner])
            continue
        fine = np.linspace(grid[outer], grid[inner], GRID + 1)  # from the rejected point to the kept one
        kept_fine = ~_rejected(u, lam, fine, threshold)
        j = int(np.flatnonzero(kept_fine)[0])  # the first kept point coming from outside (the last one is)
        ends.append(fine[max(j - 1, 0)])
    return float(ends[0]), float(ends[1])
