"""Coverage of the comparison intervals on closed-form truths: proportions, differences, simultaneous pixel bands.

    python benchmarks/comparison_coverage.py            # 1000 runs per cell
    python benchmarks/comparison_coverage.py --reps 100 # quicker

Proportions: four linear-Gaussian conditions with P(x > 0) = 0.02, 0.3, 0.45,
0.98, run on common noise with 64 evaluations (MC, antithetic) or 128 (RQMC
16 x 8); coverage of uqdiff's Wilson-n_eff interval, of Newcombe's
difference interval (worst and mean over the 6 differences) and, at p =
0.02, of the plain t interval. Pixel maps: 36 correlated Gaussian pixels, 32
MC groups; how often *all* pixels are covered at once by the per-pixel,
max-t and Bonferroni bands. Writes benchmarks/results/comparisons/coverage.{md,json}.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from uqdiff.designs import SobolRQMC
from uqdiff.estimators.audit import difference_interval, proportion_interval
from uqdiff.estimators.paired import paired_estimate
from uqdiff.estimators.results import markdown_table
from uqdiff.estimators.simultaneous import group_means, simultaneous_bands
from uqdiff.samplers import LinearGenerator

J = np.array([[0.6, 0.8]])  # |J| = 1: x = offset + N(0, 1)
PROBS = {"0.02": 0.02, "0.3": 0.3, "0.45": 0.45, "0.98": 0.98}
GENS = {c: LinearGenerator([-stats.norm.isf(p)], J) for c, p in PROBS.items()}  # P(x > 0) = p


def positive(x):
    return x[:, 0] > 0


def proportions(design, budget: int, reps: int) -> dict:
    hit = {c: 0 for c in PROBS}
    hit_t, hit_d = 0, {}
    for i in range(reps):
        run = paired_estimate(GENS, positive, budget=budget, design=design, seed=[11, i])
        arms = run.arms["positive"]
        for c, r in arms.items():
            lo, hi = proportion_interval(r.estimate, r.standard_error, n_noises=r.n_noises, df=r.df)
            hit[c] += lo <= PROBS[c] <= hi
        hit_t += arms["0.02"].low <= 0.02 <= arms["0.02"].high
        for name, c in run.contrasts["positive"].items():
            a, b = name.split(" - ")
            lo, hi = difference_interval(arms[a], arms[b], c.result)
            hit_d[name] = hit_d.get(name, 0) + (lo <= PROBS[a] - PROBS[b] <= hi)
    d = [h / reps for h in hit_d.values()]
    return {
        **{f"p={c}": h / reps for c, h in hit.items()},
        "differences_worst": min(d),
        "differences_mean": float(np.mean(d)),
        "plain_t_at_p=0.02": hit_t / reps,
    }


def pixel_bands(reps: int) -> dict:
    rng = np.random.default_rng(0)
    offset = rng.normal(size=(6, 6))
    gen = LinearGenerator(offset, rng.normal(size=(36, 5)) / 2)
    cover = {"per-pixel": 0, "max-t": 0, "bonferroni": 0}
    for i in range(reps):
        r, means = group_means(gen, lambda x: x, budget=32, seed=[9, i])
        maxt = simultaneous_bands(r, method="max-t", group_means=means, n_bootstrap=1000, seed=i)
        bonf = simultaneous_bands(r, method="bonferroni")
        inside = lambda band: bool(((band.low <= offset) & (offset <= band.high)).all())
        cover["per-pixel"] += inside(maxt.pointwise)
        cover["max-t"] += inside(maxt.simultaneous)
        cover["bonferroni"] += inside(bonf.simultaneous)
    return {k: v / reps for k, v in cover.items()}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reps", type=int, default=1000)
    p.add_argument("--quick", action="store_true", help="20 runs per cell (smoke test), written as coverage_quick")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "comparisons")
    args = p.parse_args(argv)
    if args.quick:
        args.reps = 20
    name = "coverage_quick" if args.quick else "coverage"
    rows = [
        {"design": name, **proportions(d, b, args.reps)}
        for name, d, b in (("mc", "mc", 64), ("antithetic", "antithetic", 64), ("rqmc 16 x 8", SobolRQMC(16), 128))
    ]
    bands = pixel_bands(args.reps)
    se = (0.95 * 0.05 / args.reps) ** 0.5
    text = (
        f"# Coverage of comparison intervals (nominal 95%, {args.reps} seeded runs per cell, binomial SE "
        f"{se:.3f})\n\n`python benchmarks/comparison_coverage.py --reps {args.reps}`\n\n"
        "## Proportions (Wilson on n_eff) and differences (Newcombe), four conditions on common noise\n\n"
        f"{markdown_table(pd.DataFrame(rows).round(3))}\n\n"
        "## All 36 pixels covered at once (32 MC groups)\n\n"
        f"{markdown_table(pd.DataFrame([bands]).round(3))}\n"
    )
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.md").write_text(text)
    (out / f"{name}.json").write_text(
        json.dumps({"reps": args.reps, "proportions": rows, "pixel_bands": bands}, indent=1)
    )
    print(text)


if __name__ == "__main__":
    main()
