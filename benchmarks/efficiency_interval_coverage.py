"""Coverage of the F interval of a measured efficiency, ComparisonResult.efficiency_interval.

Two designs run side by side at budget 128 on oracles with closed-form variances, many seeds.
The efficiency compares CI widths, (q_MC se_MC / q_d se_d)^2, so its true value is the ratio of
the variances of the two means times the squared ratio of the t quantiles (constants):

* normal group means: S = z0 under MC and under equicorrelated pairs (correlation 0.5), where
  the F interval is exact;
* heavy-tailed group means: S = z0^2 under MC and under antithetic pairs (a pair's mean is z0^2
  itself), chi-square group means, where any F interval of variances is too narrow.

    python benchmarks/efficiency_interval_coverage.py            # 2000 comparisons per case
    python benchmarks/efficiency_interval_coverage.py --quick    # 50
"""

from __future__ import annotations

import argparse
import warnings

import _common  # noqa: F401  (first: puts this checkout's uqdiff on the path)
import numpy as np
import pandas as pd
from _common import add_common_arguments, write_results
from scipy import stats

from uqdiff import Antithetic, Equicorrelated, compare
from uqdiff.estimators.results import markdown_table
from uqdiff.samplers import LinearGenerator

BUDGET = 128


def cases() -> list[dict]:
    """(name, design, statistic, true efficiency) with closed-form variances of the two means."""
    q = (stats.t.ppf(0.975, BUDGET - 1) / stats.t.ppf(0.975, BUDGET // 2 - 1)) ** 2  # width quantiles
    pairs = Equicorrelated(2, 0.5)
    return [
        {  # MC: Var z0 = 1 per noise; pairs: Var of a pair mean (1 + 0.5) / 2 = 0.75
            "case": "normal group means (z0, equicorrelated pairs)",
            "design": pairs,
            "statistic": lambda x: x[:, 0],
            "truth": (1 / BUDGET) / (0.75 / (BUDGET // 2)) * q,
        },
        {  # MC: Var z0^2 = 2 per noise; antithetic: a pair's mean is z0^2, variance 2
            "case": "chi-square group means (z0^2, antithetic pairs)",
            "design": Antithetic(),
            "statistic": lambda x: x[:, 0] ** 2,
            "truth": (2 / BUDGET) / (2 / (BUDGET // 2)) * q,
        },
    ]


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=2000, help="comparisons per case (default 2000)")
    add_common_arguments(parser, "efficiency_interval_coverage")
    args = parser.parse_args(argv)
    runs = 50 if args.quick else args.runs
    g = LinearGenerator(np.zeros(1), np.array([[1.0, 0.0]]))  # x = z0
    warnings.filterwarnings("ignore", category=UserWarning)  # the skew warnings of every chi-square run
    rows = []
    for case in cases():
        design, truth = case["design"], case["truth"]
        covered, effs = 0, []
        for r in range(runs):
            c = compare(
                g,
                {"s": case["statistic"]},
                budget=BUDGET,
                designs=["mc", design],
                seed=[args.seed, r],
                interval_method="t",
            )
            low, high = c.efficiency_interval("s", design.name)
            covered += low <= truth <= high
            effs.append(c.efficiency("s", design.name))
        p = covered / runs
        rows.append(
            {
                "case": case["case"],
                "budget": BUDGET,
                "runs": runs,
                "true efficiency": truth,
                "median efficiency": float(np.median(effs)),
                "coverage": p,
                "binomial se": float(np.sqrt(p * (1 - p) / runs)),
            }
        )
    frame = pd.DataFrame(rows)
    table = markdown_table(frame)
    print(table)
    write_results(
        args.out,
        "efficiency_interval_coverage_quick" if args.quick else "efficiency_interval_coverage",
        title="Coverage of the F interval of a measured efficiency (ComparisonResult.efficiency_interval)",
        intro=[
            f"MC against one design at budget {BUDGET}, each on its own seed, t intervals; the true efficiency is "
            "the ratio of the two means' variances times the squared ratio of their t quantiles. Nominal 0.95."
        ],
        table=table,
        data={"rows": rows},
        notes=[
            "normal group means: the F interval is exact, coverage should be 0.95 within about 2 binomial se",
            "chi-square group means: the sample variances are far more variable than normal theory says, so the F "
            "interval is too narrow: read efficiency intervals from skewed or heavy-tailed statistics as rough",
        ],
    )
    return frame


if __name__ == "__main__":
    main()
